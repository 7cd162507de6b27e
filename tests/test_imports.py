"""Every `ipsm` module imports outside a notebook (no notebook globals) and one function of each runs.

This is the guard against exported code that silently depends on a notebook's namespace
(style-anchors Part E.2): a fresh interpreter per module, so imports cannot leak between modules.
"""

import os, subprocess, sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ipsm"
MODULES = sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_"))

# one cheap call per module, run in the fresh interpreter after `import ipsm.<name> as m`
CALLS = {
    "settings": "s = m.load_settings(); assert s.lpips_net in ('vgg', 'alex')",
    "cameras": "c = m.look_at([0., 0., -1.], [0., 0., 0.]); assert c.shape == (4, 4)",
    "metrics": "import torch; x = torch.rand(8, 8, 3); assert float(m.psnr(x, x.clamp(0, 1) * 0.5 + 0.25)) > 0",
    "pseudo_views": "s = m.annealed_sigmas(100); assert len(s) == 100",
    "warp": "g = m.pixel_grid(4, 5); assert g.shape[:2] == (4, 5)",
    "regularizers": "import torch; a = torch.rand(100); assert abs(float(m.pearson_corr(a, 2 * a + 1)) - 1) < 1e-4",
    "diffusion": "s = m.sd_scheduler(); assert s.config.num_train_timesteps == 1000",
    "score": "assert m.linear_warmup(2250, 2000, 500) == 0.5",
    "config": "c = m.adjust_steps(m.preset_config('llff-3view', **{'schedule.steps_scaler': 0.1})); assert c.schedule.max_steps == 1000",
    "run": "assert m.fmt_num(17088) == '17,088' and m.prior_label(__import__('ipsm.config').config.preset_config('base')) == 'no prior'",
    "losses": "from ipsm.config import preset_config; assert m.weights_at(preset_config('llff-3view'), 2250)['ipsm_r2'] == 1.0",
    "evaluate": "assert callable(m.eval_step)",
    "inference": "import torch; from ipsm.cameras import Cameras, look_at; c = Cameras(torch.linalg.inv(torch.stack([look_at([x, 0., -3.], [0., 0., 0.]) for x in (-.5, 0., .5)])), torch.eye(3), 8, 8); assert m.camera_path(c, 'interp', 5).shape == (5, 4, 4)",
    "train": "assert callable(m.train) and m.LivePlot(every=2).every == 2",
    "cli": "c = m.parse_train_args(['base', '--max-steps', '7']); assert c.schedule.max_steps == 7 and not c.ipsm",
}


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_and_runs(name):
    code = f"import ipsm.{name} as m\n" + CALLS.get(name, "")
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"ipsm.{name}:\n{r.stderr[-3000:]}"


def test_every_notebook_module_is_listed():
    "Each module exported from a notebook exists as a file (nbdev-export ran)."
    assert {"config", "run", "losses", "evaluate", "inference", "train", "cli"} <= set(MODULES), MODULES
