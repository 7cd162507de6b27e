"""Benchmark the CPU renderers: forward + backward of RGB + depth (`ipsm.render.rasterize`).

    python benchmarks/render.py                 # full table (cpp SIMD, cpp generic fallback, torch reference), 2 threads
    python benchmarks/render.py --quick         # 10k Gaussians only
    python benchmarks/render.py --profile       # where the time goes (projection / binning / kernels), CPU time
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/render.py

    python benchmarks/render.py --previous 15702b3   # add the renderer of an earlier commit, same run

Backends: `cpp` is the compiled CPU backend with the kernels the CPU supports best (AVX2 on x86-64 since 2013),
`cpp generic` the same code compiled for the baseline instruction set (what runs without AVX2; IPSM_SIMD=generic),
`torch ref` the pure-torch tiled reference (autograd backward). The last column is the cheap depth-only path
(`render_mode='D'` under `torch.no_grad()`, what the training step needs for the warp source view).
`--previous REV` also times `ipsm/render.py` + `ipsm/csrc/rasterize.cpp` as of git revision REV (copied to
benchmarks/_out/prev_REV and imported under another name), so old and new kernels meet in the same run.

Each configuration runs in a fresh subprocess so that its peak RSS (`ru_maxrss`) is its own.
Wall time and process CPU time (all threads) are both reported: on a shared machine the wall time of
OpenMP code swings by 2-10x with the load, the CPU time much less.
The scene imitates a fitted forward-facing (LLFF) scene: Gaussians spread through the view frustum
(z in [2, 12], uniform in inverse depth), anisotropic scales whose on-screen standard deviation at
504x378 is ~sqrt(0.5 * W * H / N) px (so the Gaussians tile the image ~6x over, as fitted scenes do),
log-normal spread, opacities in [0.05, 1], RGB colours.
"""

import argparse, importlib, json, math, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "_out"


def previous_renderer(rev):
    "`ipsm.render` and its C++ source as of git revision `rev`, importable as `ipsm_prev_<rev>.render`."
    root = OUT / f"prev_{rev}"
    pkg = root / f"ipsm_prev_{rev}"
    if not (pkg / "render.py").exists():
        (pkg / "csrc").mkdir(parents=True, exist_ok=True)
        for path in ("ipsm/render.py", "ipsm/csrc/rasterize.cpp"):
            text = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
            text = text.replace("find_spec('ipsm')", f"find_spec('ipsm_prev_{rev}')").replace("'ipsm_rasterize_cpu'", f"'ipsm_rasterize_prev_{rev}'")
            (pkg / path.split("/", 1)[1]).write_text(text)
        (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    return importlib.import_module(f"ipsm_prev_{rev}.render")


def make_scene(n, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    W0, f0 = 504, 0.8 * 504  # reference resolution / focal
    inv = torch.empty(n).uniform_(1 / 12, 1 / 2, generator=g)
    z = 1 / inv
    uv = torch.rand(n, 2, generator=g) * 2 - 1  # in the image (+10% margin)
    x = uv[:, 0] * 1.1 * (W0 / 2) / f0 * z
    y = uv[:, 1] * 1.1 * (378 / 2) / f0 * z
    means = torch.stack([x, y, z], 1)
    sigma_px = math.sqrt(0.5 * 504 * 378 / n) * torch.exp(0.5 * torch.randn(n, 1, generator=g))
    scales = (sigma_px * z[:, None] / f0) * torch.exp(0.4 * torch.randn(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opac = torch.rand(n, generator=g) * 0.95 + 0.05
    colors = torch.rand(n, 3, generator=g)
    return [means, quats, scales, opac, colors]


def camera(W, H):
    import torch

    K = torch.tensor([[[0.8 * W, 0, W / 2], [0, 0.8 * W, H / 2], [0, 0, 1]]])
    return torch.eye(4)[None], K


def run_one(backend, n, W, H, reps, threads):
    if backend == "generic":
        os.environ["IPSM_SIMD"] = "generic"  # read when the extension loads
    import torch

    torch.set_num_threads(threads)
    from ipsm.render import rasterize, load_cpp_backend

    if backend.startswith("prev:"):  # an earlier commit's renderer (no depth-only mode)
        prev = previous_renderer(backend[5:])
        rasterize, load_cpp_backend = prev.rasterize, prev.load_cpp_backend
    scene = [t.requires_grad_() for t in make_scene(n)]
    viewmats, Ks = camera(W, H)
    wt = torch.rand(1, H, W, 3)
    times, cpu, dtimes = [], [], []
    be = "torch" if backend == "torch" else "cpp"
    warm = 1 if be == "cpp" else 0  # cpp: first run loads the extension
    for i in range(reps + warm):
        for t in scene:
            t.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        rgb, depth, alpha, info = rasterize(*scene, viewmats, Ks, W, H, backend=be)
        loss = (rgb * wt).sum() + depth.mean()
        loss.backward()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if be == "cpp" and not backend.startswith("prev:"):  # the depth-only, no-grad render of the same scene
            t0 = time.perf_counter()
            with torch.no_grad():
                rasterize(*scene, viewmats, Ks, W, H, backend=be, render_mode="D")
            dtimes.append(time.perf_counter() - t0)
    vis = int((info["radii"] > 0).all(-1).sum())
    isa = getattr(load_cpp_backend(), "simd_isa", lambda: "scalar")() if be == "cpp" else ""
    return dict(
        backend=backend,
        isa=isa,
        n=n,
        W=W,
        H=H,
        median_s=statistics.median(times[warm:]),
        cpu_s=statistics.median(cpu[warm:]),
        runs=reps,
        maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        visible=vis,
        coverage=float(alpha.mean()),
        depth_only_s=statistics.median(dtimes[warm:]) if dtimes else float("nan"),
    )


def profile(n, W, H, threads, clock=time.process_time):
    "CPU time (all threads) of each stage of the compiled backend, median of 5 after a warm-up."
    import torch

    torch.set_num_threads(threads)
    from ipsm import render as R

    scene = [t.requires_grad_() for t in make_scene(n)]
    viewmats, Ks = camera(W, H)
    means, quats, scales, opac, colors = scene
    cpp = R.load_cpp_backend()

    def timeit(f, k=5):
        ts = []
        for _ in range(k + 1):
            t0 = clock()
            out = f()
            ts.append(clock() - t0)
        return statistics.median(ts[1:]), out

    with torch.no_grad():
        t_proj, (radii, m2, d, cn) = timeit(lambda: cpp.project_fwd(means, quats, scales, opac, viewmats, Ks, W, H, 0.3, 0.01, 1e10))
    feats = torch.cat([colors[None], d[..., None]], -1).detach()
    args = [t.detach().contiguous() for t in (m2, cn, feats, opac[None])]
    t_bin, (off, ids) = timeit(lambda: cpp.bin_gaussians(args[0], radii, d.contiguous(), W, H, 16))
    t_fwd, (out, alpha, last, tf) = timeit(lambda: cpp.rasterize_fwd(*args, radii, W, H, 16, off, ids, True))
    v = torch.rand_like(out)
    va = torch.rand_like(alpha)
    t_bwd, (g2, gc, _, _) = timeit(lambda: cpp.rasterize_bwd(*args, radii, W, H, 16, off, ids, tf, last, v, va))
    t_pbwd, _ = timeit(
        lambda: cpp.project_bwd(means.detach(), quats.detach(), scales.detach(), viewmats, Ks, W, H, 0.3, g2, v[..., 0, 0, :1].expand_as(d).contiguous(), gc)
    )

    def full():
        for t in scene:
            t.grad = None
        rgb, depth, alpha, info = R.rasterize(*scene, viewmats, Ks, W, H)
        (rgb.sum() + depth.sum()).backward()

    def depth_only():
        with torch.no_grad():
            R.rasterize(*scene, viewmats, Ks, W, H, render_mode="D")

    t_all, _ = timeit(full)
    t_d, _ = timeit(depth_only)
    nvis = max(1, int((radii > 0).all(-1).sum()))
    print(
        f"N={n} {W}x{H}, {threads} threads, {cpp.simd_isa()} kernels, CPU ms: projection fwd {t_proj * 1e3:.1f}, binning {t_bin * 1e3:.1f} "
        f"({len(ids)} intersections, {len(ids) / nvis:.1f}/Gaussian), kernel fwd {t_fwd * 1e3:.1f}, kernel bwd {t_bwd * 1e3:.1f}, "
        f"projection bwd {t_pbwd * 1e3:.1f}; total fwd+bwd {t_all * 1e3:.1f}; depth-only no-grad render {t_d * 1e3:.1f} "
        f"(load {os.getloadavg()[0]:.1f})"
    )


def machine():
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return dict(
        nproc=os.cpu_count(),
        cpu=cpu,
        torch=torch.__version__,
        load=os.getloadavg(),
        malloc="tcmalloc (LD_PRELOAD)" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc",
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads")
    ap.add_argument("--reps", type=int, default=7, help="timed runs of the compiled backend (median reported)")
    ap.add_argument("--torch-reps", type=int, default=5, help="timed runs of the torch reference (1 at 200k: it takes a minute)")
    ap.add_argument("--sizes", default="256x192,504x378", help="comma-separated WxH")
    ap.add_argument("--ns", default="10000,50000,200000", help="comma-separated Gaussian counts")
    ap.add_argument("--quick", action="store_true", help="10k Gaussians only")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    ap.add_argument("--no-generic", action="store_true", help="skip the generic (non-AVX2) build of the compiled kernels")
    ap.add_argument("--previous", help="also time the renderer of this git revision (e.g. 15702b3)")
    ap.add_argument("--profile", action="store_true", help="print a per-stage breakdown of the compiled backend")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        b, n, W, H, reps = a.one.rsplit(":", 4)
        print(json.dumps(run_one(b, int(n), int(W), int(H), int(reps), a.threads)))
        return
    sizes = [tuple(map(int, s.split("x"))) for s in a.sizes.split(",")]
    ns = [10000] if a.quick else [int(x) for x in a.ns.split(",")]
    if a.profile:
        import torch

        torch.set_num_threads(a.threads)
        for n in ns:
            for W, H in sizes:
                profile(n, W, H, a.threads)
        return
    m = machine()
    print(f"# {m['nproc']} CPUs ({m['cpu']}), torch {m['torch']}, {a.threads} threads, malloc {m['malloc']}, load average at start {m['load'][0]:.2f}")
    prev = f"previous cpp {a.previous} fwd+bwd (s) | " if a.previous else ""
    pcpu = "previous / " if a.previous else ""
    print(
        f"| Gaussians | image | cpp fwd+bwd (s) | cpp generic fwd+bwd (s) | {prev}torch ref fwd+bwd (s) | speed-up | CPU time cpp / {pcpu}torch ref (s) "
        "| CPU-time speed-up | peak RSS cpp / torch (MB) | visible | depth-only no-grad cpp (s) | runs cpp / torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if a.previous else ""))
    nan = float("nan")
    for n in ns:
        for W, H in sizes:
            res = {}
            for b in ["cpp"] + ([] if a.no_generic else ["generic"]) + ([f"prev:{a.previous}"] if a.previous else []) + ([] if a.no_torch else ["torch"]):
                reps = a.reps if b != "torch" else (a.torch_reps if n < 200000 else 1)
                out = subprocess.run(
                    [sys.executable, __file__, "--one", f"{b}:{n}:{W}:{H}:{reps}", "--threads", str(a.threads)], capture_output=True, text=True
                )
                if out.returncode:
                    print(out.stderr[-2000:])
                    raise SystemExit(1)
                res[b] = json.loads(out.stdout.strip().splitlines()[-1])
            c, g, t, p = res["cpp"], res.get("generic"), res.get("torch"), res.get(f"prev:{a.previous}")
            pv, pc = (f"{p['median_s']:.3f} | ", f"{p['cpu_s']:.3f} / ") if p else ("", "")
            print(
                f"| {n:,} | {W}x{H} | {c['median_s']:.3f} ({c['isa']}) | {g['median_s'] if g else nan:.3f} | {pv}{t['median_s'] if t else nan:.2f} | "
                f"{(t['median_s'] / c['median_s']) if t else nan:.0f}x | {c['cpu_s']:.3f} / {pc}{t['cpu_s'] if t else nan:.2f} | "
                f"{(t['cpu_s'] / c['cpu_s']) if t else nan:.0f}x | {c['maxrss_mb']:.0f} / {t['maxrss_mb'] if t else nan:.0f} | "
                f"{c['visible']:,} | {c['depth_only_s']:.3f} | {c['runs']} / {t['runs'] if t else 0} |",
                flush=True,
            )
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
