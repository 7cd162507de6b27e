"""The console scripts on the `smoke` preset (12 steps on the demo scene, every phase and term once), and their error paths.

`ipsm-train`, `ipsm-eval`, `ipsm-render`, `ipsm-export` are called in-process through their
`*_main(args)` functions (exactly what the console scripts call) and once as real executables.
"""

import json, os, shutil, subprocess
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
from ipsm import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def _main(fn, args, capsys):
    "Run a `*_main`, return (exit code, stdout, stderr)."
    try:
        code = fn(args)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "One `ipsm-train smoke` run (every term on, tiny random prior and depth model) shared by the eval/render/export tests."
    out = tmp_path_factory.mktemp("run") / "smoke"
    code = cli.train_main(["smoke", "--data-dir", str(DEMO), "--result-dir", str(out)])
    assert code == 0
    return out


def test_train_writes_run_folder(trained):
    o = trained
    for f in [
        "cfg.yml",
        "ckpts/ckpt_6.pt",
        "ckpts/ckpt_12.pt",
        "stats/train_step0012.json",
        "stats/val_step0012.json",
        "results.json",
        "per_view.json",
        "ply/point_cloud_12.ply",
        "videos/traj_12.mp4",
    ]:
        assert (o / f).is_file(), f
    res = json.loads((o / "results.json").read_text())
    assert set(res["ours_12"]) == {"PSNR", "SSIM", "LPIPS"}
    assert "vgg" in res["protocol"]["lpips"]
    assert list((o / "test/ours_12/renders").glob("*.png")) and list((o / "test/ours_12/gt").glob("*.png"))
    cfg = (o / "cfg.yml").read_text()
    assert "TINY RANDOM PRIOR" in cfg and "versions" in cfg and "train:" in cfg
    assert not list(o.rglob(".*.tmp*")), "temporary files left behind"


def test_eval_render_export(trained, capsys):
    ck = str(trained / "ckpts/ckpt_12.pt")
    code, out, err = _main(cli.eval_main, ["--ckpt", ck], capsys)
    assert code == 0, err
    js = json.loads((trained / "eval_step12.json").read_text())
    assert set(js) == {"experiment_name", "method_name", "checkpoint", "results"} and "psnr" in js["results"]
    assert "PSNR:" in out and "Number of GS:" in out
    code, out, err = _main(cli.render_main, ["--ckpt", ck, "--traj", "interp", "--n-frames", "4"], capsys)
    assert code == 0, err
    assert (trained / "videos/traj_12_interp.mp4").stat().st_size > 0
    code, out, err = _main(cli.export_main, ["--ckpt", ck, "--output", str(trained / "x.ply")], capsys)
    assert code == 0, err
    from plyfile import PlyData

    v = PlyData.read(str(trained / "x.ply"))["vertex"]
    assert {"x", "f_dc_0", "opacity", "scale_0", "rot_0"} <= set(v.data.dtype.names)


def test_help_shows_field_comments(capsys):
    code, out, _ = _main(cli.train_main, ["smoke", "--help"], capsys)
    assert code == 0
    assert "number of training steps" in out and "--no-ipsm" in out and "--data-dir" in out


def test_bad_preset(capsys):
    code, out, err = _main(cli.train_main, ["llff"], capsys)
    assert code == 2 and "llff-3view" in out + err


def test_bad_override(capsys):
    code, out, err = _main(cli.train_main, ["smoke", "--max-stepz", "3"], capsys)
    assert code == 2 and "--max-steps" in out + err


def test_invalid_value(capsys, tmp_path):
    code, out, err = _main(cli.train_main, ["smoke", "--loss.lambda-l1", "-1", "--result-dir", str(tmp_path)], capsys)
    assert code == 2 and "lambda_l1 must be" in err


def test_prior_none_with_ipsm(capsys, tmp_path):
    code, out, err = _main(cli.train_main, ["smoke", "--ipsm", "--prior", "none", "--result-dir", str(tmp_path)], capsys)
    assert code == 2 and "--no-ipsm" in err


@pytest.mark.parametrize("layout", ["missing", "empty", "images_only"])
def test_wrong_data_dir(capsys, tmp_path, layout):
    d = tmp_path / "scene"
    if layout != "missing":
        d.mkdir()
    if layout == "images_only":
        (d / "images").mkdir()
        shutil.copy(next((DEMO).rglob("*.png")), d / "images" / "a.png")
    code, out, err = _main(cli.train_main, ["smoke", "--data-dir", str(d), "--result-dir", str(tmp_path / "r")], capsys)
    assert code == 2, err
    assert str(d.name) in err and "--data-dir" in err or "poses_bounds" in err, err


def test_eval_missing_checkpoint(capsys, tmp_path):
    code, out, err = _main(cli.eval_main, ["--ckpt", str(tmp_path / "nope.pt")], capsys)
    assert code == 2 and "does not exist" in err


def test_console_script_installed():
    exe = shutil.which("ipsm-train")
    if exe is None:
        pytest.skip("ipsm-train not on PATH (pip install -e . creates it)")
    r = subprocess.run([exe, "base", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "max-steps" in r.stdout
