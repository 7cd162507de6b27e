"""`ipsm-sweep` on this machine: a local Ray sweep of two small scenes x 2 rows at a 12-step schedule, skipping
finished runs, resuming a killed one, failures that do not stop the sweep, bad input; and (slow, opt in with
IPSM_TEST_FLAGS=slow) a two-node Ray cluster on localhost and a worker killed mid-run that Ray retries.
"""

import io, json, os, shutil, socket, sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("MPLBACKEND", "Agg")
from ipsm import sweep as S

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
slow = pytest.mark.skipif("slow" not in os.environ.get("IPSM_TEST_FLAGS", ""), reason="slow: IPSM_TEST_FLAGS=slow")


def small_llff(dst: Path, views=range(0, 18, 2), size=(80, 60)) -> Path:
    "9 views of the demo scene at 80x60 in LLFF's images_8/ layout (so the llff-3view preset is detected)."
    (dst / "images_8").mkdir(parents=True)
    files = sorted((DEMO / "images").glob("*.png"))
    for i in views:
        Image.open(files[i]).resize(size, Image.BILINEAR).save(dst / "images_8" / files[i].name)
    np.save(dst / "poses_bounds.npy", np.load(DEMO / "poses_bounds.npy")[list(views)])
    shutil.copy(DEMO / "points3d.npy", dst / "points3d.npy")
    return dst


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = S.sweep_main(args)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- bad input (no Ray needed)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    cases = [
        (lambda: S.make_sweep(["demo"], rows=["bse"]), "did you mean 'base'"),
        (lambda: S.make_sweep(["llff/fren"], data_root=tmp_path), "unknown scene 'llff/fren'"),
        (lambda: S.make_sweep([str(tmp_path / "nope")]), "pass a scene folder"),
        (lambda: S.plan(S.make_sweep(["demo"], overrides={"schedule.max_stepz": 3})), "no field 'max_stepz'"),
        (lambda: S.plan(S.make_sweep(["demo"], overrides={"save_video": "no"})), "expected true or false"),
        (lambda: S.connect("127.0.0.1:1"), "cannot reach the Ray cluster"),
    ]
    (tmp_path / "bad.toml").write_text('scenes = ["demo"]\nseed = [1]\n')
    cases.append((lambda: S.load_sweep(tmp_path / "bad.toml"), "unknown key(s) ['seed']"))
    for fn, msg in cases:
        with pytest.raises(S.SweepError) as e:
            fn()
        assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    with pytest.raises(S.SweepError, match=r"pip install 'ipsm\[sweep\]'"):
        S.connect()
    code, _, err = _cli(["--scenes", "demo", "--rows", "bse"])
    assert code == 2 and "unknown row 'bse'" in err


def test_unreachable_address_in_cli_loses_nothing(tmp_path):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    p = port.getsockname()[1]
    port.close()  # a free, closed port
    code, _, err = _cli(["--scenes", "demo", "--out", str(tmp_path / "o"), "--address", f"127.0.0.1:{p}"])
    assert code == 2 and "cannot reach the Ray cluster" in err and "ray start --head" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- a local sweep
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(local_ray, tmp_path_factory):
    "demo + a small LLFF scene + a broken one (images, no poses) x base, base+geo x seed 0 at the TINY schedule."
    tmp = tmp_path_factory.mktemp("sweep")
    tiny = small_llff(tmp / "tiny")
    (tmp / "broken" / "images").mkdir(parents=True)
    shutil.copy(next((tiny / "images_8").glob("*.png")), tmp / "broken" / "images")
    sw = S.make_sweep(
        ["demo", str(tiny), {"name": "broken", "data": str(tmp / "broken"), "preset": "llff-3view", "dataset": "other"}],
        rows=["base", "base+geo"],
        seeds=[0],
        overrides=S.TINY,
        out=str(tmp / "grid"),
    )
    return sw, S.run_sweep(sw, progress=False)


def test_local_sweep_runs_every_cell(grid, local_ray):
    sw, recs = grid
    assert [(r["scene"], r["row"], r["status"]) for r in recs] == [
        ("demo", "base", "done"),
        ("demo", "base+geo", "done"),
        ("tiny", "base", "done"),
        ("tiny", "base+geo", "done"),
        ("broken", "base", "failed"),
        ("broken", "base+geo", "failed"),
    ]
    out = Path(sw.out)
    for r in recs[:4]:
        d = Path(r["run_dir"])
        assert d == out / r["scene"] / r["row"] / "seed0" and (d / "results.json").is_file() and (d / "cfg.yml").is_file()
        assert r["metrics"]["step"] == 12 and r["curve"] and r["node"] == local_ray.get_runtime_context().get_node_id()
        assert json.loads((d / "sweep.json").read_text())["hash"] == r["hash"]
    assert "poses_bounds.npy" in recs[-1]["error"] and "\n" not in recs[-1]["error"]  # the run's own error, one line
    md = (out / "tables.md").read_text()
    assert "| broken | base | 0 | failed |" in md and "LLFF: average over 1 of the paper’s 8 scene(s) (tiny)" in md and "19.35 ± 0.17" in md
    assert {p.name for p in out.iterdir() if p.is_file()} >= {"tables.md", "runs.csv", "summary.csv", "summary.json", "bars.png", "curves.png"}
    summ = json.loads((out / "summary.json").read_text())["summary"]
    assert {(d["level"], d["name"], d["row"]) for d in summ} >= {("dataset", "llff", "base"), ("scene", "tiny", "base+geo")}


def test_rerun_skips_finished_runs(grid):
    sw, recs = grid
    mtimes = [(Path(r["run_dir"]) / "results.json").stat().st_mtime_ns for r in recs[:4]]
    again = S.run_sweep(sw, progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 4 + ["failed"] * 2
    assert [(Path(r["run_dir"]) / "results.json").stat().st_mtime_ns for r in again[:4]] == mtimes
    assert [r["metrics"] for r in again[:4]] == [r["metrics"] for r in recs[:4]]


def test_killed_run_resumes_from_last_checkpoint(grid):
    "A run killed after its step-6 checkpoint (what a dead worker leaves) continues from it on the next sweep."
    sw, recs = grid
    d = Path(recs[2]["run_dir"])  # tiny / base / seed0
    for f in ("results.json", "ckpts/ckpt_12.pt", "stats/val_step0012.json"):
        (d / f).unlink()
    m = json.loads((d / "sweep.json").read_text())
    (d / "sweep.json").write_text(json.dumps(m | {"status": "running"}))
    assert S.run_state(d, m["hash"]) == ("resume", d / "ckpts/ckpt_6.pt")
    again = S.run_sweep(sw, progress=False)
    assert [r["status"] for r in again] == ["skipped", "skipped", "done", "skipped", "failed", "failed"]
    assert again[2]["resumed_from"] == str(d / "ckpts/ckpt_6.pt") and again[2]["metrics"]["step"] == 12
    assert (d / "results.json").is_file() and "resume=" in (d / "train.log").read_text()


def test_folder_of_another_run_is_never_overwritten(grid, tmp_path):
    sw, recs = grid
    shutil.copytree(recs[0]["run_dir"], tmp_path / "o" / "demo" / "base" / "seed0")  # a finished 12-step run
    other = S.make_sweep(["demo"], rows=["base"], seeds=[0], overrides=S.TINY | {"schedule.max_steps": 10}, out=str(tmp_path / "o"))
    spec = S.plan(other)[0]
    before = (Path(spec.run_dir) / "results.json").read_bytes()  # another config's results
    rec = S.run_sweep(other, progress=False, write=False)[0]
    assert rec["status"] == "failed" and "--overwrite" in rec["error"] and (Path(spec.run_dir) / "results.json").read_bytes() == before
    other.overwrite = True
    rec = S.run_sweep(other, progress=False, write=False)[0]
    assert rec["status"] == "done" and rec["metrics"]["step"] == 10
    old = Path(spec.run_dir).with_name("seed0.old-1")
    assert (old / "results.json").read_bytes() == before  # moved aside, intact


def test_cli_with_a_sweep_file(grid, tmp_path):
    sw, recs = grid
    tiny = next(s for s in sw.scenes if s.name == "tiny").data_dir
    ov = ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in S.TINY.items())
    (tmp_path / "s.toml").write_text(f'scenes = ["demo", "{tiny}"]\nrows = ["base"]\nseeds = [0]\nout = "{sw.out}"\noverrides = {{{ov}}}\n')
    code, out, err = _cli([str(tmp_path / "s.toml")])
    assert code == 0, err
    assert "| base |" in out and "tables, CSV, JSON and plots in" in out
    code, out, _ = _cli(["--list"])
    assert code == 0 and "base+geo" in out and "demo" in out


# ---------------------------------------------------------------- slow: a cluster, a dead worker
@slow
def test_two_node_cluster_on_localhost(tmp_path):
    "Two Ray nodes (1 CPU each) on this machine; a 2-run sweep joins them by address and its runs land on both."
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's local instance, if a test above started it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        sw = S.make_sweep(["demo"], rows=["base"], seeds=[0, 1], overrides=S.TINY, out=str(tmp_path / "o"), address=c.address, num_cpus=1)
        recs = S.run_sweep(sw, progress=False)
        nodes = {n.node_id for n in c.list_all_nodes()}
        assert [r["status"] for r in recs] == ["done", "done"]
        assert {r["node"] for r in recs} == nodes and len(nodes) == 2
    finally:
        ray.shutdown()
        c.shutdown()


@slow
def test_worker_killed_mid_run_is_retried_and_resumes(tmp_path):
    "The worker dies (os._exit) after the step-6 checkpoint; Ray retries the task, which resumes from it."
    ray = pytest.importorskip("ray")
    ray.shutdown()
    flag = tmp_path / "killed"

    def die_once(step, hist):  # a closure: pickled by value into the task
        if step >= 8 and not flag.exists():
            flag.touch()
            os._exit(1)

    sw = S.make_sweep(["demo"], rows=["base"], seeds=[0], overrides=S.TINY, out=str(tmp_path / "o"), max_retries=1)
    rec = S.run_sweep(sw, progress=False, callback=die_once, num_cpus=1)[0]
    assert flag.exists() and rec["status"] == "done" and rec["resumed_from"].endswith("ckpt_6.pt")
