"""Scene kinds, the COLMAP / NeRF-synthetic loaders and the pseudo-view pool's checkpoint state, outside the notebooks.

The fixtures (tiny LLFF, COLMAP and NeRF-synthetic folders written from known cameras) live here, not in the
library. The COLMAP model is written with pycolmap from the cameras and points of the project's demo scene, so
the COLMAP loader is checked against the LLFF loader on the same scene.
"""

import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ipsm.cameras import Cameras, look_at, make_K, opencv_to_opengl
from ipsm.data import (
    SCENE_KINDS,
    SceneKind,
    bounds_from_cameras,
    detect_format,
    load_colmap,
    load_llff,
    load_scene,
    llff_split,
    scene_kind,
    sparse_split,
    undistort_colmap,
)
from ipsm.demo_scene import demo_scene_path
from ipsm.pseudo_views import PSEUDO_POSES, PseudoViewPool

pycolmap = pytest.importorskip("pycolmap")


# ---------------------------------------------------------------- fixtures (test helpers, not library code)
def write_colmap(d, cams: Cameras, points, colors, names, model="PINHOLE", params=None, model_dir="sparse/0", text=False, classic=True):
    "Write `cams` (one shared intrinsics) and `points` [P, 3] as a COLMAP model; each point observed by the views it projects into."
    d = Path(d)
    rec = pycolmap.Reconstruction()
    W, H = cams.width, cams.height
    K = cams.Ks[0].double().numpy()
    vms = cams.viewmats.double().numpy()
    X = np.asarray(points, np.float64)
    rec.add_camera_with_trivial_rig(
        pycolmap.Camera(model=model, width=W, height=H, camera_id=1, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]] if params is None else params)
    )
    cam_pts = np.einsum("cij,pj->cpi", vms[:, :3, :3], X) + vms[:, None, :3, 3]
    uvz = np.einsum("ij,cpj->cpi", K, cam_pts)
    uv = uvz[..., :2] / uvz[..., 2:]
    vis = (uvz[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
    seen = [np.flatnonzero(v) for v in vis]
    for c, s in enumerate(seen):
        pts2d = pycolmap.Point2DList([pycolmap.Point2D(uv[c, p]) for p in s])
        rec.add_image_with_trivial_frame(pycolmap.Image(name=names[c], camera_id=1, image_id=c + 1, points2D=pts2d), pycolmap.Rigid3d(vms[c, :3]))
    for p in range(len(X)):
        tr = pycolmap.Track()
        for c, s in enumerate(seen):
            if vis[c, p]:
                tr.add_element(c + 1, int(np.searchsorted(s, p)))
        rec.add_point3D(X[p], tr, np.asarray(colors[p], np.uint8))
    (d / model_dir).mkdir(parents=True, exist_ok=True)
    (rec.write_text if text else rec.write_binary)(str(d / model_dir))
    if classic:  # COLMAP 3.x layout: cameras, images, points3D only
        for f in (d / model_dir).iterdir():
            if f.stem in ("rigs", "frames"):
                f.unlink()
    return d, vis


def write_blender(d, n_train=90, n_test=24, size=8):
    "NeRF-synthetic layout: RGBA frames on a spiral over the upper hemisphere of radius 4, looking at the origin."
    d = Path(d)
    for split, n in (("train", n_train), ("test", n_test)):
        (d / split).mkdir(parents=True, exist_ok=True)
        t = np.arange(n) + (0.5 if split == "test" else 0.0)
        el, az = np.arcsin(0.1 + 0.8 * t / n), t * 2.4
        eyes = 4.0 * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
        c2w_gl = opencv_to_opengl(look_at(torch.tensor(eyes), torch.zeros(n, 3, dtype=torch.float64), up=torch.tensor([0.0, 0, 1])))
        frames = []
        for i in range(n):
            a = np.zeros((size, size, 4), np.uint8)
            a[2:-2, 2:-2] = [255, 0, 0, 255]
            Image.fromarray(a).save(d / f"{split}/r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w_gl[i].tolist()})
        (d / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return d


@pytest.fixture(scope="module")
def demo():
    return load_llff(demo_scene_path(), factor=1)


@pytest.fixture(scope="module")
def demo_colmap(tmp_path_factory, demo):
    "The demo scene as a COLMAP folder: its cameras, its points, its images (copied)."
    d = tmp_path_factory.mktemp("demo_colmap")
    rgb = np.round(demo.points_rgb.numpy() * 255).astype(np.uint8)
    _, vis = write_colmap(d, demo.cameras, demo.points.numpy(), rgb, demo.image_names)
    (d / "images").mkdir()
    for n in demo.image_names:
        (d / "images" / n).write_bytes((demo.path / "images" / n).read_bytes())
    return d, vis


# ---------------------------------------------------------------- the table
def test_table_rows_are_complete():
    for name, k in SCENE_KINDS.items():
        assert isinstance(k, SceneKind) and k.name == name
        assert k.detect is None or callable(k.detect)
        assert callable(k.load) and callable(k.split) and k.pseudo_poses in PSEUDO_POSES
        assert k.factor >= 1 and len(k.background) == 3 and isinstance(k.eval_masks, bool) and isinstance(k.bg_prior, bool) and k.files
    assert [n for n, k in SCENE_KINDS.items() if k.eval_masks or k.bg_prior] == ["dtu"]
    assert scene_kind("blender").background == (1.0, 1.0, 1.0) and scene_kind("llff").background == (0.0, 0.0, 0.0)


def test_unknown_kind_is_an_error_that_says_how_to_add_one():
    with pytest.raises(ValueError) as e:
        scene_kind("synthetic")
    msg = str(e.value)
    assert "known kinds: llff, dtu, blender, colmap" in msg and "SCENE_KINDS['mine'] = SceneKind(" in msg


def test_a_new_row_is_picked_up_by_detection_loading_and_splitting(tmp_path, demo):
    "Adding a dataset = one row: detect_format, load_scene and sparse_split follow the table."
    (tmp_path / "my.marker").write_text("")
    row = SceneKind("mine", lambda p: (p / "my.marker").is_file(), lambda p, f: demo, llff_split, "dtu", factor=1, files="my.marker")
    SCENE_KINDS["mine"] = row
    try:
        assert detect_format(tmp_path) == "mine"
        sc = load_scene(tmp_path)
        assert sc.kind == "mine" and scene_kind(sc) is row
        assert sparse_split(sc, 3).train == llff_split(demo.image_names, 3).train
        assert PseudoViewPool.from_scene(sc, [0, 5, 10], n_poses=20).poses == "dtu"
    finally:
        del SCENE_KINDS["mine"]
    with pytest.raises(ValueError, match="unknown scene kind 'mine'"):
        sparse_split(sc)


def test_importing_data_does_not_import_pycolmap():
    "pycolmap (0.6 s to import) is loaded only when a COLMAP scene is read."
    r = subprocess.run(
        [sys.executable, "-c", "import sys, ipsm.data; assert 'pycolmap' not in sys.modules"],
        capture_output=True,
        text=True,
        env=dict(os.environ, MPLBACKEND="Agg"),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]


# ---------------------------------------------------------------- COLMAP
def test_colmap_round_trip_matches_the_llff_loader(demo, demo_colmap):
    d, vis = demo_colmap
    assert detect_format(d) == "colmap"
    sc = load_scene(d, factor=1)
    assert sc.kind == "colmap" and sc.image_names == demo.image_names and sc.images.shape == demo.images.shape
    torch.testing.assert_close(sc.images, demo.images)
    torch.testing.assert_close(sc.cameras.viewmats, demo.cameras.viewmats, atol=1e-6, rtol=0)
    torch.testing.assert_close(sc.cameras.Ks, demo.cameras.Ks, atol=1e-5, rtol=0)
    torch.testing.assert_close(sc.points, demo.points, atol=1e-6, rtol=0)
    torch.testing.assert_close(sc.points_rgb, torch.round(demo.points_rgb * 255) / 255, atol=1e-6, rtol=0)
    # bounds: the 0.1 / 99.9 percentiles of the depths of the points each view observes
    vm = demo.cameras.viewmats.double().numpy()
    X = demo.points.double().numpy()
    for c in (0, 7, 19):
        z = X[vis[c]] @ vm[c, 2, :3] + vm[c, 2, 3]
        np.testing.assert_allclose(sc.bounds[c].numpy(), np.percentile(z, [0.1, 99.9]), rtol=1e-5)
    assert (sc.bounds[:, 0] > 0).all() and (sc.bounds[:, 0] < sc.bounds[:, 1]).all()
    # the points sample the demo's surfaces, so the bounds lie within the exact depth range of each view
    assert (sc.bounds[:, 0] >= demo.depths.flatten(1).min(1).values - 1e-3).all()
    assert (sc.bounds[:, 1] <= demo.depths.flatten(1).max(1).values + 1e-3).all()
    sp = sparse_split(sc, 3)
    assert sp.train == llff_split(demo.image_names, 3).train and sp.protocol == "llff-every8-3view"


def test_colmap_pool_uses_the_forward_facing_generator_with_point_bounds(demo_colmap):
    sc = load_scene(demo_colmap[0], factor=1)
    sp = sparse_split(sc)
    pool = PseudoViewPool.from_scene(sc, sp.train, n_poses=200, seed=0)
    assert pool.poses == "llff" and len(pool) == 200
    ref = PSEUDO_POSES["llff"](sc.cameras[sp.train].camtoworlds, bounds=sc.bounds[sp.train], n_poses=200, rng=0, sigma_max=0.05, warm_frac=0.2)[0]
    torch.testing.assert_close(pool.viewmats, torch.as_tensor(ref, dtype=torch.float32))
    assert PseudoViewPool.from_scene(load_scene(demo_colmap[0], 1, kind="colmap-object"), sp.train, n_poses=5).poses == "dtu"


@pytest.mark.parametrize("layout", [dict(text=True), dict(model_dir="sparse"), dict(classic=False), dict(text=True, model_dir="sparse")])
def test_colmap_layouts(tmp_path, demo, layout):
    "Binary and text models, in sparse/0/ or sparse/, in the COLMAP 3.x three-file or the 4.x rigs/frames layout."
    cams = demo.cameras[:4]
    write_colmap(tmp_path, cams, demo.points.numpy()[:300], np.zeros((300, 3)), demo.image_names[:4], **layout)
    (tmp_path / "images").mkdir()
    for n in demo.image_names[:4]:
        (tmp_path / "images" / n).write_bytes((demo.path / "images" / n).read_bytes())
    sc = load_colmap(tmp_path, factor=1)
    torch.testing.assert_close(sc.cameras.viewmats, cams.viewmats, atol=1e-6, rtol=0)
    assert len(sc.points) == 300


def test_colmap_downscaling(tmp_path, demo):
    "images_2/ is used when present (even with another extension), else images/ is downscaled at load; the intrinsics follow."
    write_colmap(tmp_path, demo.cameras[:3], demo.points.numpy()[:100], np.zeros((100, 3)), demo.image_names[:3])
    (tmp_path / "images").mkdir()
    for n in demo.image_names[:3]:
        (tmp_path / "images" / n).write_bytes((demo.path / "images" / n).read_bytes())
    at_load = load_colmap(tmp_path, factor=2)
    assert at_load.images.shape == (3, 60, 80, 3)
    torch.testing.assert_close(at_load.cameras.Ks, demo.cameras[:3].resized(80, 60).Ks)
    (tmp_path / "images_2").mkdir()
    for n in demo.image_names[:3]:
        Image.open(tmp_path / "images" / n).resize((80, 60), Image.BOX).save(tmp_path / "images_2" / (Path(n).stem + ".jpg"), quality=95)
    pre = load_colmap(tmp_path, factor=2)
    torch.testing.assert_close(pre.cameras.Ks, at_load.cameras.Ks)
    assert (pre.images - at_load.images).abs().mean() < 0.02  # the JPEG copy, not the PNG


def test_colmap_distortion_is_refused_then_undistorted(tmp_path, demo):
    src = tmp_path / "capture"
    K = demo.cameras.Ks[0]
    write_colmap(
        src,
        demo.cameras[:3],
        demo.points.numpy()[:200],
        np.zeros((200, 3)),
        demo.image_names[:3],
        model="SIMPLE_RADIAL",
        params=[float(K[0, 0]), float(K[0, 2]), float(K[1, 2]), 0.02],
    )
    (src / "images").mkdir()
    for n in demo.image_names[:3]:
        (src / "images" / n).write_bytes((demo.path / "images" / n).read_bytes())
    with pytest.raises(ValueError, match=r"SIMPLE_RADIAL with distortion parameters \[0.02\].*undistort_colmap"):
        load_colmap(src, factor=1)
    out = undistort_colmap(src, tmp_path / "undistorted")
    sc = load_scene(out, factor=1)
    assert sc.kind == "colmap" and len(sc) == 3 and len(sc.points) == 200
    torch.testing.assert_close(sc.cameras.viewmats, demo.cameras[:3].viewmats, atol=1e-6, rtol=0)
    assert (src / "images" / demo.image_names[0]).is_file()  # the original is untouched
    with pytest.raises(FileExistsError, match="never overwrites"):
        undistort_colmap(src, out)


def test_colmap_bad_input(tmp_path, demo):
    with pytest.raises(FileNotFoundError, match="has no COLMAP model"):
        load_colmap(tmp_path)
    write_colmap(tmp_path, demo.cameras[:2], demo.points.numpy()[:50], np.zeros((50, 3)), demo.image_names[:2])
    with pytest.raises(FileNotFoundError, match="nor images/"):
        load_colmap(tmp_path, factor=1)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / demo.image_names[0]).write_bytes((demo.path / "images" / demo.image_names[0]).read_bytes())
    with pytest.raises(FileNotFoundError, match=demo.image_names[1]):
        load_colmap(tmp_path, factor=1)


# ---------------------------------------------------------------- NeRF-synthetic, end to end
def test_blender_loads_splits_and_gets_an_object_centric_pool(tmp_path):
    d = write_blender(tmp_path)
    assert detect_format(d) == "blender"
    sc = load_scene(d)  # the kind's factor 2
    k = scene_kind(sc)
    assert (sc.kind, len(sc), sc.width, sc.height) == ("blender", 114, 4, 4)
    assert k.pseudo_poses == "dtu" and k.background == (1.0, 1.0, 1.0) and not k.eval_masks and not k.bg_prior
    assert sc.images[0, 0, 0].tolist() == [1.0, 1.0, 1.0]  # composited on white
    sp = sparse_split(sc, 3)
    assert sp.train_names == ["train/r_26.png", "train/r_86.png", "train/r_2.png"]
    assert sp.test_names == ["test/r_0.png", "test/r_8.png", "test/r_16.png"]
    torch.testing.assert_close(sc.bounds, torch.tensor([[2.0, 6.0]]).expand(len(sc), 2), atol=1e-4, rtol=0)  # NeRF's near/far at radius 4
    pool = PseudoViewPool.from_scene(sc, sp.train, n_poses=500, seed=0)
    c2w = torch.linalg.inv(pool.viewmats.double())
    to_origin = -c2w[:, :3, 3] / c2w[:, :3, 3].norm(dim=1, keepdim=True)
    assert pool.poses == "dtu" and ((c2w[:, :3, 2] * to_origin).sum(1) > 0.95).all()  # every pseudo camera looks at the object
    assert ((c2w[:, :3, 3] - sc.cameras.camtoworlds[sp.train][pool.src, :3, 3].double()).norm(dim=1) < 1.0).all()


def test_bounds_from_cameras_refuses_outward_cameras():
    eyes = torch.tensor([[4.0, 0, 0], [0, 4, 0], [-4, 0, 0]])
    cams = Cameras.from_camtoworlds(look_at(eyes, 2 * eyes, up=torch.tensor([0.0, 0, 1])), make_K(4.0, 4.0, 2.0, 2.0), 4, 4)
    with pytest.raises(ValueError, match="not object-centric"):
        bounds_from_cameras(cams)


# ---------------------------------------------------------------- the pool: device and checkpoints
def _rig_pool(**kw):
    eyes = torch.tensor([[-0.5, 0, 0], [0, 0, 0], [0.5, 0, 0]])
    cams = Cameras.from_camtoworlds(look_at(eyes, eyes + torch.tensor([0.0, 0, 4])), make_K(40.0, 40.0, 32.0, 24.0), 64, 48)
    return PseudoViewPool.generate(cams, "llff", bounds=torch.tensor([[2.0, 6.0]] * 3), n_poses=300, seed=1, **kw)


def test_pool_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    pool = _rig_pool()
    for _ in range(7):
        pool.pop()
    torch.save({"step": 7, "pool": pool.state_dict()}, tmp_path / "ckpt.pt")
    ahead = [pool.pop()[1] for _ in range(20)] + [pool.last_index]
    sd = torch.load(tmp_path / "ckpt.pt", weights_only=True)["pool"]  # plain types and tensors only
    again = PseudoViewPool.from_state_dict(sd, device="cpu")
    assert [again.pop()[1] for _ in range(20)] + [again.last_index] == ahead
    assert again.poses == "llff" and again.device == torch.device("cpu") and again.cfg == pool.cfg


def test_pool_with_an_external_generator_resumes_exactly():
    "The trainer pops with its own generator; restoring the pool and that generator's state reproduces the sequence."
    pool, gen = _rig_pool(), torch.Generator().manual_seed(3)
    for _ in range(5):
        pool.pop(generator=gen)
    sd, gs = pool.state_dict(), gen.get_state()
    ahead = [pool.pop(generator=gen)[1] for _ in range(10)]
    gen2 = torch.Generator()
    gen2.set_state(gs)
    again = PseudoViewPool.from_state_dict(sd)
    assert [again.pop(generator=gen2)[1] for _ in range(10)] == ahead


def test_pool_device_and_old_checkpoints():
    pool = _rig_pool(order="annealed")
    assert pool.to("cpu") is pool and pool.pop()[0].device == torch.device("cpu")
    old = {k: v for k, v in pool.state_dict().items() if k not in ("poses", "last_index", "sigmas")}
    old["kind"] = "llff"  # the state written before the pool had `poses`
    back = PseudoViewPool.from_state_dict(old)
    assert back.poses == "llff" and back.last_index is None and len(back) == len(pool)
    with pytest.raises(KeyError, match="state_dict"):
        PseudoViewPool.from_state_dict({"viewmats": torch.eye(4)[None]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pool_on_cuda_matches_cpu():
    cpu, gpu = _rig_pool(), _rig_pool(device="cuda")
    torch.testing.assert_close(gpu.viewmats.cpu(), cpu.viewmats, atol=0, rtol=0)  # generated on the CPU whatever the device
    cam, k = gpu.pop()
    assert cam.viewmats.is_cuda and k == cpu.pop()[1]
    back = PseudoViewPool.from_state_dict(gpu.state_dict(), device="cuda")
    assert back.viewmats.is_cuda and not back.state_dict()["viewmats"].is_cuda
