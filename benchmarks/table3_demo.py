#!/usr/bin/env python3
"""The paper's Table 3 in miniature: base / + SDS / + IPSM / + IPSM + L_geo on the held-out demo scene.

The demo scene (data/demo, 160x120, LLFF 3-view split: train 1/10/19, test 0/8/16), the `demo` preset of
`ipsm.train` (the authors' schedule x0.1: 1000 steps, pseudo views for 200 < step < 950, warm-up 50) with
the demo prior (trained by ipsm on procedural scenes; not Stable Diffusion) in place of SD, seeds 0/1/2.
Prints mean +- sd of PSNR / SSIM / LPIPS (vgg, inria protocol) / AVGE at the last step, writes a
PSNR-over-steps plot (the paper's Fig. 1: base vs SDS vs IPSM) and crops of the disoccluded region between
the spheres for every row (benchmarks/figures/).

    python benchmarks/table3_demo.py                      # all rows, seeds 0 1 2 (about an hour on 2 quiet cores)
    python benchmarks/table3_demo.py --rows base --seeds 0
    python benchmarks/table3_demo.py --table-only         # re-print / re-plot finished runs

Runs land in results/table3_demo/<row>_s<seed>/ (normal ipsm-train run folders). Only the method's own
knobs may be changed with --score.* style overrides (`--set score.lambda_ipsm_r2=1.0`), never on the test views.
"""
import argparse, contextlib, json, os, statistics, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive"); os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np
import torch

ROWS = {  # name: overrides of the demo preset
    "base": dict(ipsm=False, sds=False, geo=False),
    "+ SDS": dict(ipsm=False, sds=True, geo=False),
    "+ IPSM": dict(ipsm=True, sds=False, geo=False),
    "+ IPSM + L_geo": dict(ipsm=True, sds=False, geo=True),
}
PAPER = {"base": "19.00 / 0.625 / 0.254 / 0.125", "+ SDS": "18.80 / 0.647 / 0.267 / 0.128 (CFG 7.5)",
         "+ IPSM": "19.60 / 0.670 / 0.229 / 0.113", "+ IPSM + L_geo": "19.35 / 0.652 / 0.233 / 0.117 (base + L_geo) ... 20.44 all terms"}


# ------------------------------------------------------------------------------------------------------
# THE ONE PLACE THE DEMO PRIOR IS INJECTED. Today's trainer knows prior='real'|'tiny'|'none' only; while
# this context is active, `ipsm.train.setup_run`'s call of `tiny_prior(device=...)` returns the demo prior
# instead. When the trainer gets prior='demo' (it calls ipsm.demo_prior.load_demo_prior), replace this by
# `prior='demo'` in `config()` and delete the context manager.
PRIOR_PATH = None   # --prior: another demo-prior folder (default data/demo_prior)

@contextlib.contextmanager
def demo_prior_injected():
    import ipsm.train as T
    from ipsm.demo_prior import load_demo_prior
    orig = T.tiny_prior
    T.tiny_prior = lambda device="cpu", **kw: load_demo_prior(device=str(device), path=PRIOR_PATH)
    try: yield
    finally: T.tiny_prior = orig
# ------------------------------------------------------------------------------------------------------


def config(row: str, seed: int, out: Path, overrides: dict, eval_every: int):
    "The demo preset with the row's switches, the demo prior (via the injection above) and dense evaluations."
    from ipsm.train import preset_config
    cfg = preset_config("demo", **ROWS[row], prior="tiny", depth=False, seed=seed, result_dir=str(out), save_video=False, save_ply=False)
    cfg.schedule.eval_steps = tuple(range(eval_every, cfg.schedule.max_steps + 1, eval_every))
    cfg.schedule.save_steps = (cfg.schedule.max_steps,)
    for k, v in overrides.items():
        obj = cfg
        *parents, last = k.split(".")
        for p in parents: obj = getattr(obj, p)
        setattr(obj, last, type(getattr(obj, last))(v) if not isinstance(getattr(obj, last), tuple) else tuple(json.loads(v)))
    return cfg


def run_dir(out: Path, row: str, seed: int) -> Path:
    return Path(out) / f"{row.replace('+ ', '').replace(' ', '_')}_s{seed}"


def run(row, seed, out, overrides, eval_every):
    from ipsm.train import train
    d = run_dir(out, row, seed)
    if (d / "results.json").is_file() and (d / "done.json").is_file(): return d
    t0, c0 = time.time(), time.process_time(); l0 = os.getloadavg()[0]
    with demo_prior_injected(): h = train(config(row, seed, d, overrides, eval_every), progress=False)
    (d / "done.json").write_text(json.dumps(dict(wall_s=time.time() - t0, cpu_s=time.process_time() - c0, load_start=l0,
                                                 load_end=os.getloadavg()[0], s_per_step=h.elapsed / max(1, h.steps[-1]),
                                                 losses={k: v for k, v in h.losses.items()}, steps=h.steps)))
    return d


def curve(d: Path):
    "[(step, psnr)] of a finished run."
    pts = [json.loads(f.read_text()) for f in (d / "stats").glob("val_step*.json")]
    return sorted((m["step"], m["psnr"]) for m in pts)


def table(rows, seeds, out) -> list:
    lines = ["| row | PSNR | SSIM | LPIPS | AVGE | s/step | runs | paper Tab. 3 (LLFF, PSNR/SSIM/LPIPS/AVGE) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ms, sps = [], []
        for s in seeds:
            d = run_dir(out, row, s)
            if not (d / "done.json").is_file(): continue
            last = max(curve(d))[0]
            ms.append(json.loads((d / f"stats/val_step{last:04d}.json").read_text()))
            sps.append(json.loads((d / "done.json").read_text())["s_per_step"])
        if not ms: continue
        f = lambda k, n: f"{statistics.mean(m[k] for m in ms):.{n}f} ± {statistics.stdev(m[k] for m in ms) if len(ms) > 1 else 0:.{n}f}"
        lines.append(f"| {row} | {f('psnr', 2)} | {f('ssim', 3)} | {f('lpips', 3)} | {f('avge', 3)} | {statistics.mean(sps):.3f} | {len(ms)} | {PAPER[row]} |")
    return lines


def plot_curves(rows, seeds, out, path):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=100)
    for row, c in zip(rows, ["k", "tab:red", "tab:blue", "tab:green"]):
        cs = [curve(run_dir(out, row, s)) for s in seeds if (run_dir(out, row, s) / "done.json").is_file()]
        if not cs: continue
        steps = [p[0] for p in cs[0]]; ys = np.array([[p[1] for p in c_] for c_ in cs if len(c_) == len(steps)])
        ax.plot(steps, ys.mean(0), color=c, label=f"{row} (mean of {len(ys)})", lw=1.5)
        if len(ys) > 1: ax.fill_between(steps, ys.min(0), ys.max(0), color=c, alpha=0.15)
    ax.axvspan(200, 950, color="0.9", zorder=-1, label="pseudo views (IPSM / SDS / L_geo on)")
    ax.set_xlabel("step", fontsize=10); ax.set_ylabel("test PSNR (dB)", fontsize=10); ax.tick_params(labelsize=9)
    ax.set_title("demo scene, 3 views: demo prior (trained by ipsm on procedural scenes; not Stable Diffusion)", fontsize=9)
    ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(path); plt.close(fig)


CROP = (0.05, 0.55, 3.6)  # world point between the orange and blue spheres, behind the yellow one (the demo's disocclusion)


def plot_crops(rows, seed, out, path, half=(30, 22)):
    "Crops around the projection of CROP in each test view: GT, then every row's final render."
    import matplotlib.pyplot as plt
    from PIL import Image
    from ipsm.data import load_llff, sparse_split
    from ipsm.cameras import project_points
    from ipsm.demo_scene import demo_scene_path
    sc = load_llff(demo_scene_path(), factor=1); sp = sparse_split(sc, 3)
    uv, _ = project_points(sc.cameras[sp.test], torch.tensor([CROP]))
    fig, axs = plt.subplots(len(sp.test), len(rows) + 1, figsize=(1.6 * (len(rows) + 1), 1.35 * len(sp.test)), dpi=100, squeeze=False)
    for i, (v, name) in enumerate(zip(sp.test, sp.test_names)):
        u0, v0 = [int(round(float(x))) for x in uv[i, 0]]
        box = lambda im: im[max(0, v0 - half[1]):v0 + half[1], max(0, u0 - half[0]):u0 + half[0]]
        axs[i, 0].imshow(box(sc.images[v].numpy())); axs[i, 0].set_ylabel(Path(name).stem, fontsize=8)
        for j, row in enumerate(rows):
            d = run_dir(out, row, seed)
            last = max(curve(d))[0] if (d / "done.json").is_file() else None
            f = d / f"test/ours_{last}/renders/{Path(name).stem}.png"
            if last and f.is_file(): axs[i, j + 1].imshow(box(np.asarray(Image.open(f))))
    for j, t in enumerate(["ground truth"] + list(rows)): axs[0, j].set_title(t, fontsize=9)
    for a in axs.flat: a.set_xticks([]); a.set_yticks([])
    fig.suptitle(f"test views, region between the spheres (seed {seed}, step 1000)", fontsize=9)
    fig.tight_layout(); fig.savefig(path); plt.close(fig)


def step_cost(ckpt: Path, reps: int = 8) -> list:
    "Seconds (wall and process CPU) of one demo training step inside the pseudo window, per row, on trained Gaussians."
    from ipsm.train import adjust_steps, compute_losses, init_state, make_optimizers, optimizer_step, read_checkpoint, setup_run, validate
    ck, lines = read_checkpoint(ckpt), ["| row | s/step wall (median) | CPU s/step (median) | x base (CPU) | Gaussians | load |", "|---|---|---|---|---|---|"]
    base = None
    for row in ROWS:
        cfg = validate(adjust_steps(config(row, 0, ROOT / "results" / "table3_demo" / "_step_cost", {}, 10_000)))
        with demo_prior_injected(): run = setup_run(cfg)
        st = init_state(run)
        st.splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in ck["splats"].items()})
        st.optimizers = make_optimizers(st.splats, cfg.optim, scene_extent=run.extent)
        step, wall, cpu = cfg.pseudo.start + cfg.score.warmup_steps + 10, [], []
        for i in range(reps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            losses, _ = compute_losses(run, st, step); losses["loss"].backward(); optimizer_step(run, st, step)
            if i: wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        w, c = statistics.median(wall), statistics.median(cpu); base = base or c
        lines.append(f"| {row} | {w:.3f} | {c:.3f} | {c / base:.1f} | {len(st.splats['means']):,} | {os.getloadavg()[0]:.1f} |")
        print(lines[-1], flush=True)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "results" / "table3_demo"))
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides path=value, e.g. score.lambda_ipsm_r2=1.0")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--prior", default=None, help="demo-prior folder (default: data/demo_prior)")
    ap.add_argument("--step-cost", action="store_true", help="time one step per row on the base seed-0 Gaussians, train nothing")
    ap.add_argument("--figures", default=str(ROOT / "benchmarks" / "figures"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    global PRIOR_PATH; PRIOR_PATH = a.prior
    ov = dict(s.split("=", 1) for s in a.set)
    if a.step_cost:
        print("\n".join(step_cost(run_dir(a.out, "base", 0) / "ckpts" / "ckpt_1000.pt"))); return
    if not a.table_only:
        for row in a.rows:
            for s in a.seeds:
                d = run(row, s, a.out, ov, a.eval_every)
                print(f"{row} seed {s}: {json.loads((d / 'done.json').read_text())['wall_s']:.0f} s", flush=True)
    print("\n".join(table(a.rows, a.seeds, a.out)))
    Path(a.figures).mkdir(parents=True, exist_ok=True)
    plot_curves(a.rows, a.seeds, a.out, Path(a.figures) / "table3_demo_psnr.png")
    plot_crops(a.rows, a.seeds[0], a.out, Path(a.figures) / "table3_demo_crops.png")
    print(f"uptime load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
