"""Run folders: the default results/<scene>/<preset>[-<timestamp>], refusal of a folder holding a run, --overwrite, --resume alone, and the Ctrl-C hint."""

import yaml

from ipsm import cli
from ipsm.config import preset_config
from ipsm.train import train

FAST = ["--no-ipsm", "--no-depth", "--prior", "none", "--depth-model", "none", "--no-save-video"]


def _main(args, capsys):
    try:
        code = cli.train_main(args)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_refuse_overwrite_resume(tmp_path, capsys):
    d = str(tmp_path / "run")
    assert _main(["smoke", "--result-dir", d, *FAST], capsys)[0] == 0
    (tmp_path / "run/stats/old.json").write_text("{}")
    code, out = _main(["smoke", "--result-dir", d, *FAST], capsys)
    assert code == 2 and "already holds a run" in out and "--overwrite" in out and "--resume" in out
    assert (tmp_path / "run/ckpts/ckpt_12.pt").is_file()  # nothing lost
    code, out = _main(["smoke", "--result-dir", d, *FAST, "--overwrite", "--max-steps", "6"], capsys)
    assert code == 0 and not (tmp_path / "run/stats/old.json").exists() and not (tmp_path / "run/ckpts/ckpt_12.pt").exists()
    # --resume alone: the run's own config (FAST flags included), continued in its own folder; a flag beside it is recorded
    code, out = _main(["--resume", str(tmp_path / "run/ckpts/ckpt_6.pt"), "--max-steps", "8", "--eval-steps", "8"], capsys)
    assert code == 0, out
    y = yaml.safe_load((tmp_path / "run/cfg.yml").read_text())
    assert y["resumed"]["step"] == 6 and y["resumed"]["changed"] == {"schedule.max_steps": [6, 8], "schedule.eval_steps": [[12], [8]]}
    assert y["config"]["ipsm"] is False and y["config"]["preset"] == "smoke" and (tmp_path / "run/ckpts/ckpt_8.pt").is_file()


def test_default_folder_gets_a_timestamp_when_taken(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IPSM_RESULTS_ROOT", str(tmp_path))
    assert _main(["smoke", *FAST, "--max-steps", "2"], capsys)[0] == 0
    assert (tmp_path / "demo/smoke/cfg.yml").is_file()
    code, out = _main(["smoke", *FAST, "--max-steps", "2"], capsys)
    assert code == 0
    taken = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert len(taken) == 2 and taken[0] == "smoke" and taken[1].startswith("smoke-"), taken
    assert f"results in {tmp_path / 'demo' / taken[1]}" in out


def test_ctrl_c_prints_the_command(tmp_path, capsys):
    def stop(step, h):
        raise KeyboardInterrupt

    h = train(preset_config("smoke", result_dir=str(tmp_path / "r"), ipsm=False, depth=False, save_video=False), callback=stop, progress=False)
    out = capsys.readouterr().out
    assert h.interrupted and f"Continue with: ipsm-train --resume {tmp_path / 'r/ckpts/ckpt_2.pt'}" in out
