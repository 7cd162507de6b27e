#!/usr/bin/env python3
"""Real-scene CPU runs of the rows that need no diffusion or depth weights (issue: training end to end).

Runs `ipsm-train` on ../shared/data fern (LLFF, 504x378) and DTU scan24 (400x300, masked protocol) for
`base` and `base + L_geo`, 3-view split, and prints a markdown table of PSNR / SSIM / LPIPS (vgg, inria
protocol) / AVGE, wall time and s/step, next to the paper's averages (context only: the paper averages 8
LLFF scenes / 15 DTU scans over 10k steps on a GPU with SfM+MVS initialisation).

    python benchmarks/real_scenes.py --steps-scaler 0.2 --seeds 0 1 2 --rows "fern base" "fern base + L_geo"
    python benchmarks/real_scenes.py --steps-scaler 0.1 --seeds 0 1 2 --rows "scan24 base" "scan24 base + L_geo"
    python benchmarks/real_scenes.py --steps-scaler 1 --seeds 0 1 2        # the full protocol (hours on 2 cores)
    python benchmarks/real_scenes.py --steps-scaler 0.2 --seeds 0 1 2 --table-only   # re-print finished runs

Runs land in results/real_scenes/<row>_x<scaler>_s<seed>/ (a normal ipsm-train run folder).

With `--steps-scaler s` every step count is multiplied by s (gsplat's adjust_steps) except the
densification interval, which stays at the authors' 100 steps (densifying 1/s times as often would
grow far more Gaussians than the reference).
"""
import argparse, json, statistics, subprocess, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # name: (preset, extra flags)
    "fern base":          ("llff-3view", ["--no-ipsm", "--no-depth", "--no-geo", "--prior", "none", "--depth-model", "none"]),
    "fern base + L_geo":  ("llff-3view", ["--no-ipsm", "--no-depth", "--prior", "none", "--depth-model", "none"]),
    "scan24 base":        ("dtu-3view",  ["--no-ipsm", "--no-depth", "--no-geo", "--prior", "none", "--depth-model", "none"]),
    "scan24 base + L_geo": ("dtu-3view", ["--no-ipsm", "--no-depth", "--prior", "none", "--depth-model", "none"]),
}
PAPER = {"fern base": "LLFF avg Base 19.00 / 0.625 / 0.254 / 0.125", "fern base + L_geo": "LLFF avg Base+L_geo 19.35 / 0.652 / 0.233 / 0.117",
         "scan24 base": "DTU avg Base 19.12 / 0.836 / 0.134 / 0.087", "scan24 base + L_geo": "DTU avg Base+L_geo 19.18 / 0.835 / 0.135 / 0.087"}

def run_dir(out, row, scaler, seed) -> Path:
    "One folder per (row, schedule, seed), e.g. fern_base_L_geo_x0.2_s1."
    return Path(out) / f"{row.replace(' + ', '_').replace(' ', '_')}_x{scaler:g}_s{seed}"

def row_line(row, seed, d: Path) -> str:
    "A table line from a finished run folder (last evaluation; training time without evaluations)."
    last = lambda pat: max((d / "stats").glob(pat), key=lambda f: int(f.stem.split("step")[-1]))  # by step, not by name
    m, tr = json.loads(last("val_step*.json").read_text()), json.loads(last("train_step*.json").read_text())
    return (f"| {row} | {seed} | {m['step']} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['lpips']:.3f} | {m['avge']:.3f} | "
            f"{m['num_GS']:,} | {tr['elapsed'] / 60:.1f} | {tr['s_per_step']:.3f} | {PAPER[row]} |"), m

HEAD = ["| run | seed | steps | PSNR | SSIM | LPIPS | AVGE | #GS | train (min) | s/step | paper (PSNR/SSIM/LPIPS/AVGE) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-scaler", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS))
    ap.add_argument("--out", default=str(ROOT / "results" / "real_scenes"))
    ap.add_argument("--table-only", action="store_true", help="print the table of finished runs, train nothing")
    a = ap.parse_args()
    lines = list(HEAD)
    for row in a.rows:
        preset, flags = ROWS[row]
        ms = []
        for seed in a.seeds:
            out = run_dir(a.out, row, a.steps_scaler, seed)
            if not a.table_only:
                cmd = ["ipsm-train", preset, *flags, "--seed", str(seed), "--steps-scaler", str(a.steps_scaler),
                       "--strategy.refine-every", str(round(100 / a.steps_scaler)), "--result-dir", str(out), "--no-save-video"]
                print(" ".join(cmd), flush=True)
                t0 = time.time()
                r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                print(f"# wall {(time.time() - t0) / 60:.1f} min (with init and evaluations)", flush=True)
                if r.returncode != 0:
                    print(r.stdout[-2000:], r.stderr[-3000:], flush=True)
                    lines.append(f"| {row} | {seed} | failed (exit {r.returncode}) | | | | | | | | {PAPER[row]} |"); continue
            if not (out / "stats").is_dir(): lines.append(f"| {row} | {seed} | not run ({out} missing) | | | | | | | | |"); continue
            line, m = row_line(row, seed, out); lines.append(line); ms.append(m)
            if not a.table_only: print(line, flush=True)
        if len(ms) > 1:
            mean = {k: statistics.mean(m[k] for m in ms) for k in ("psnr", "ssim", "lpips", "avge")}
            sd = {k: statistics.stdev(m[k] for m in ms) for k in mean}
            lines.append(f"| **{row}, mean ± sd** | {len(ms)} seeds | {ms[0]['step']} | **{mean['psnr']:.2f}** ± {sd['psnr']:.2f} | "
                         f"{mean['ssim']:.3f} ± {sd['ssim']:.3f} | {mean['lpips']:.3f} ± {sd['lpips']:.3f} | {mean['avge']:.3f} ± {sd['avge']:.3f} | | | | |")
    print("\n".join(lines))

if __name__ == "__main__": main()
