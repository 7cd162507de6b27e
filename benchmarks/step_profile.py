#!/usr/bin/env python3
"""Where one training step spends its time: wall and process CPU seconds per stage, for base, + L_geo and full IPSM.

The step is the trainer's own (`ipsm.train._finite_step` around `ipsm.losses.compute_losses`); the profile
only wraps the library functions it calls with timers (exclusive times: a stage's own time without the
stages nested in it), so what is timed is what `ipsm-train` runs:

- render fwd: the training view, the pseudo view (both with gradients) and the warp's source view
  (depth only, no gradients); warp: `warp_pseudo_view`;
- L1, SSIM (D-SSIM), L_geo, depth terms, IPSM: the `term_*` functions of `ipsm.losses.TERMS`;
- losses (rest): the schedule, the weighted sum and what else `compute_losses` does itself;
- backward: the compiled rasterizer's and projection's backward kernels, and the rest of autograd
  (SH, SSIM, L1, warp terms, activations: "backward outside the kernels");
- Adam: `optimizer_step`; densify stats: the strategy's per-step gradient statistics (and `retain_grad`);
  finite checks: the non-finite loss/gradient test of `_finite_step`;
- densify (amortised): one grow+prune step (timed once, on a copy of the state) / `refine_every`.

    python benchmarks/step_profile.py --ckpt /tmp/train_before/fern_base_s0/ckpts/ckpt_200.pt --n-gs 50000

Stages are timed with `time.perf_counter` (wall) and `time.process_time` (CPU time of the whole process,
all threads: on a shared machine the more trustworthy number; with 2 threads it can reach 2x wall).
Each configuration runs in its own process; medians over `--reps` steps after one warm-up step.
"""

import argparse, collections, contextlib, copy, functools, json, os, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name: (preset overrides)
    "base": dict(ipsm=False, depth=False, geo=False, prior="none", depth_model="none"),
    "base + L_geo": dict(ipsm=False, depth=False, geo=True, prior="none", depth_model="none"),
    "full IPSM (demo prior, tiny depth)": dict(ipsm=True, depth=True, geo=True, prior="demo", depth_model="tiny"),
}
ORDER = [
    "render fwd: training view",
    "render fwd: pseudo view",
    "render fwd: source depth (no grad)",
    "warp",
    "L1",
    "SSIM",
    "L_geo",
    "depth (seen + pseudo)",
    "IPSM (R1 + R2)",
    "losses (rest)",
    "backward: rasterizer kernel",
    "backward: projection kernel",
    "backward: outside the kernels",
    "finite checks",
    "densify stats",
    "Adam",
    "densify (amortised)",
    "other",
]


class Timers:
    "Exclusive wall / CPU time per stage: a nested stage's time is not counted in its parent's."

    def __init__(self):
        self.wall, self.cpu, self.stack = collections.defaultdict(float), collections.defaultdict(float), []

    @contextlib.contextmanager
    def __call__(self, name):
        t = [time.perf_counter(), time.process_time()]
        self.stack.append([0.0, 0.0])
        try:
            yield
        finally:
            dw, dc = time.perf_counter() - t[0], time.process_time() - t[1]
            cw, cc = self.stack.pop()
            self.wall[name] += dw - cw
            self.cpu[name] += dc - cc
            if self.stack:
                self.stack[-1][0] += dw
                self.stack[-1][1] += dc

    def wrap(self, name_of, fn):
        @functools.wraps(fn)
        def inner(*a, **k):
            with self(name_of(*a, **k) if callable(name_of) else name_of):
                return fn(*a, **k)

        return inner


def instrument(T):
    "Wrap the functions the step calls (module attributes, looked up at call time) with timers."
    import torch
    import ipsm.losses as L, ipsm.train as TR, ipsm.render as R

    seen = {"first": True}

    def render_name(*a, **k):
        if not torch.is_grad_enabled():
            return "render fwd: source depth (no grad)"
        name = "render fwd: training view" if seen["first"] else "render fwd: pseudo view"
        seen["first"] = False
        return name

    L.render_view = T.wrap(render_name, L.render_view)
    L.compute_losses = T.wrap("losses (rest)", L.compute_losses)
    L.warp_pseudo_view = T.wrap("warp", L.warp_pseudo_view)
    names = {
        "term_l1": "L1",
        "term_dssim": "SSIM",
        "term_geo": "L_geo",
        "term_depth_seen": "depth (seen + pseudo)",
        "term_depth_pseudo": "depth (seen + pseudo)",
        "term_ipsm": "IPSM (R1 + R2)",
        "term_sds": "IPSM (R1 + R2)",
    }
    L.TERMS = {k: T.wrap(names[f.__name__], f) for k, f in L.TERMS.items()}
    TR.optimizer_step = T.wrap("Adam", TR.optimizer_step)
    TR.densify_step = T.wrap("densify stats", TR.densify_step)
    TR._finite_step = T.wrap("finite checks", TR._finite_step)
    torch.autograd.backward = T.wrap("backward: outside the kernels", torch.autograd.backward)
    for cls, name in ((R._RasterizeCpp, "backward: rasterizer kernel"), (R._ProjectCpp, "backward: projection kernel")):
        cls.backward = staticmethod(T.wrap(name, cls.backward))
    return seen


def refine_step_after(strategy, step):
    s = step + 1
    while not strategy.is_refine_step(s):
        s += 1
    return s


def quiet_step(cfg, strategy, lo):
    "A step inside the pseudo window after the warm-up that is neither a refine nor a reset step."
    s = lo
    while strategy.is_refine_step(s) or strategy.is_reset_step(s):
        s += 1
    assert cfg.pseudo.start < s < cfg.pseudo.end, s
    return s


def load_gaussians(run, state, a):
    import torch
    from ipsm.run import read_checkpoint
    from ipsm.gaussians import make_optimizers

    ck = read_checkpoint(a.ckpt)
    sp = ck["splats"]
    if a.n_gs and a.n_gs < len(sp["means"]):  # a fixed random subset: the same Gaussians for every configuration
        keep = torch.randperm(len(sp["means"]), generator=torch.Generator().manual_seed(0))[: a.n_gs].sort().values
        sp = {k: v[keep] for k, v in sp.items()}
    state.splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(run.device).contiguous()) for k, v in sp.items()})
    state.optimizers = make_optimizers(state.splats, run.cfg.optim, scene_extent=run.extent)
    state.strategy_state = run.strategy.initialize_state(scene_scale=run.extent)  # per-Gaussian statistics start afresh


def run_one(name, a):
    import torch

    torch.set_num_threads(a.threads)
    from ipsm.config import preset_config, resolve_config
    from ipsm.run import setup_run, init_state
    import ipsm.losses as L, ipsm.train as TR

    cfg = resolve_config(preset_config("llff-3view", sds=False, result_dir=a.out, **CONFIGS[name]))
    run = setup_run(cfg)
    state = init_state(run)
    if a.ckpt:
        load_gaussians(run, state, a)
    step = quiet_step(cfg, run.strategy, min(cfg.pseudo.start + cfg.score.warmup_steps + 100, cfg.pseudo.end - 1))
    T = Timers()
    seen = instrument(T)
    rows, totals = [], []
    for i in range(a.reps + 1):
        T.wall.clear()
        T.cpu.clear()
        seen["first"] = True
        w0, c0 = time.perf_counter(), time.process_time()
        losses, info = L.compute_losses(run, state, step)
        ok = TR._finite_step(run, state, step, losses, info)
        assert ok, "non-finite step"
        w, c = time.perf_counter() - w0, time.process_time() - c0
        T.wall["other"] += w - sum(T.wall.values())
        T.cpu["other"] += c - sum(T.cpu.values())
        if i:
            rows.append((dict(T.wall), dict(T.cpu)))
            totals.append((w, c))
    # densification: one grow+prune step on a copy of the state, amortised over refine_every steps
    st = copy.deepcopy(state)
    seen["first"] = True
    rs = refine_step_after(run.strategy, step)
    losses, info = L.compute_losses(run, st, rs)
    run.strategy.step_pre_backward(st.splats, st.optimizers, st.strategy_state, rs, info)
    losses["loss"].backward()
    w0, c0 = time.perf_counter(), time.process_time()
    out = run.strategy.step_post_backward(st.splats, st.optimizers, st.strategy_state, rs, info)
    dw, dc = time.perf_counter() - w0, time.process_time() - c0
    med = lambda xs: statistics.median(xs) if xs else 0.0
    stages = {k: (med([r[0].get(k, 0.0) for r in rows]), med([r[1].get(k, 0.0) for r in rows])) for k in ORDER}
    stages["densify (amortised)"] = (dw / run.strategy.refine_every, dc / run.strategy.refine_every)
    H, W = run.train_images.shape[1:3]
    return dict(
        name=name,
        step=step,
        n_gs=len(state.splats["means"]),
        image=f"{W}x{H}",
        reps=a.reps,
        threads=a.threads,
        wall=med([t[0] for t in totals]),
        cpu=med([t[1] for t in totals]),
        stages=stages,
        refine=dict(step=rs, wall=dw, cpu=dc, every=run.strategy.refine_every, out={k: int(v) for k, v in out.items()}),
        terms=sorted(k for k in losses if k != "loss"),
    )


def table(results):
    head = "| stage | " + " | ".join(f"{r['name']} wall / CPU (ms)" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for k in ORDER:
        vals = [r["stages"].get(k, (0.0, 0.0)) for r in results]
        if all(v[1] < 5e-4 and v[0] < 5e-4 for v in vals):
            continue
        lines.append(f"| {k} | " + " | ".join(f"{1000 * w:.0f} / {1000 * c:.0f}" for w, c in vals) + " |")
    tot = [(r["wall"] + r["stages"]["densify (amortised)"][0], r["cpu"] + r["stages"]["densify (amortised)"][1]) for r in results]
    lines.append("| **step (median, + densify amortised)** | " + " | ".join(f"**{1000 * w:.0f}** / **{1000 * c:.0f}**" for w, c in tot) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="start from these Gaussians (a fern checkpoint); default: the 3-view init")
    ap.add_argument("--n-gs", type=int, default=0, help="keep a fixed random subset of this many Gaussians of --ckpt")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_train_step"), help="run folder (caches the 3-view init)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a)))
        return
    print(
        f"# {os.cpu_count()} CPUs, {a.threads} threads, ckpt {a.ckpt} (n_gs {a.n_gs or 'all'}), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    results = []
    for name in a.configs:
        cmd = [sys.executable, __file__, "--one", name, "--reps", str(a.reps), "--threads", str(a.threads), "--out", a.out, "--n-gs", str(a.n_gs)]
        if a.ckpt:
            cmd += ["--ckpt", a.ckpt]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            print(f"# {name}: failed (exit {r.returncode})\n{r.stderr[-3000:]}", flush=True)
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(d)
        print(
            f"# {name}: step {d['step']}, {d['n_gs']:,} Gaussians, {d['image']}, terms {', '.join(d['terms'])}; "
            f"median {d['wall']:.3f} s wall / {d['cpu']:.3f} s CPU; refine step {d['refine']['step']} "
            f"{d['refine']['wall']:.2f} s wall ({d['refine']['out']}); load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(table(results))
    print(f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
