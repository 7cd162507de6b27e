"""Benchmark `ipsm.metrics.ssim`: separable Gaussian window (two 1-D convolutions) vs the 2-D window.

    python benchmarks/ssim.py                  # 504x378 (LLFF) and 400x300 (DTU), 2 threads
    python benchmarks/ssim.py --reps 50 --threads 1

One call = the training loss's D-SSIM term: `1 - ssim(render, gt)` forward + `backward()` to the render,
one [H, W, 3] image. Three implementations: `ssim()` (separable windows, the five local statistics in
one batched convolution), `ssim(separable=False)` (same batching, one 11x11 convolution), and the
previous ipsm code (`before`: five separate 11x11 convolutions, the 3DGS `utils/loss_utils.py` form).
Median (and min) over `--reps` runs after 3 warm-ups, wall time and process CPU time (all threads). All
three are checked to agree (|dSSIM| < 1e-6) before timing. The load average is printed with the table:
timings taken on a busy machine are upper bounds.
"""

import argparse, os, platform, statistics, time


def ssim_before(img, gt, ws=11, sigma=1.5):
    "The previous ipsm.metrics.ssim (3DGS form): five separate depthwise 11x11 convolutions."
    import torch.nn.functional as F
    from ipsm.metrics import gaussian_window

    C = img.shape[-1]
    x, y = img.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
    win = gaussian_window(ws, sigma).to(x)[None, None].expand(C, 1, ws, ws)
    conv = lambda t: F.conv2d(t, win, padding=ws // 2, groups=C)
    mu_x, mu_y = conv(x), conv(y)
    sxx, syy, sxy = conv(x * x) - mu_x**2, conv(y * y) - mu_y**2, conv(x * y) - mu_x * mu_y
    C1, C2 = 0.01**2, 0.03**2
    return (((2 * mu_x * mu_y + C1) * (2 * sxy + C2)) / ((mu_x**2 + mu_y**2 + C1) * (sxx + syy + C2))).mean()


def bench(f, H, W, reps):
    import torch

    g = torch.Generator().manual_seed(0)
    img, gt = torch.rand(H, W, 3, generator=g, requires_grad=True), torch.rand(H, W, 3, generator=g)
    wall, cpu = [], []
    for i in range(reps + 3):
        t0, c0 = time.perf_counter(), time.process_time()
        (1 - f(img, gt)).backward()
        img.grad = None
        if i >= 3:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    from ipsm.metrics import ssim

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    rows = []
    fs = dict(sep=lambda a_, b_: ssim(a_, b_), full=lambda a_, b_: ssim(a_, b_, separable=False), before=ssim_before)
    for H, W in ((378, 504), (300, 400)):
        x, y = torch.rand(H, W, 3), torch.rand(H, W, 3)
        assert max(abs(float(f(x, y) - ssim(x, y))) for f in fs.values()) < 1e-6
        rows.append((f"{W}x{H}", *[bench(f, H, W, a.reps) for f in fs.values()]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {a.threads} threads, "
        f"load average {load0:.2f} at start / {os.getloadavg()[0]:.2f} at end, median of {a.reps}"
    )
    print(
        "| image | `ssim()` separable (ms) | `separable=False` (ms) | before: 5 x 2-D conv (ms) | speed-up vs before, wall / CPU | CPU time sep / 2-D / before (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for name, s, f, b in rows:
        print(
            f"| {name} | {1e3 * s[0]:.1f} (min {1e3 * s[1]:.1f}) | {1e3 * f[0]:.1f} (min {1e3 * f[1]:.1f}) | {1e3 * b[0]:.1f} (min {1e3 * b[1]:.1f}) | "
            f"{b[0] / s[0]:.1f}x / {b[2] / s[2]:.1f}x | {1e3 * s[2]:.1f} / {1e3 * f[2]:.1f} / {1e3 * b[2]:.1f} |"
        )


if __name__ == "__main__":
    main()
