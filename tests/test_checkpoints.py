"""Checkpoints hold only tensors and plain types: they load with `torch.load(..., weights_only=True)`, and a file carrying a pickled object is refused."""

from pathlib import Path

import pytest
import torch

from ipsm.config import preset_config, resolve_config
from ipsm.run import setup_run, init_state, save_checkpoint, read_checkpoint, load_checkpoint


class Evil:
    "Any class: torch.save pickles it, weights_only refuses it."


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = resolve_config(preset_config("smoke", depth=False, ipsm=False, prior="none", result_dir=str(tmp_path_factory.mktemp("r"))))
    run = setup_run(cfg)
    state = init_state(run)
    state.step = 4
    state.view_stack = [1]
    return run, state, save_checkpoint(run, state)


def test_loads_with_weights_only(ckpt):
    run, state, p = ckpt
    ck = torch.load(p, map_location="cpu", weights_only=True)
    assert ck["step"] == 4 and ck["view_stack"] == [1] and isinstance(ck["cfg"], dict) and isinstance(ck["history"], dict)
    st = load_checkpoint(run, p)
    assert st.pool is not None and st.pool.remaining == state.pool.remaining
    assert all(torch.equal(st.splats[k], state.splats[k]) for k in state.splats)


@pytest.mark.parametrize("obj", [Path("x"), Evil()])
def test_pickled_object_is_refused(ckpt, tmp_path, obj):
    _, _, p = ckpt
    ck = torch.load(p, weights_only=True)
    ck["history"]["note"] = obj
    torch.save(ck, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="carries a pickled Python object"):
        read_checkpoint(tmp_path / "evil.pt")


def test_garbage_and_missing(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ipsm checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
