#!/usr/bin/env python3
"""The paper's Table 3 in miniature: base / + SDS / + IPSM / + IPSM + L_geo on the held-out demo scene.

The demo scene (data/demo, 160x120, LLFF 3-view split: train 1/10/19, test 0/8/16), the `demo` preset of
`ipsm.train` (the authors' schedule x0.1: 1000 steps, pseudo views for 200 < step < 950, warm-up 50) with
the demo prior (trained by ipsm on procedural scenes; not Stable Diffusion) in place of SD, seeds 0/1/2:
`preset_config("demo", prior="demo", ...)` with the row's switches, nothing else changed.
Prints mean +- sd of PSNR / SSIM / LPIPS (vgg, inria protocol) / AVGE at the last step, writes a
PSNR-over-steps plot (the paper's Fig. 1: base vs SDS vs IPSM) and crops of the disoccluded region between
the spheres for every row (benchmarks/figures/).

    python benchmarks/table3_demo.py                      # all rows, seeds 0 1 2 (about an hour on 2 quiet cores)
    python benchmarks/table3_demo.py --rows base --seeds 0
    python benchmarks/table3_demo.py --table-only         # re-print / re-plot finished runs

Runs land in results/table3_demo/<row>_s<seed>/ (normal ipsm-train run folders). Only the method's own
knobs may be changed with --score.* style overrides (`--set loss.lambda_ipsm_r2=1.0 --tag r2x0.5`), never on the test views.
"""

import argparse, json, os, statistics, sys, time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("MPLBACKEND", "Agg")
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
PAPER = {
    "base": "19.00 / 0.625 / 0.254 / 0.125",
    "+ SDS": "18.80 / 0.647 / 0.267 / 0.128 (CFG 7.5)",
    "+ IPSM": "19.60 / 0.670 / 0.229 / 0.113",
    "+ IPSM + L_geo": "not published (Tab. 10 Base + L_geo: 19.35 / 0.652 / 0.233 / 0.117)",
}


def _value(old, v: str):
    "A `--set path=value` string converted to the type of the field it replaces."
    if isinstance(old, (tuple, list)):
        return tuple(json.loads(v))
    if isinstance(old, bool):
        return v.lower() in ("1", "true", "yes")
    return type(old)(v) if old is not None else v


def config(row: str, seed: int, out: Path, overrides: dict, eval_every: int):
    "The `demo` preset (IPSM + L_geo on the demo prior) with the row's switches, the run's seed and dense evaluations."
    from ipsm.config import get_field, preset_config, set_field

    kw = dict(ROWS[row], prior="none" if row == "base" else "demo")  # base never calls the prior: say so ("no prior")
    cfg = preset_config("demo", **kw, depth=False, seed=seed, result_dir=str(out), overwrite=True, save_video=False, save_ply=False)
    cfg.schedule.eval_steps = tuple(range(eval_every, cfg.schedule.max_steps + 1, eval_every))
    cfg.schedule.save_steps = (cfg.schedule.max_steps,)
    for k, v in overrides.items():
        set_field(cfg, k, _value(get_field(cfg, k), v))
    return cfg


TAG = ""  # --tag: a variant of the method's own knobs (--set ...) gets its own run folders and table rows


def run_dir(out: Path, row: str, seed: int, tag: str | None = None) -> Path:
    "results/table3_demo/<row>[_<tag>]_s<seed>; `tag` None = the current --tag."
    tag = TAG if tag is None else tag
    return Path(out) / f"{row.replace('+ ', '').replace(' ', '_')}{'_' + tag.replace(' ', '') if tag else ''}_s{seed}"


def _name(row: str, tag: str) -> str:
    return f"{row} [{tag}]" if tag else row


def run(row, seed, out, overrides, eval_every):
    from ipsm.train import train

    d = run_dir(out, row, seed)
    if (d / "results.json").is_file() and (d / "done.json").is_file():
        return d
    t0, c0 = time.time(), time.process_time()
    l0 = os.getloadavg()[0]
    h = train(config(row, seed, d, overrides, eval_every), progress=False)
    (d / "done.json").write_text(
        json.dumps(
            dict(
                wall_s=time.time() - t0,
                cpu_s=time.process_time() - c0,
                load_start=l0,
                load_end=os.getloadavg()[0],
                s_per_step=h.elapsed / max(1, h.steps[-1]),
                losses={k: v for k, v in h.losses.items()},
                steps=h.steps,
            )
        )
    )
    return d


def curve(d: Path):
    "[(step, psnr)] of a finished run."
    pts = [json.loads(f.read_text()) for f in (d / "stats").glob("val_step*.json")]
    return sorted((m["step"], m["psnr"]) for m in pts)


def table(rows, seeds, out) -> list:
    "Markdown rows of mean ± sd over the finished seeds; `rows` = [(row, tag)]."
    lines = ["| row | PSNR | SSIM | LPIPS | AVGE | s/step | runs | paper Tab. 3 (LLFF, PSNR/SSIM/LPIPS/AVGE) |", "|---|---|---|---|---|---|---|---|"]
    for row, tag in rows:
        ms, sps = [], []
        for s in seeds:
            d = run_dir(out, row, s, tag)
            if not (d / "done.json").is_file():
                continue
            last = max(curve(d))[0]
            ms.append(json.loads((d / f"stats/val_step{last:04d}.json").read_text()))
            sps.append(json.loads((d / "done.json").read_text())["s_per_step"])
        if not ms:
            continue
        f = lambda k, n: f"{statistics.mean(m[k] for m in ms):.{n}f} ± {statistics.stdev(m[k] for m in ms) if len(ms) > 1 else 0:.{n}f}"
        lines.append(
            f"| {_name(row, tag)} | {f('psnr', 2)} | {f('ssim', 3)} | {f('lpips', 3)} | {f('avge', 3)} | {statistics.mean(sps):.3f} | {len(ms)} | {'' if tag else PAPER[row]} |"
        )
    return lines


def _save(fig, path):
    "Write a small PNG (256-colour palette) and close the figure."
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.savefig(path)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


COLORS = ["k", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]


def plot_curves(rows, seeds, out, path):
    "Test PSNR over steps, mean of the seeds (band: min-max), at the evaluations between densifications (step % 100 = 50) and the last."
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=100)
    for (row, tag), c in zip(rows, COLORS):
        cs = [dict(curve(run_dir(out, row, s, tag))) for s in seeds if (run_dir(out, row, s, tag) / "done.json").is_file()]
        if not cs:
            continue
        last = max(cs[0])
        steps = [st for st in sorted(cs[0]) if st % 100 == 50 or st == last]
        ys = np.array([[c_[st] for st in steps] for c_ in cs if all(st in c_ for st in steps)])
        ax.plot(steps, ys.mean(0), color=c, ls="--" if tag else "-", marker=".", label=f"{_name(row, tag)} ({len(ys)} seeds)", lw=1.5)
        if len(ys) > 1:
            ax.fill_between(steps, ys.min(0), ys.max(0), color=c, alpha=0.12)
    ax.axvspan(200, 950, color="0.92", zorder=-1, label="pseudo views on (200 < step < 950)")
    ax.set_xlabel("step (evaluated between densifications, and at 1000)", fontsize=9)
    ax.set_ylabel("test PSNR (dB)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.set_title("demo scene, 3 views; demo prior (trained by ipsm on procedural scenes;\nnot Stable Diffusion)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


CROP = (0.05, 0.55, 3.6)  # world point between the orange and blue spheres, behind the yellow one (the demo's disocclusion)


def plot_crops(rows, seed, out, path, half=(30, 22)):
    "Crops around the projection of CROP in each test view: GT, then every row's final render."
    import matplotlib.pyplot as plt
    from PIL import Image
    from ipsm.data import load_llff, sparse_split
    from ipsm.cameras import project_points
    from ipsm.demo_scene import demo_scene_path

    sc = load_llff(demo_scene_path(), factor=1)
    sp = sparse_split(sc, 3)
    uv, _ = project_points(sc.cameras[sp.test], torch.tensor([CROP]))
    fig, axs = plt.subplots(len(sp.test), len(rows) + 1, figsize=(1.45 * (len(rows) + 1), 1.3 * len(sp.test) + 0.3), dpi=100, squeeze=False)
    for i, (v, name) in enumerate(zip(sp.test, sp.test_names)):
        u0, v0 = [int(round(float(x))) for x in uv[i, 0]]
        box = lambda im: im[max(0, v0 - half[1]) : v0 + half[1], max(0, u0 - half[0]) : u0 + half[0]]
        axs[i, 0].imshow(box(sc.images[v].numpy()))
        axs[i, 0].set_ylabel(Path(name).stem, fontsize=8)
        for j, (row, tag) in enumerate(rows):
            d = run_dir(out, row, seed, tag)
            last = max(curve(d))[0] if (d / "done.json").is_file() else None
            f = d / f"test/ours_{last}/renders/{Path(name).stem}.png"
            if last and f.is_file():
                axs[i, j + 1].imshow(box(np.asarray(Image.open(f))))
    for j, t in enumerate(["ground truth"] + [_name(r, g).replace(" [", "\n[") for r, g in rows]):
        axs[0, j].set_title(t, fontsize=8)
    for a in axs.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"test views, region between the spheres (seed {seed}, step 1000)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def crop_psnr(rows, seeds, out, half=(30, 22)) -> list:
    "PSNR inside the crop boxes of `plot_crops` (3 test views pooled), mean ± sd over the seeds: the disocclusion, in numbers."
    from PIL import Image
    from ipsm.data import load_llff, sparse_split
    from ipsm.cameras import project_points
    from ipsm.demo_scene import demo_scene_path

    sc = load_llff(demo_scene_path(), factor=1)
    sp = sparse_split(sc, 3)
    uv, _ = project_points(sc.cameras[sp.test], torch.tensor([CROP]))
    boxes = [(int(round(float(uv[i, 0, 1]))), int(round(float(uv[i, 0, 0])))) for i in range(len(sp.test))]
    lines = ["| row | PSNR in the crops (dB) | runs |", "|---|---|---|"]
    for row, tag in rows:
        ps = []
        for s in seeds:
            d = run_dir(out, row, s, tag)
            if not (d / "done.json").is_file():
                continue
            last, se = max(curve(d))[0], []
            for (v0, u0), v, name in zip(boxes, sp.test, sp.test_names):
                sl = (slice(max(0, v0 - half[1]), v0 + half[1]), slice(max(0, u0 - half[0]), u0 + half[0]))
                im = np.asarray(Image.open(d / f"test/ours_{last}/renders/{Path(name).stem}.png"), dtype=np.float64)[..., :3] / 255
                gt = np.round(sc.images[v].numpy().astype(np.float64) * 255) / 255
                se.append(((im[sl] - gt[sl]) ** 2).mean())
            ps.append(-10 * np.log10(np.mean(se)))
        if ps:
            lines.append(f"| {_name(row, tag)} | {np.mean(ps):.2f} ± {np.std(ps, ddof=1) if len(ps) > 1 else 0:.2f} | {len(ps)} |")
    return lines


def _gnorm(loss, params) -> float:
    "L2 norm of d loss / d params over every splat parameter."
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in gs if g is not None)))


def diagnose(out: Path, ckpt_row: str = "+ IPSM + L_geo", n: int = 24, ts=(250, 500, 750)) -> list:
    """Why IPSM helps or not, measured on pseudo views of a trained seed-0 model (no test view is used):
    gradient norms of every weighted term on the splat parameters, repaint-mask coverage, and the one-step
    x0_hat of the inpainting and plain branches against the demo scene's exact render of the pseudo pose."""
    from ipsm.config import resolve_config
    from ipsm.demo_scene import render_demo
    from ipsm.demo_prior import psnr, _sq
    from ipsm.diffusion import decode_latents, encode_images
    from ipsm.losses import render_pseudo, render_seen, term_dssim, term_geo, term_l1, term_sds
    from ipsm.run import init_state, read_checkpoint, setup_run
    from ipsm.score import ipsm_loss, predict_x0, sds_grad

    d = run_dir(out, ckpt_row, 0)
    ck = read_checkpoint(d / "ckpts" / "ckpt_1000.pt")
    cfg = resolve_config(config("+ IPSM + L_geo", 0, Path(out) / "_diagnose", {}, 1000))
    run = setup_run(cfg)
    st = init_state(run)
    L = cfg.loss
    st.splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v.float()) for k, v in ck["splats"].items()})
    params, sh, S = list(st.splats.values()), cfg.model.sh_degree, int(run.prior.size)
    rows = {k: [] for k in ("rgb", "geo", "ipsm_r1", "ipsm_r2", "sds", "repaint", "geo_mask", "render", "render_mask", "vae", "vae_mask")}
    cos = {(g, t): [] for g in ("R1", "R2", "SDS") for t in ts}  # cos(g, z_render - z_true): > 0 = a descent step moves towards the truth
    x0 = {(b, t, m): [] for b in ("phi", "sd") for t in ts for m in ("all", "mask")}
    for k in range(n * 16):
        p = render_pseudo(run, st, sh)
        if k % 16:
            continue
        v = render_seen(run, st, sh)
        rows["rgb"].append(_gnorm(L.lambda_l1 * term_l1(run, v, st) + L.lambda_dssim * term_dssim(run, v, st), params))
        rows["geo"].append(_gnorm(L.lambda_geo * term_geo(run, p, st), params))
        r = ipsm_loss(run.prior, p.rgb, p.warp.image, p.warp.mask_inpaint, cfg.score, generator=st.gen)
        rows["ipsm_r1"].append(_gnorm(L.lambda_ipsm_r1 * r["loss_ipsm_r1"], params))
        rows["ipsm_r2"].append(_gnorm(L.lambda_ipsm_r2 * r["loss_ipsm_r2"], params))
        rows["sds"].append(_gnorm(L.lambda_sds * term_sds(run, p, st), params))
        m = p.warp.mask_inpaint
        rows["repaint"].append(float(m.float().mean()))
        rows["geo_mask"].append(float(p.warp.mask_geo.float().mean()))
        gt = torch.as_tensor(render_demo(p.cam.to("cpu"))[0][0]).float()  # [H, W, 3] exact pseudo view
        ref, mS = _sq(gt[None], S), _sq(m[None, ..., None].float().expand(1, *m.shape, 3), S)[..., 0] > 0.5
        ren = _sq(p.rgb.detach()[None], S)
        rows["render"].append(psnr(ren, ref))
        rows["render_mask"].append(psnr(ren, ref, mS) if mS.any() else float("nan"))
        with torch.no_grad():
            z_gt = encode_images(run.prior, gt[None], sample_mode="mode", size=S)
            rt = decode_latents(run.prior, encode_images(run.prior, p.rgb.detach()[None], sample_mode="mode", size=S))
        rows["vae"].append(psnr(rt, ref))
        rows["vae_mask"].append(psnr(rt, ref, mS) if mS.any() else float("nan"))
        for t in ts:
            tt = torch.tensor([t])
            r = ipsm_loss(run.prior, p.rgb.detach(), p.warp.image, m, cfg.score, generator=st.gen, t=tt)
            e = (r["latents"] - z_gt).flatten()
            c_ = lambda g: float(torch.nn.functional.cosine_similarity(g.flatten(), e, dim=0))
            cos[("R1", t)].append(c_(r["grad_r1"]))
            cos[("R2", t)].append(c_(r["grad_r2"]))
            cos[("SDS", t)].append(c_(sds_grad(run.prior, p.rgb.detach(), cfg.score, generator=st.gen, t=tt)["grad"]))
            for b, eps in (("phi", r["eps_phi"]), ("sd", r["eps_sd"])):
                img = decode_latents(run.prior, predict_x0(run.prior, r["x_t"], eps, tt))
                x0[(b, t, "all")].append(psnr(img, ref))
                x0[(b, t, "mask")].append(psnr(img, ref, mS) if mS.any() else float("nan"))
    mean = lambda xs: float(np.nanmean(xs))
    lines = [
        f"pseudo views of the {ckpt_row} seed-0 model at step 1000 ({n} poses, every 16th pop of a fresh pool)",
        "",
        "| weighted term | grad norm on the splats (mean) | x RGB term |",
        "|---|---|---|",
    ]
    for k in ("rgb", "geo", "ipsm_r1", "ipsm_r2", "sds"):
        lines.append(f"| {k} | {mean(rows[k]):.3g} | {mean(rows[k]) / mean(rows['rgb']):.3f} |")
    lines += [
        "",
        f"repaint mask (IPSM, tau 0.3) covers {100 * mean(rows['repaint']):.1f}% of a pseudo view; L_geo mask (tau 0.1) {100 * mean(rows['geo_mask']):.1f}%",
        "",
        f"| PSNR vs the exact pseudo view ({S}x{S}) | all pixels | repaint mask |",
        "|---|---|---|",
        f"| the render itself | {mean(rows['render']):.2f} | {mean(rows['render_mask']):.2f} |",
        f"| the render through the prior's VAE (its ceiling) | {mean(rows['vae']):.2f} | {mean(rows['vae_mask']):.2f} |",
    ]
    for t in ts:
        for b, name in (("phi", "x0_hat inpainting branch (eps_phi)"), ("sd", "x0_hat plain branch (eps_sd)")):
            lines.append(f"| {name}, t={t}, CFG {cfg.score.guidance_scale} | {mean(x0[(b, t, 'all')]):.2f} | {mean(x0[(b, t, 'mask')]):.2f} |")
    lines += [
        "",
        "cos(g, z_render - z_true) in latent space (mean; > 0: the descent step -g moves the render's latent towards the exact view)",
        "",
        "| t | R1 | R2 | SDS |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t} | {mean(cos[('R1', t)]):+.3f} | {mean(cos[('R2', t)]):+.3f} | {mean(cos[('SDS', t)]):+.3f} |" for t in ts]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "results" / "table3_demo"))
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides path=value, e.g. score.lambda_ipsm_r2=1.0")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--tag", default="", help="name of a --set variant (run folders <row>_<tag>_s<seed>, rows 'row [tag]')")
    ap.add_argument("--figures", default=str(ROOT / "benchmarks" / "figures"))
    ap.add_argument("--diagnose", action="store_true", help="gradient norms, mask coverage, x0_hat quality on pseudo views of the seed-0 IPSM + L_geo model")
    ap.add_argument("--extra", nargs="*", default=[], help="more finished rows for the table and figures, as 'ROW|TAG' (e.g. 'base|L_geo only')")
    ap.add_argument("--diag-n", type=int, default=24, help="pseudo poses measured by --diagnose")
    a = ap.parse_args()
    torch.set_num_threads(2)
    ov = dict(s.split("=", 1) for s in a.set)
    global TAG
    TAG = a.tag
    if a.diagnose:
        print("\n".join(diagnose(a.out, n=a.diag_n)), flush=True)
        return
    if not a.table_only:
        for s in a.seeds:  # seed-major: every row of seed 0 first
            for row in a.rows:
                d = run(row, s, a.out, ov, a.eval_every)
                dj = json.loads((d / "done.json").read_text())
                print(
                    f"{row}{' [' + TAG + ']' if TAG else ''} seed {s}: {dj['wall_s']:.0f} s wall, {dj['cpu_s']:.0f} s CPU, "
                    f"load {dj['load_start']:.1f} -> {dj['load_end']:.1f}",
                    flush=True,
                )
    rows = [(r, TAG) for r in a.rows] + [tuple(e.split("|", 1)) for e in a.extra]
    print("\n".join(table(rows, a.seeds, a.out)))
    Path(a.figures).mkdir(parents=True, exist_ok=True)
    plot_curves(rows, a.seeds, a.out, Path(a.figures) / "table3_demo_psnr.png")
    plot_crops(rows, a.seeds[0], a.out, Path(a.figures) / "table3_demo_crops.png")
    print("\n".join(crop_psnr(rows, a.seeds, a.out)))
    print(f"uptime load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
