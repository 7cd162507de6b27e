"""Training-view order: the authors' shuffled stack (default) and i.i.d. draws (`--view-order iid`)."""

import pytest
import torch

from ipsm.config import preset_config, resolve_config
from ipsm.losses import next_view
from ipsm.run import setup_run, init_state


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for order in ("stack", "iid"):
        cfg = resolve_config(
            preset_config(
                "smoke", view_order=order, ipsm=False, depth=False, geo=False, prior="none", depth_model="none", result_dir=str(tmp_path_factory.mktemp(order))
            )
        )
        out[order] = setup_run(cfg)
    return out


def _draws(run, n=60):
    state = init_state(run)
    return [next_view(run, state) for _ in range(n)], state


def test_stack_uses_every_view_once_per_round(runs):
    seq, _ = _draws(runs["stack"])
    V = len(runs["stack"].train_cams)
    assert all(sorted(seq[i : i + V]) == list(range(V)) for i in range(0, len(seq), V)), seq


def test_stack_pops_like_the_reference(runs):
    "viewpoint_stack.pop(randint(0, len - 1)), refilled with every view (in order) when empty."
    seq, _ = _draws(runs["stack"], 9)
    g, stack, ref = torch.Generator().manual_seed(runs["stack"].cfg.seed), [], []
    for _ in range(9):
        if not stack:
            stack = list(range(3))
        ref.append(stack.pop(int(torch.randint(len(stack), (1,), generator=g))))
    assert seq == ref


def test_iid_is_the_previous_behaviour_and_not_a_stack(runs):
    seq, _ = _draws(runs["iid"])
    g = torch.Generator().manual_seed(runs["iid"].cfg.seed)
    assert seq == [int(torch.randint(3, (1,), generator=g)) for _ in range(60)]
    assert not all(sorted(seq[i : i + 3]) == [0, 1, 2] for i in range(0, 60, 3))


def test_default_is_the_stack():
    assert preset_config("llff-3view").view_order == preset_config("dtu-3view").view_order == "stack"
