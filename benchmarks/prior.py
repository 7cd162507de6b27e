#!/usr/bin/env python3
"""Time one IPSM evaluation: two UNets with a CFG batch of 2 plus the VAE encodes, forward and backward.

One evaluation is exactly what a training step between 2000 and 9500 adds (`ipsm.score.ipsm_loss` on an
LLFF-sized 504x378 render, then `backward()` into the render): 3 differentiable/no-grad VAE encodes of the
render, 1 encode of the masked warped image, the 9-channel inpainting UNet and the 4-channel SD UNet
(each on a [negative, positive] batch of 2), and the backward pass through the VAE encoder.

    python benchmarks/prior.py                         # tiny random prior (tests' size), CPU fp32
    python benchmarks/prior.py --full                  # SD v1.5 architecture, random weights, CPU fp32
    python benchmarks/prior.py --full --device cuda    # same on a GPU, fp16 weights (the authors' setting)
    add --write-readme to record the row in benchmarks/README.md (section "Diffusion prior")

--full builds UNet2DConditionModel / AutoencoderKL with Stable Diffusion v1.5's configuration and random
weights: the same compute as the real checkpoints (the weights' values do not change the FLOPs).
"""

import argparse, os, platform, re, resource, statistics, sys, time
from pathlib import Path

# Spinning OpenMP threads make a busy 2-core machine 10-30x slower (see the renderer section); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ipsm.diffusion import Prior, tiny_prior, sd_scheduler, predict_noise, encode_images, _freeze  # noqa: E402
from ipsm.score import ScoreConfig, ipsm_loss  # noqa: E402

README = ROOT / "benchmarks" / "README.md"
SECTION = "## Diffusion prior (benchmarks/prior.py)"


def full_size_prior(device="cpu", dtype=torch.float32, seed=0) -> Prior:
    "Random-weight models with SD v1.5's architecture: 9- and 4-channel UNets (860M params each) and the SD VAE."
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = lambda c: UNet2DConditionModel(
        sample_size=64,
        in_channels=c,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
    )
    ui, us = unet(9), unet(4)
    for m in (vae, ui, us):
        torch.nn.Module.to(m, device=device, dtype=dtype)  # no diffusers fp32-modules warning
    _freeze(vae, ui, us)
    embeds = torch.randn(2, 77, 768).to(device, dtype)
    return Prior(
        vae=vae,
        unet_inpaint=ui,
        unet_sd=us,
        scheduler=sd_scheduler(),
        embeds=embeds,
        is_tiny=True,
        label="FULL-SIZE RANDOM PRIOR (SD v1.5 architecture, random weights)",
    )


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    "Median and min wall time (ms) of `fn` over `repeats` runs."
    ts = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), min(ts)


def peak_mem_mb(device):
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def run(full, device, dtype, repeats, warmup, H=378, W=504):
    t0 = time.perf_counter()
    prior = full_size_prior(device, dtype) if full else tiny_prior(device=device, dtype=dtype)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for m in (prior.unet_inpaint, prior.unet_sd, prior.vae) for p in m.parameters())
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(H, W, 3, generator=g, device="cpu").to(device)
    warped = torch.rand(H, W, 3, generator=g).to(device)
    mask = (torch.rand(H, W, generator=g) > 0.7).to(device)
    cfg = ScoreConfig()

    def evaluation():
        x = rgb.clone().requires_grad_()
        o = ipsm_loss(prior, x, warped, mask, cfg, g)
        (0.2 * o["loss_ipsm_r1"] + 2.0 * o["loss_ipsm_r2"]).backward()

    z = torch.randn(1, 4, 64, 64, device=device)
    extra = torch.randn(1, 5, 64, 64, device=device)

    def unet_call():
        with torch.no_grad():
            predict_noise(prior.unet_inpaint, z, torch.tensor([500], device=device), prior.embeds, 7.5, extra)

    def vae_encode():
        with torch.no_grad():
            encode_images(prior, rgb[None], g)

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        evaluation()
    ev = timed(evaluation, device, repeats)
    un = timed(unet_call, device, max(1, repeats if not full else 1))
    va = timed(vae_encode, device, max(1, repeats if not full else 1))
    return dict(
        prior="SD v1.5 arch (random)" if full else "tiny random",
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        params_m=n_params / 1e6,
        build_s=build_s,
        eval_ms=ev[0],
        eval_min_ms=ev[1],
        unet_ms=un[0],
        vae_ms=va[0],
        peak_mb=peak_mem_mb(device),
        repeats=repeats,
        threads=torch.get_num_threads(),
        label=prior.label,
    )


HEADER = (
    "| prior | device | dtype | params (M) | one IPSM evaluation, fwd+bwd (ms) | one CFG UNet call, batch 2 (ms) "
    "| one VAE encode 512² (ms) | peak memory (MiB) | host |\n|---|---|---|---|---|---|---|---|---|"
)


def row(r):
    mem = f"{r['peak_mb']:.0f} ({'CUDA max allocated' if r['device'].startswith('cuda') else 'process peak RSS'})"
    dev = r["device"] if not r["device"].startswith("cuda") else torch.cuda.get_device_name()
    host = f"{platform.machine()}, {r['threads']} threads, repeats={r['repeats']}"
    return (
        f"| {r['prior']} | {dev} | {r['dtype']} | {r['params_m']:.1f} | {r['eval_ms']:.0f} (min {r['eval_min_ms']:.0f}) | {r['unet_ms']:.0f} "
        f"| {r['vae_ms']:.0f} | {mem} | {host} |"
    )


def write_readme(new_row):
    "Insert/replace this configuration's row in the section; leave the rest of README.md untouched."
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    key = lambda line: "|".join(c.strip() for c in line.split("|")[1:4])  # prior | device | dtype
    pat = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    m = pat.search(text)
    rows = [l for l in (m.group(0).splitlines() if m else []) if l.startswith("| ") and not l.startswith("| prior")]
    rows = [l for l in rows if key(l) != key(new_row) and "fill in" not in l] + [new_row]
    if not any("cuda" in l.lower() or "H100" in l or "RTX" in l or "A100" in l for l in rows):
        rows.append("| SD v1.5 arch (random) | CUDA GPU | float16 | | *fill in: `python benchmarks/prior.py --full --device cuda --write-readme`* | | | | |")
    body = (
        f"{SECTION}\n\nOne IPSM evaluation = what a training step in 2000-9500 adds: `ipsm.score.ipsm_loss` on a "
        "504×378 render (bilinear to 512², 3 VAE encodes of the render + 1 of the masked warped view, the 9-channel "
        "inpainting UNet and the 4-channel SD UNet each on a CFG batch of 2) and `backward()` through the VAE "
        "encoder into the render. `--full` uses the SD v1.5 architecture with random weights (same compute as the real "
        "checkpoints); the tiny prior is the one the notebooks test with. Reproduce with "
        "`python benchmarks/prior.py [--full] [--device cuda] --write-readme`.\n\n"
        f"{HEADER}\n" + "\n".join(rows) + "\n\n"
        "For scale: the authors report about 1 h per scene (10k steps, 7.5k of them with IPSM, plus MiDaS and three "
        "3DGS renders per step) on one RTX 3090 with fp16 weights, i.e. at most ~0.5 s per IPSM evaluation there. "
        "CPU rows come from the shared 2-core build machine: the tiny row on an idle moment of it (load average < 1), "
        "the full-size row while other jobs ran (load average 4-9), so that one is an upper bound. "
        "`OMP_WAIT_POLICY=passive` (set by the script) matters a lot on a busy machine (tiny prior, load 4-9: 3.3 s "
        "median with spinning OpenMP threads vs 0.71 s passive). No GPU was available to this task: the CUDA row is to be filled in.\n\n"
    )
    text = pat.sub(lambda _: body, text) if m else text.rstrip("\n") + "\n\n" + body
    README.write_text(text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="SD v1.5 architecture (random weights) instead of the tiny prior")
    ap.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    ap.add_argument("--dtype", default="auto", help="'auto' (fp16 on cuda, fp32 on cpu), 'float16' or 'float32'")
    ap.add_argument("--repeats", type=int, default=None, help="timed evaluations (default: 5 tiny, 1 full on CPU, 5 on GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed evaluations first (default: 1, 0 for full on CPU)")
    ap.add_argument("--write-readme", action="store_true", help="record the row in benchmarks/README.md")
    a = ap.parse_args()
    cpu_full = a.full and a.device == "cpu"
    dtype = {"auto": torch.float16 if a.device.startswith("cuda") else torch.float32, "float16": torch.float16, "float32": torch.float32}[a.dtype]
    repeats = a.repeats or (1 if cpu_full else 5)
    warmup = a.warmup if a.warmup is not None else (0 if cpu_full else 1)
    r = run(a.full, a.device, dtype, repeats, warmup)
    print(f"[{r['label']}] built in {r['build_s']:.1f}s")
    print(HEADER)
    print(row(r))
    if a.write_readme:
        write_readme(row(r))
        print(f"wrote {README.relative_to(ROOT)}")
