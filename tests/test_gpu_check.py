"""benchmarks/gpu_check.py on a CPU-only machine: it runs its CPU parts and says which parts need a GPU (fast)."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs every part (minutes)")
def test_cpu_parts_and_gpu_list(tmp_path, capsys):
    out = tmp_path / "gpu_check.md"
    rows = gpu_check.main(["--quick", "--out", str(out)])
    status = {(p, s) for p, _, _, s in rows}
    assert ("b", "needs a GPU") in status and ("c", "needs a GPU") in status
    a_rows = [r for r in rows if r[0] == "a"]
    assert len(a_rows) == 2 and all(s == "pass" for *_, s in a_rows), a_rows  # fitted + procedural scene, cpp vs torch ref
    text = out.read_text()
    assert "| part | what | result | status |" in text and "Parts that need a GPU: a (the gsplat half), b, c." in text
    assert "Parts that need a GPU" in capsys.readouterr().out


def test_training_config_uses_the_trainer_api():
    cfg, scene = gpu_check.training_config(quick=False, device="cpu")
    assert cfg.ipsm and cfg.depth and cfg.geo and cfg.schedule.steps_scaler == 0.05
    assert round(10_000 * cfg.schedule.steps_scaler) == 500 and scene in ("fern", "demo")
