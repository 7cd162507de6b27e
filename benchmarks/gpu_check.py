#!/usr/bin/env python3
"""One script for a CUDA machine: the checks and timings that need a GPU, as one markdown table.

    python benchmarks/gpu_check.py                    # everything this machine can run; table -> benchmarks/_out/gpu_check.md
    python benchmarks/gpu_check.py --quick            # small scenes, (c) with 50 steps (a smoke test of the script itself)
    python benchmarks/gpu_check.py --parts a          # only some parts: a, b, c

(a) gsplat's CUDA `rasterization` against our compiled CPU renderer (`ipsm.render.rasterize(backend='cpp')`),
    forward (RGB, depth, alpha) and gradients (means, quats, scales, opacities, SH / colours), on two scenes: a
    fitted scene (a short `base` training run on fern, or on the demo scene when fern is absent, rendered from a
    test view) and a procedurally placed scene with the on-screen sizes of a fitted LLFF scene (benchmarks/render.py).
    On a CPU it runs the CPU half: our compiled renderer against the pure-torch reference on the same scenes.
(b) times `benchmarks/prior.py --full --device cuda` (one IPSM evaluation with SD v1.5-architecture weights, fp16).
(c) times a 500-step IPSM-Gaussian training run (IPSM + depth + L_geo, the LLFF schedule x0.05: pseudo views for
    steps 100-475) whose diffusion prior has the SD v1.5 architecture with RANDOM weights in fp16 and whose depth
    model has the DPT-Hybrid architecture with RANDOM weights: timing only, the results mean nothing.
On a CPU, (b) and (c) are listed as needing a GPU (an SD-size prior costs ~150 s per step on 2 cores).
"""

import argparse, contextlib, os, platform, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see benchmarks/README.md: spinning OpenMP threads on a busy CPU
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "_out"


def trainer_api():
    "The trainer's public API, imported in this one place: `preset_config`, `train`, and `ipsm.run`, whose `setup_run` calls `load_prior` / `load_depth_model` (patched in `random_models`)."
    from ipsm.config import preset_config
    from ipsm.train import train
    import ipsm.run as R

    return preset_config, train, R


# ---------------------------------------------------------------- (a) gsplat vs the CPU renderer
def fitted_scene(quick, device):
    "Gaussians fitted by a short `base` run of the trainer (fern when present, else the demo scene), seen from a test view."
    preset_config, train, _ = trainer_api()
    from ipsm.data import load_scene
    from ipsm.demo_scene import demo_scene_path
    from ipsm.settings import real_scene

    with contextlib.redirect_stdout(open(os.devnull, "w")):
        fern = real_scene("llff/fern")
    if quick:
        fern = None  # the small demo scene: seconds on a CPU
    data = {} if fern is not None else {"data.data_dir": str(demo_scene_path()), "data.factor": 1}
    steps, out = (30 if quick else 1000), OUT / "gpu_check_fit"
    cfg = preset_config(
        "base",
        **data,
        **{
            "schedule.max_steps": steps,
            "schedule.eval_steps": (),
            "schedule.save_steps": (),
            "device": device,
            "save_video": False,
            "save_ply": False,
            "result_dir": str(out),
        },
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        train(cfg, progress=False)
    sp = torch.load(out / f"ckpts/ckpt_{steps}.pt", map_location="cpu", weights_only=False)["splats"]
    cam = load_scene(cfg.data.data_dir, factor=cfg.data.factor).cameras[0]  # image 0: a test view (every 8th)
    coeffs = torch.cat([sp["sh0"], sp["shN"]], 1)
    params = [sp["means"], sp["quats"], sp["scales"].exp(), sp["opacities"].reshape(-1).sigmoid(), coeffs]
    name = (
        f"{'fern' if fern is not None else 'demo'} after a {steps}-step `base` run on {device} ({len(sp['means']):,} Gaussians, "
        f"SH degree {int(coeffs.shape[1] ** 0.5) - 1}, {cam.width}x{cam.height} test view; {time.perf_counter() - t0:.0f} s)"
    )
    return name, params, cam.viewmats, cam.Ks, cam.width, cam.height, int(coeffs.shape[1] ** 0.5) - 1


def procedural_scene(quick):
    "Gaussians placed through a view frustum with a fitted LLFF scene's on-screen sizes (benchmarks/render.py)."
    from render import make_scene, camera

    n, W, H = (5000, 128, 96) if quick else (50_000, 504, 378)
    viewmats, Ks = camera(W, H)
    return f"procedural ({n:,} Gaussians, {W}x{H})", make_scene(n), viewmats, Ks, W, H, None


def render_grads(params, viewmats, Ks, W, H, sh_degree, backend, device):
    "Outputs (rgb, depth, alpha) and the gradients of a fixed random read-out of them."
    from ipsm.render import rasterize

    ps = [t.to(device).clone().requires_grad_() for t in params]
    rgb, depth, alpha, info = rasterize(*ps, viewmats.to(device), Ks.to(device), W, H, sh_degree=sh_degree, backend=backend)
    g = torch.Generator().manual_seed(0)
    w = [torch.rand(x.shape, generator=g).to(device) for x in (rgb, depth, alpha)]
    ((rgb * w[0]).sum() + 0.3 * (depth * w[1]).sum() + (alpha * w[2]).sum()).backward()
    outs = [x.detach().cpu() for x in (rgb, depth, alpha)] + [p.grad.cpu() for p in ps]
    return outs, info["radii"].cpu()


NAMES = ["rgb", "depth", "alpha", "means", "quats", "scales", "opacities", "colors"]


def compare(a, b, ra, rb):
    "Relative max error per tensor (max |a-b| / max |b|) and the fraction of differing radii."
    errs = {n: float((x - y).abs().max() / y.abs().max().clamp(min=1e-12)) for n, x, y in zip(NAMES, a, b)}
    return errs, float((ra != rb).any(-1).float().mean())


def part_a(quick, cuda):
    rows, tol = [], 1e-3
    for scene in (fitted_scene(quick, "cuda" if cuda else "cpu"), procedural_scene(quick)):
        name, params, viewmats, Ks, W, H, deg = scene
        ours, r_ours = render_grads(params, viewmats, Ks, W, H, deg, "cpp", "cpu")
        if cuda:
            ref, r_ref = render_grads(params, viewmats, Ks, W, H, deg, "gsplat", "cuda")
            what = "gsplat CUDA vs our C++ CPU"
        else:
            ref, r_ref = render_grads(params, viewmats, Ks, W, H, deg, "torch", "cpu")
            what = "torch reference vs our C++ CPU (CPU half of (a))"
        errs, radii = compare(ours, ref, r_ours, r_ref)
        worst = max(errs.values())
        rows.append(
            (
                "a",
                f"{what}: {name}",
                ", ".join(f"{k} {v:.1e}" for k, v in errs.items()) + f"; radii differ {radii:.2%}",
                "pass" if worst < tol else f"CHECK (worst {worst:.1e} > {tol:g})",
            )
        )
    return rows


# ---------------------------------------------------------------- (b) the SD-size prior
def part_b(quick):
    t0 = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prior.py"), "--full", "--device", "cuda"] + (["--repeats", "2"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode:
        return [("b", "benchmarks/prior.py --full --device cuda", f"FAILED: {out.stderr.strip()[-400:]}", "fail")]
    row = next((l for l in out.stdout.splitlines() if l.startswith("| SD v1.5")), out.stdout.strip()[-300:])
    cells = [c.strip() for c in row.strip("|").split("|")]
    return [
        (
            "b",
            "benchmarks/prior.py --full --device cuda (SD v1.5 arch, random weights)",
            f"one IPSM evaluation fwd+bwd {cells[4]} ms, CFG UNet call {cells[5]} ms, VAE encode {cells[6]} ms, peak {cells[7]} MiB; script wall {wall:.0f} s",
            "timing",
        )
    ]


# ---------------------------------------------------------------- (c) a 500-step training run with SD-size random models
def full_size_depth_model(device, dtype):
    "DPT-Hybrid (MiDaS v3) architecture, RANDOM weights: the depth term's compute without its weights."
    from transformers import DPTConfig, DPTForDepthEstimation
    from ipsm.regularizers import MonoDepth

    cfg = DPTConfig(
        is_hybrid=True,
        backbone_featmap_shape=[1, 1024, 24, 24],
        neck_hidden_sizes=[256, 512, 768, 768],
        readout_type="project",
        backbone_out_indices=[2, 5, 8, 11],
    )
    torch.manual_seed(0)
    model = DPTForDepthEstimation(cfg).to(device=device, dtype=dtype)
    return MonoDepth(model, name="DPT-Hybrid architecture, RANDOM weights (timing only)", random_weights=True)


@contextlib.contextmanager
def random_models(T, device, dtype):
    "Make the trainer's setup build the SD v1.5-architecture prior and the DPT-Hybrid depth model with random weights."
    from prior import full_size_prior

    old = T.load_prior, T.load_depth_model
    T.load_prior = lambda *a, **k: full_size_prior(device, dtype)
    T.load_depth_model = lambda *a, **k: full_size_depth_model(device, dtype)
    try:
        yield
    finally:
        T.load_prior, T.load_depth_model = old


def training_config(quick, device):
    "The LLFF preset (fern; the demo scene when fern is absent) with every term on, scaled to 500 (quick: 50) steps."
    preset_config, _, _ = trainer_api()
    from ipsm.settings import real_scene

    with contextlib.redirect_stdout(open(os.devnull, "w")):
        fern = real_scene("llff/fern")
    over = {
        "schedule.steps_scaler": 0.005 if quick else 0.05,
        "ipsm": True,
        "depth": True,
        "geo": True,
        "prior": "real",
        "depth_model": "real",
        "device": device,
        "save_video": False,
        "save_ply": False,
        "result_dir": str(OUT / "gpu_check_train"),
    }
    if fern is None:
        over.update({"data.data_dir": "data/demo", "data.factor": 1})
    return preset_config("llff-3view", **over), "fern" if fern is not None else "demo"


def part_c(quick, cuda):
    cfg, scene = training_config(quick, "cuda" if cuda else "cpu")
    if not cuda:
        return [
            (
                "c",
                f"{round(10_000 * cfg.schedule.steps_scaler)}-step IPSM training ({scene}), SD v1.5 arch + DPT-Hybrid arch, RANDOM weights, fp16",
                f"config built ({cfg.schedule.steps_scaler} x the LLFF schedule, pseudo views {cfg.pseudo.start}-{cfg.pseudo.end} before scaling)",
                "needs a GPU",
            )
        ]
    _, train, T = trainer_api()
    marks = []
    cb = lambda step, h: marks.append((step, time.perf_counter()))
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with random_models(T, "cuda", torch.float16):
        hist = train(cfg, callback=cb, progress=False)
    wall = time.perf_counter() - t0
    start, end = cfg.pseudo.start * cfg.schedule.steps_scaler, cfg.pseudo.end * cfg.schedule.steps_scaler
    rate = lambda sel: statistics.median([(t1 - t0_) / (s1 - s0) for (s0, t0_), (s1, t1) in zip(marks, marks[1:]) if sel(s1)] or [float("nan")])
    inside, outside = rate(lambda s: start < s <= end), rate(lambda s: not start < s <= end)
    steps = hist.steps[-1] if hist.steps else 0
    return [
        (
            "c",
            f"{steps}-step IPSM training ({scene}): IPSM + depth + L_geo, SD v1.5 arch + DPT-Hybrid arch with RANDOM weights, fp16 (timing only)",
            f"wall {wall:.0f} s (incl. set-up and evaluation), {inside:.3f} s/step with pseudo views, {outside:.3f} s/step without; "
            f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB; {len(hist.nan_steps)} skipped steps; "
            f"10k-step estimate {(7500 * inside + 2500 * outside) / 60:.0f} min",
            "timing",
        )
    ]


# ---------------------------------------------------------------- table
def machine(cuda):
    dev = (
        torch.cuda.get_device_name()
        if cuda
        else next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    )
    return f"{dev}; torch {torch.__version__}; {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small scenes, a 50-step run: checks the script, not the numbers")
    ap.add_argument("--parts", default="abc", help="which parts to run (a, b, c)")
    ap.add_argument("--out", default=str(OUT / "gpu_check.md"), help="where the markdown table goes")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    rows = []
    if "a" in a.parts:
        rows += part_a(a.quick, cuda)
    if "b" in a.parts:
        rows += part_b(a.quick) if cuda else [("b", "benchmarks/prior.py --full --device cuda", "not run", "needs a GPU")]
    if "c" in a.parts:
        rows += part_c(a.quick, cuda)
    table = ["| part | what | result | status |", "|---|---|---|---|"] + [f"| {p} | {w} | {r} | {s} |" for p, w, r, s in rows]
    text = f"# gpu_check ({'CUDA' if cuda else 'CPU only'}{', --quick' if a.quick else ''})\n\nMachine: {machine(cuda)}\n\n" + "\n".join(table) + "\n"
    need = [p for p, _, _, s in rows if s == "needs a GPU"]
    if not cuda:
        text += "\nNo CUDA device: ran the CPU parts only. Parts that need a GPU: " + ", ".join(sorted(set(need) | {"a (the gsplat half)"})) + ".\n"
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    return rows


if __name__ == "__main__":
    main()
