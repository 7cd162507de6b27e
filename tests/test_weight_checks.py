"""Up-front weight checks: offline, every missing model is reported in one message, quickly, with its fix; exit status 5."""

import time

import pytest

from ipsm import cli
from ipsm.config import preset_config
from ipsm.run import _check_captioner, check_run_models
from ipsm.settings import ModelsMissingError


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    for k, v in {
        "inpaint_model": "runwayml/stable-diffusion-inpainting",
        "sd_model": str(tmp_path / "sd15"),
        "depth_model": "Intel/dpt-hybrid-midas",
        "caption_model": "Salesforce/blip-image-captioning-base",
    }.items():
        monkeypatch.setenv(f"IPSM_{k.upper()}", v)
    return tmp_path


def test_all_missing_in_one_fast_message(offline):
    t0 = time.perf_counter()
    with pytest.raises(ModelsMissingError) as e:
        check_run_models(preset_config("llff-3view"))
    assert time.perf_counter() - t0 < 3
    msg = str(e.value)
    assert msg.startswith("3 model(s)")
    for s in (
        "SD-Inpainting",
        "Stable Diffusion v1.5",
        "DPT-Hybrid",
        "IPSM_INPAINT_MODEL",
        "IPSM_SD_MODEL",
        "IPSM_DEPTH_MODEL",
        "--no-ipsm",
        "--no-depth",
        str(offline / "sd15"),
    ):
        assert s in msg, s
    lines = msg.splitlines()  # one item per line pair, never wrapped
    assert all(l.startswith(("- ", "  Fix: ")) for l in lines[1:]) and len(lines) == 7


def test_missing_captioner_is_announced_not_fatal(offline, capsys):
    "Without BLIP the SD prompt falls back: said before training (and recorded in cfg.yml as prompt_source 'fallback')."
    _check_captioner(preset_config("llff-3view"))
    out = capsys.readouterr().out
    assert "BLIP captioner" in out and "falls back to 'a photography of a scene'" in out and "--prompt" in out
    _check_captioner(preset_config("llff-3view", prompt="a fern"))
    _check_captioner(preset_config("base"))
    assert capsys.readouterr().out == ""  # a prompt, or no prior: nothing to announce


def test_what_needs_nothing(offline):
    check_run_models(preset_config("base"))
    check_run_models(preset_config("smoke"))
    with pytest.raises(ModelsMissingError, match="1 model"):
        check_run_models(preset_config("llff-3view", ipsm=False))
    with pytest.raises(ModelsMissingError, match="3 model"):  # BLIP is never fatal: without it the prompt falls back
        check_run_models(preset_config("llff-3view", prompt="a fern"))


def test_cli_exit_status(offline, capsys):
    try:
        code = cli.train_main(["llff-3view", "--result-dir", str(offline / "run"), "--data-dir", "data/demo", "--factor", "1"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 5 and "3 model(s)" in err and not (offline / "run/cfg.yml").exists()
