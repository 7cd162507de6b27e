"""`--help` answers without importing torch: eval/render/export always, ipsm-train from its cache after the first call."""

import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _py(code, cache):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


PROBE = (
    "import sys, contextlib, io\nfrom ipsm import cli\nbuf = io.StringIO()\n"
    "with contextlib.redirect_stdout(buf):\n    code = {call}\n"
    "assert code == 0, code\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', len(buf.getvalue()))"
)


def test_eval_render_export_help_skip_torch(tmp_path):
    for fn in ("eval_main", "render_main", "export_main"):
        code = PROBE.format(call="_c()").replace(
            "from ipsm import cli\n", f"from ipsm import cli\ndef _c():\n    try: return cli.{fn}(['--help'])\n    except SystemExit as e: return e.code\n"
        )
        assert _py(code, tmp_path).startswith("NO-TORCH"), fn


def test_train_help_cached_without_torch(tmp_path):
    code = PROBE.format(call="cli.train_main(['base', '--help'])")
    first, second = _py(code, tmp_path), _py(code, tmp_path)
    assert first.startswith("TORCH") and second.startswith("NO-TORCH")
    assert first.split()[1] == second.split()[1]  # the same text
