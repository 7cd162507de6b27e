#!/usr/bin/env python3
"""Seconds per training step on CPU, term by term: what IPSM, the depth terms and L_geo add to a 3DGS step.

One step = `ipsm.losses.compute_losses` (render a training view; inside the pseudo window also render a
pseudo view and its source view's depth, warp, and the enabled pseudo-view terms) + `backward()` + Adam
(`optimizer_step`); densification is left out so every configuration times the same Gaussians. The step
index sits inside the pseudo window after the IPSM warm-up (step 2600 of the llff-3view schedule), so
every enabled term is really computed. Diffusion and depth models are the tiny random ones
(`ipsm.diffusion.tiny_prior`, `ipsm.regularizers.tiny_depth_model`): the same code path and tensor
shapes through the VAE (512x512 latents 64x64), far less UNet compute than SD v1.5 (see
benchmarks/prior.py for the full-size UNet cost).

    python benchmarks/train_step.py --ckpt results/real_scenes/fern_base_s0/ckpts/ckpt_2000.pt
    python benchmarks/train_step.py --ckpt RUN/ckpts/ckpt_200.pt --n-gs 50000 --configs "seen views only (base)" "+ L_geo"
    python benchmarks/train_step.py --data-dir data/demo --preset demo      # the embedded scene
    python benchmarks/train_step.py --preset smoke --reps 1                  # seconds: checks the script runs

Start from a trained checkpoint (`--ckpt`) to time a realistic number of Gaussians; without it the
3-view initial point cloud is used. Each configuration runs in its own process (its own peak RSS).
"""

import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name: (ipsm, depth, geo)
    "seen views only (base)": (False, False, False),
    "+ L_geo": (False, False, True),
    "+ depth (tiny DPT)": (False, True, False),
    "+ IPSM (tiny prior)": (True, False, False),
    "full: IPSM + depth + L_geo": (True, True, True),
}


def run_one(name, a):
    import torch

    torch.set_num_threads(a.threads)
    from ipsm.config import preset_config, resolve_config
    from ipsm.run import setup_run, init_state, read_checkpoint
    from ipsm.losses import compute_losses, optimizer_step
    from ipsm.gaussians import make_optimizers

    ipsm, depth, geo = CONFIGS[name]
    cfg = preset_config(a.preset, ipsm=ipsm, depth=depth, geo=geo, sds=False, prior="tiny", depth_model="tiny", result_dir=a.out)
    if a.data_dir:
        cfg.data.data_dir = a.data_dir
    cfg = resolve_config(cfg)
    run = setup_run(cfg)
    state = init_state(run)
    if a.ckpt:
        ck = read_checkpoint(a.ckpt)
        sp = ck["splats"]
        if a.n_gs and a.n_gs < len(sp["means"]):  # a fixed random subset (benchmarks/step_profile.py keeps the same one)
            keep = torch.randperm(len(sp["means"]), generator=torch.Generator().manual_seed(0))[: a.n_gs].sort().values
            sp = {k: v[keep] for k, v in sp.items()}
        state.splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(run.device).contiguous()) for k, v in sp.items()})
        state.strategy_state = run.strategy.initialize_state(scene_scale=run.extent)
        state.optimizers = make_optimizers(state.splats, cfg.optim, scene_extent=run.extent)
    step = min(cfg.pseudo.start + cfg.score.warmup_steps + 100, cfg.pseudo.end - 1)  # inside the window, after the warm-up
    assert cfg.pseudo.start < step < cfg.pseudo.end
    times, cpus, terms = [], [], None
    for i in range(a.reps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        losses, _ = compute_losses(run, state, step)
        losses["loss"].backward()
        optimizer_step(run, state, step)
        if i:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)  # the first step is a warm-up
        terms = sorted(k for k in losses if k != "loss")
    H, W = run.train_images.shape[1:3]
    return dict(
        name=name,
        s_per_step=statistics.median(times),
        cpu=statistics.median(cpus),
        min=min(times),
        terms=terms,
        n_gs=len(state.splats["means"]),
        image=f"{W}x{H}",
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        reps=a.reps,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="llff-3view")
    ap.add_argument("--data-dir", default=None, help="scene folder (default: the preset's)")
    ap.add_argument("--ckpt", default=None, help="start from these Gaussians (a checkpoint of a run on the same scene)")
    ap.add_argument("--n-gs", type=int, default=0, help="keep a fixed random subset of this many Gaussians of --ckpt")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_train_step"), help="run folder (caches the 3-view init)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a)))
        return
    rows = []
    print(f"# {os.cpu_count()} CPUs, {a.threads} threads, preset {a.preset}, ckpt {a.ckpt}, load average {os.getloadavg()[0]:.2f}", flush=True)
    print(
        "| configuration | s/step (median) | CPU s/step (median) | min | x base | terms | Gaussians | image | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name in a.configs:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--preset",
            a.preset,
            "--reps",
            str(a.reps),
            "--threads",
            str(a.threads),
            "--out",
            a.out,
            "--n-gs",
            str(a.n_gs),
        ]
        if a.data_dir:
            cmd += ["--data-dir", a.data_dir]
        if a.ckpt:
            cmd += ["--ckpt", a.ckpt]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            print(f"| {name} | failed (exit {r.returncode}) | | | | | | | |\n{r.stderr[-2000:]}", flush=True)
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(d)
        base = rows[0]["s_per_step"]
        print(
            f"| {name} | {d['s_per_step']:.3f} | {d['cpu']:.3f} | {d['min']:.3f} | {d['s_per_step'] / base:.1f} | {', '.join(d['terms'])} | "
            f"{d['n_gs']:,} | {d['image']} | {d['rss_mb']:.0f} |",
            flush=True,
        )
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
