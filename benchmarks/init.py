"""Initial point clouds of the 3 training views: sparse triangulation vs the CPU plane-sweep MVS.

Prints a markdown table (points, CPU and wall time with the load average, depth error and completeness
where exact depths exist, reprojection error, DTU on-object fraction). Copy it into benchmarks/README.md.

    OMP_WAIT_POLICY=passive python benchmarks/init.py [--scenes planes demo fern scan24] [--methods triangulate mvs_cpu]
"""

import argparse, os, platform, time

import numpy as np
import torch

from ipsm.data import load_dtu, load_llff, sparse_split
from ipsm.demo_scene import demo_scene_path
from ipsm.init import InitConfig, run_method
from ipsm.settings import real_scene
from ipsm.triangulate import completeness, depth_errors, project, scene_views, textured_planes_scene


def load(name):
    "(views, exact depths or None, object masks or None) of a benchmark scene, or None when absent."
    if name == "planes":
        s = textured_planes_scene()
        return scene_views(s), s.depths.numpy(), None
    if name == "demo":
        s = load_llff(demo_scene_path(), factor=1)
        tr = sparse_split(s).train
        return scene_views(s, tr), s.depths[tr].numpy(), None
    path = real_scene({"fern": "llff/fern", "scan24": "dtu/scan24"}[name])
    if path is None:
        return None
    s = load_llff(path) if name == "fern" else load_dtu(path)
    tr = sparse_split(s).train
    return scene_views(s, tr), None, None if s.masks is None else s.masks[tr].numpy()


def on_object(pc, v, masks):
    "Mean over the training views of the fraction of points projecting inside the object mask."
    fr = []
    for m, vm, K in zip(masks, v.viewmats, v.Ks):
        uv, _ = project(pc.points, vm, K)
        fr.append(m[np.clip(uv[:, 1].astype(int), 0, v.height - 1), np.clip(uv[:, 0].astype(int), 0, v.width - 1)].mean())
    return float(np.mean(fr))


def row(name, method, v, gt, masks):
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    pc = run_method(method, v, InitConfig())
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    cells = [name, f"{v.width}x{v.height}", method, f"{len(pc):,}", f"{cpu:.1f}", f"{wall:.1f}", f"{load0:.1f} / {os.getloadavg()[0]:.1f}"]
    if gt is not None:
        e = depth_errors(pc.points, v, gt)
        cells += [f"{np.median(e):.4f}", f"{np.quantile(e, 0.9):.4f}", f"{completeness(pc.points, v, gt):.3f}"]
    else:
        cells += ["", "", ""]
    cells += [f"{pc.errors.mean():.2f}" if pc.errors is not None and len(pc) else "", f"{on_object(pc, v, masks):.3f}" if masks is not None and len(pc) else ""]
    return "| " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", default=["planes", "demo", "fern", "scan24"])
    ap.add_argument("--methods", nargs="+", default=["triangulate", "mvs_cpu"])
    a = ap.parse_args()
    print(
        f"host: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n"
    )
    print(
        "| scene | size | method | points | CPU (s) | wall (s) | load before / after | rel. depth error median | 90th pct | completeness (1%) | reproj. error (px) | on object |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in a.scenes:
        sc = load(name)
        if sc is None:
            print(f"| {name} | skipped: ../shared/data absent |")
            continue
        for m in a.methods:
            print(row(name, m, *sc), flush=True)


if __name__ == "__main__":
    main()
