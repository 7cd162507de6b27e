"""The demo prior (data/demo_prior): shipped files, hold-out of the demo scene, loading through the
Stable Diffusion loader, clear errors for broken folders, and deterministic training steps (CI never retrains).
"""

import json, os, shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
from ipsm.demo_prior import (
    DEMO_PRIOR_DIR,
    DEMO_PRIOR_LABEL,
    REGENERATE,
    PriorModelConfig,
    PriorTrainConfig,
    build_text_encoder,
    build_tokenizer,
    check_hashes,
    encode_dataset,
    file_hashes,
    load_demo_prior,
    train_unet,
    train_vae,
)
from ipsm.scene_family import caption, demo_family_scene, is_demo_layout, make_scene

ROOT = Path(__file__).resolve().parents[1]


def test_demo_scene_regenerates_bit_identically(tmp_path):
    "The refactored ray caster/shader still writes exactly the committed data/demo files."
    from PIL import Image
    from ipsm.demo_scene import make_demo_scene

    fresh, demo = make_demo_scene(tmp_path / "demo"), ROOT / "data" / "demo"
    for f in ("poses_bounds.npy", "depths.npy", "points3d.npy", "scene.json"):
        assert (fresh / f).read_bytes() == (demo / f).read_bytes(), f
    for f in sorted((demo / "images").iterdir()):
        assert np.array_equal(np.asarray(Image.open(fresh / "images" / f.name)), np.asarray(Image.open(f))), f.name


def test_training_seeds_exclude_the_demo_layout():
    "No scene the prior was trained on reproduces the demo scene's layout (the demo is held out)."
    rec = json.loads((DEMO_PRIOR_DIR / "training.json").read_text())
    lo, hi = rec["train_seeds"]
    assert lo == 0 and hi == rec["data"]["n_scenes"] - 1
    assert is_demo_layout(demo_family_scene().prims)
    assert not any(is_demo_layout(make_scene(s).prims) for s in range(lo, hi + 1))


def test_shipped_files_match_their_hashes_and_budget():
    check_hashes(DEMO_PRIOR_DIR)
    sums = (DEMO_PRIOR_DIR / "SHA256SUMS").read_text().splitlines()
    listed = {l.split("  ", 1)[1] for l in sums}
    assert listed == set(file_hashes(DEMO_PRIOR_DIR)), "SHA256SUMS must list every shipped file"
    assert sum(p.stat().st_size for p in DEMO_PRIOR_DIR.rglob("*") if p.is_file()) <= 20e6
    rec = json.loads((DEMO_PRIOR_DIR / "training.json").read_text())
    for k in ("command", "data", "model", "train", "times", "total", "load_avg_1min", "vae_l1_curve", "unet_mse_curve"):
        assert k in rec, k
    assert rec["command"] == REGENERATE and rec["unet_mse_curve"][-1][1] < rec["unet_mse_curve"][0][1]


def test_load_demo_prior_via_load_prior():
    "Loaded by ipsm.diffusion.load_prior like SD, labelled as what it is, with a 64-pixel working size."
    from ipsm.score import ScoreConfig, ipsm_loss, working_size

    p = load_demo_prior()
    assert p.label == DEMO_PRIOR_LABEL and "not Stable Diffusion" in p.label and not p.is_tiny
    assert p.size == 64 and working_size(p, ScoreConfig()) == 64 and working_size(p, ScoreConfig(size=32)) == 32
    assert p.unet_inpaint.config.in_channels == 2 * p.vae.config.latent_channels + 1 == 9
    assert p.unet_sd.config.in_channels == 4 and p.scheduler.config.beta_schedule == "scaled_linear"
    assert p.embeds.shape[0] == 2 and p.tokenizer is not None
    rgb = torch.rand(120, 160, 3, requires_grad=True)
    mask = torch.zeros(120, 160, dtype=torch.bool)
    mask[:, :30] = True
    o = ipsm_loss(p, rgb, torch.rand(120, 160, 3), mask, ScoreConfig(), torch.Generator().manual_seed(0))
    (o["loss_ipsm_r1"] + o["loss_ipsm_r2"]).backward()
    assert o["latents"].shape == (1, 4, 16, 16) and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    # the default prompt is the demo scene's caption; the unconditional branch is the empty prompt
    tok = p.tokenizer([caption(demo_family_scene().prims)], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(p.text_encoder(tok)[0][0], p.embeds[1], atol=1e-5)


def _copy(tmp_path):
    d = tmp_path / "prior"
    shutil.copytree(DEMO_PRIOR_DIR, d)
    return d


def test_missing_files_name_the_regenerating_command(tmp_path):
    d = _copy(tmp_path)
    (d / "inpaint" / "unet" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="python -m ipsm.demo_prior train"):
        load_demo_prior(path=d)
    with pytest.raises(FileNotFoundError, match="python -m ipsm.demo_prior train"):
        load_demo_prior(path=tmp_path / "nowhere")


def test_wrong_scheduler_or_channels_name_the_folder(tmp_path):
    d = _copy(tmp_path)
    f = d / "inpaint" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(f.read_text())
    f.write_text(json.dumps(cfg | {"beta_schedule": "linear"}))
    with pytest.raises(ValueError, match="not SD's DDPM schedule") as e:
        load_demo_prior(path=d, check=False)
    assert str(d / "inpaint" / "scheduler") in str(e.value)
    f.write_text(json.dumps(cfg))
    u = d / "sd" / "unet" / "config.json"
    u.write_text(json.dumps(json.loads(u.read_text()) | {"in_channels": 9}))
    with pytest.raises(ValueError, match="IPSM needs 4") as e:
        load_demo_prior(path=d, check=False)
    assert str(d / "sd" / "unet") in str(e.value)


def test_changed_weights_fail_the_hash_check(tmp_path):
    d = _copy(tmp_path)
    w = d / "inpaint" / "vae" / "diffusion_pytorch_model.safetensors"
    b = bytearray(w.read_bytes())
    b[-1] ^= 1
    w.write_bytes(bytes(b))
    with pytest.raises(ValueError, match="changed since training"):
        load_demo_prior(path=d)


def test_a_few_training_steps_are_deterministic():
    "Two runs of 2 VAE + 2 UNet steps from the same seed give bit-identical weights and losses."
    torch.manual_seed(123)
    x = torch.rand(6, 3, 64, 64) * 2 - 1
    data = dict(
        x0=x,
        masked=x * (torch.rand(6, 1, 64, 64) > 0.3),
        mask=(torch.rand(6, 1, 64, 64) > 0.7).float(),
        captions=["red noise sphere, grey checker floor"],
        caption_idx=torch.zeros(6, dtype=torch.long),
    )
    m = PriorModelConfig(vae_channels=(8, 16, 16), unet_channels=(16, 16, 16), norm_groups=8)
    t = PriorTrainConfig(vae_steps=2, vae_batch=4, unet_steps=2, unet_batch=4, log_every=1)
    tok = build_tokenizer()
    te = build_text_encoder(tok)
    runs = []
    for _ in range(2):
        v, vc = train_vae(torch.cat([data["x0"], data["masked"]]), m, t)
        u, uc = train_unet(encode_dataset(v, data, te, tok), m, t)
        runs.append((v.state_dict(), u.state_dict(), vc, uc))
    for a, b in zip(runs[0][:2], runs[1][:2]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0][2:] == runs[1][2:]


def test_guidance_viewer_live_builds_a_slider():
    "The live path of the viewer (a Jupyter frontend attached) is an ipywidgets interact over the steps."
    from ipsm.guidance_widget import guidance_viewer

    rec = dict(
        t=np.array([250, 500]),
        w=np.array([0.5, 0.3]),
        rgb=np.zeros((8, 8, 3)),
        masked_image=np.zeros((8, 8, 3)),
        mask=np.zeros((8, 8)),
        x_t=np.zeros((2, 8, 8, 3)),
        x0_phi=np.zeros((2, 8, 8, 3)),
        x0_sd=np.zeros((2, 8, 8, 3)),
        grad_r1=np.zeros((2, 4, 4)),
        grad_r2=np.zeros((2, 4, 4)),
        loss_r1=[0.0, 0.0],
        loss_r2=[0.0, 0.0],
        label="x",
    )
    w = guidance_viewer(rec, live=True)
    assert type(w).__name__ == "interactive" or hasattr(w, "widget")
