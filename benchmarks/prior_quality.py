#!/usr/bin/env python3
"""Is the demo prior a good prior? One-step x0 PSNR, inpainting inside IPSM's masks, samples.

The demo prior (data/demo_prior: trained by ipsm on procedural scenes; not Stable Diffusion) on what IPSM
shows it, at its 64x64 working size:
  - held-out family scenes (seeds 10000.., never trained on): pseudo views of their 3-view split and other
    rig views, with the repaint masks of warps by exact depth (`ipsm.demo_prior.scene_samples`);
  - the demo scene: the same construction on data/demo's training views 1/10/19;
  - the demo scene with *real IPSM masks*: pseudo views from the trainer's pose pool, warped with the depth
    rendered by a base 3DGS trained on the demo scene (results/table3_demo/base_s0, from table3_demo.py),
    exactly as `ipsm.train.pseudo_step` builds them.
Tables: one-step x0 PSNR of the plain prior eps_* at t = 250/500/750 (CFG 1 and 7.5) against the noisy input
(x_t / sqrt(abar), i.e. eps_hat = 0) and the VAE ceiling; the one-step estimates IPSM uses (inpainter x0_phi given
the inline prior vs plain x0_*, CFG 7.5, whole image and inside the repaint mask); PSNR inside the repaint mask of a
mean fill, OpenCV Telea and the prior's 25-step DDIM inpainting. Figure: benchmarks/figures/prior_samples.png.

    python benchmarks/prior_quality.py [--n-scenes 16] [--figure PATH]
"""

import argparse, os, statistics, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np
import torch


def family_sets(n_scenes: int):
    "Held-out family samples and demo-scene samples: (truth, warped, mask) triples at 160x120, plus captions."
    from ipsm.demo_prior import scene_samples
    from ipsm.scene_family import demo_family_scene

    f = lambda a: torch.from_numpy(a).float() / 255

    def triples(smps):
        return [(f(s["x0"][k]), f(s["warped"][k]), torch.from_numpy(s["mask"][k])) for s in smps for k in range(len(s["x0"]))]

    held = [scene_samples(10_000 + i) for i in range(n_scenes)]
    demo = [scene_samples(0, scene=demo_family_scene())]
    return dict(held_out=triples(held), demo=triples(demo)), [s["caption"] for s in held]


def real_ipsm_masks(ckpt: Path, n: int = 12, seed: int = 0):
    "Pseudo views of the demo scene warped with the depth a trained base 3DGS renders (the trainer's own path)."
    if not ckpt.is_file():
        return None
    from ipsm.train import load_for_inference, render_view
    from ipsm.warp import WarpConfig, warp_pseudo_view
    from ipsm.pseudo_views import PseudoViewPool
    from ipsm.scene_family import demo_family_scene

    run, st = load_for_inference(ckpt, device="cpu")
    pool = PseudoViewPool(
        run.train_cams.to("cpu"), kind="llff", bounds=torch.as_tensor(np.asarray(run.scene.bounds))[list(run.split.train)], n_poses=10_000, seed=seed
    )
    g, out, scene = torch.Generator().manual_seed(seed), [], demo_family_scene()
    with torch.no_grad():
        for _ in range(n):
            cam, src = pool.pop(generator=g)
            _, dp, _, _ = render_view(run, st.splats, cam, 3)
            _, ds, _, _ = render_view(run, st.splats, run.train_cams[src], 3)
            w = warp_pseudo_view(run.train_images[src], ds[0, ..., 0], dp[0, ..., 0], run.train_cams.viewmats[src], cam.viewmats[0], cam.Ks[0], WarpConfig())
            truth, _ = scene.render(cam.to(torch.float64))
            out.append((torch.from_numpy(np.round(truth[0] * 255) / 255).float(), w.image, w.mask_inpaint))
    return out


def x0_table(prior, sets, ts=(250, 500, 750)):
    from ipsm.demo_prior import x0_quality

    lines = ["| views | t | VAE ceiling | noisy input (eps_hat = 0) | x0_hat, CFG 1 | x0_hat, CFG 7.5 |", "|---|---|---|---|---|---|"]
    for name, tr in sets.items():
        imgs = torch.stack([t[0] for t in tr])
        for t in ts:
            a, b = x0_quality(prior, imgs, t, 1.0), x0_quality(prior, imgs, t, 7.5)
            lines.append(f"| {name} ({len(imgs)}) | {t} | {a['vae']:.2f} | {a['noisy']:.2f} | {a['x0']:.2f} | {b['x0']:.2f} |")
    return lines


def ipsm_x0_table(prior, sets, ts=(250, 500, 750), guidance=7.5):
    "What IPSM actually uses: one-step estimates of the inpainter (x0_phi, given the inline prior) vs the plain prior (x0_*)."
    from ipsm.demo_prior import psnr, _sq
    from ipsm.diffusion import decode_latents
    from ipsm.score import ScoreConfig, ipsm_loss, predict_x0

    lines = [
        f"| views | t | x0_phi (inpainter, CFG {guidance:g}): all px | in the repaint mask | x0_* (plain, CFG {guidance:g}): all px | in the repaint mask |",
        "|---|---|---|---|---|---|",
    ]
    for name, tr in sets.items():
        for t in ts:
            r = {k: [] for k in ("phi", "phi_in", "sd", "sd_in")}
            for k, (truth, warped, mask) in enumerate(tr):
                o = ipsm_loss(
                    prior, truth, warped, mask, ScoreConfig(sample_mode="mode", guidance_scale=guidance), torch.Generator().manual_seed(k), t=torch.tensor([t])
                )
                ref, m = _sq(truth[None], 64)[0], o["mask_full"][0, 0] > 0.5
                for key, eps in (("phi", o["eps_phi"]), ("sd", o["eps_sd"])):
                    with torch.no_grad():
                        im = decode_latents(prior, predict_x0(prior, o["x_t"], eps, o["t"]))[0]
                    r[key].append(psnr(im, ref))
                    if m.sum() >= 12:
                        r[key + "_in"].append(psnr(im, ref, m))
            f = lambda v: f"{statistics.mean(v):.2f}" if v else "-"
            lines.append(f"| {name} ({len(tr)}) | {t} | {f(r['phi'])} | {f(r['phi_in'])} | {f(r['sd'])} | {f(r['sd_in'])} |")
    return lines


def inpaint_table(prior, sets, guidances=(1.0, 3.0, 7.5), min_px=12):
    from ipsm.demo_prior import inpaint_quality

    lines = [
        "| views | masks used | repaint fraction | mean fill | OpenCV Telea | " + " | ".join(f"demo prior, CFG {g:g}" for g in guidances) + " |",
        "|---|---|---|---|---|" + "---|" * len(guidances),
    ]
    examples = {}
    for name, tr in sets.items():
        res, frac = {k: [] for k in ["mean", "telea", *guidances]}, []
        for i, (truth, warped, mask) in enumerate(tr):
            for g in guidances:
                q = inpaint_quality(prior, truth, warped, mask, g, seed=i)
                if q["mask"].sum() < min_px:
                    break
                res[g].append(q["prior"])
                if g == guidances[0]:
                    res["mean"].append(q["mean"])
                    res["telea"].append(q["telea"])
                    frac.append(float(q["mask"].float().mean()))
                if g == 3.0 and len(examples.get(name, [])) < 3 and q["mask"].float().mean() > 0.08:
                    examples.setdefault(name, []).append(q)
        if not frac:
            continue
        m = lambda v: f"{statistics.mean(v):.2f}"
        lines.append(
            f"| {name} | {len(frac)} of {len(tr)} | {statistics.mean(frac):.1%} | {m(res['mean'])} | {m(res['telea'])} | "
            + " | ".join(m(res[g]) for g in guidances)
            + " |"
        )
    return lines, examples


def figure(prior, captions, examples, path):
    "Free samples of the plain prior for held-out captions (top row), and 4 inpaintings (input, Telea, prior, truth)."
    import matplotlib.pyplot as plt, textwrap
    from ipsm.demo_prior import inpaint_sample
    from ipsm.diffusion import encode_prompt

    fig, axs = plt.subplots(3, 8, figsize=(9, 4.4), dpi=100)
    for a in axs.flat:
        a.axis("off")
    embeds = prior.embeds
    for k in range(8):
        prior.embeds = encode_prompt(prior, captions[k], "")
        im = inpaint_sample(prior, torch.zeros(8, 8, 3), torch.ones(8, 8, dtype=torch.bool), 3.0, seed=k, plain=True)
        axs[0, k].imshow(im.cpu())
        axs[0, k].set_title(textwrap.fill(captions[k], 22), fontsize=5.5)
    prior.embeds = embeds
    ex = [q for v in examples.values() for q in v][:4]
    for e, q in enumerate(ex):
        r, c0 = 1 + e // 2, 4 * (e % 2)
        inp = torch.where(q["mask"][..., None], torch.tensor([1.0, 0, 1]), q["images"]["mean"])
        for c, (im, t) in enumerate(
            [
                (inp, "input (magenta)"),
                (q["images"]["telea"], f"Telea {q['telea']:.1f} dB"),
                (q["images"]["prior"], f"prior {q['prior']:.1f} dB"),
                (q["ref"], "truth"),
            ]
        ):
            axs[r, c0 + c].imshow(im.clamp(0, 1))
            axs[r, c0 + c].set_title(t, fontsize=7)
    fig.suptitle(f"top: free samples for held-out captions (CFG 3); below: inpainting inside IPSM masks (CFG 3, PSNR in the mask)\n[{prior.label}]", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-scenes", type=int, default=16)
    ap.add_argument("--ckpt", default=str(ROOT / "results" / "table3_demo" / "base_s0" / "ckpts" / "ckpt_1000.pt"))
    ap.add_argument("--prior", default=None, help="prior folder (default: data/demo_prior)")
    ap.add_argument("--figure", default=str(ROOT / "benchmarks" / "figures" / "prior_samples.png"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    from ipsm.demo_prior import load_demo_prior

    t0, c0, l0 = time.time(), time.process_time(), os.getloadavg()[0]
    prior = load_demo_prior(path=a.prior)
    sets, caps = family_sets(a.n_scenes)
    real = real_ipsm_masks(Path(a.ckpt))
    if real:
        sets["demo, real IPSM masks (base 3DGS depth)"] = real
    print(f"## {prior.label}\n")
    print("\n".join(x0_table(prior, {k: v for k, v in sets.items() if "real" not in k})), "\n")
    print("\n".join(ipsm_x0_table(prior, sets)), "\n")
    lines, ex = inpaint_table(prior, sets)
    print("\n".join(lines), "\n")
    Path(a.figure).parent.mkdir(parents=True, exist_ok=True)
    figure(prior, caps, ex, a.figure)
    print(f"wall {time.time() - t0:.0f} s, CPU {time.process_time() - c0:.0f} s, load {l0:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
