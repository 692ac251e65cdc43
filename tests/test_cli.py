import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_demo_scan_train_encode(tmp_path, capsys):
    data, run = tmp_path / "d", tmp_path / "r"
    assert main(["demo", "--out", str(data), "--size", "32", "--scale", "0.03"]) == 0
    assert main(["scan", str(data), "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "readable images" in out and "Seleucia on the Tigris" in out
    assert "asked about: Hellenistic Babylonian; compared with: Achaemenid, " in out
    assert main(["train", "--data", str(data), "--run-dir", str(run), "--epochs", "2", "--image-size", "32",
                 "--device", "cpu", "--balanced"]) == 0
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3"]) == 0
    assert main(["encode", "--run-dir", str(run)]) == 0
    assert main(["train", "--data", str(data), "--run-dir", str(tmp_path / "r2"), "--settings",
                 str(run / "config.json"), "--epochs", "1", "--encode"]) == 0
    assert (tmp_path / "r2" / "encodings.parquet").is_file()
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["settings"]["balanced"] is True
    df = pd.read_parquet(run / "encodings.parquet")
    assert len(df) == sum(1 for p in data.rglob("*") if p.suffix in (".jpg", ".TIF"))
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2, 3]


def test_a_folder_one_level_up_is_said_to_look_wrong(tmp_path, capsys):
    """Issue: a user's `train` on a folder whose "cultures" were a project's own folders trained without a word.
    What its labels leave in doubt is said by `scan`, as training starts, and on the run's Train page."""
    from PIL import Image

    from core.runs import Run

    parent = tmp_path / "project"
    assert main(["demo", "--out", str(parent / "mine"), "--size", "32", "--scale", "0.03"]) == 0
    (parent / "shots").mkdir()
    Image.new("RGB", (40, 30), (200, 200, 200)).save(parent / "shots" / "screen.png")
    capsys.readouterr()
    assert main(["scan", str(parent), "--image-size", "32"]) == 0
    assert "note: shots (1) has fewer than 10 photographs" in capsys.readouterr().out
    assert main(["train", "--data", str(parent), "--run-dir", str(tmp_path / "r"), "--epochs", "1",
                 "--image-size", "32", "--device", "cpu"]) == 0
    assert "note: shots (1) has fewer than 10 photographs" in capsys.readouterr().err
    assert Run(tmp_path / "r").status()["note"].startswith("shots (1) has fewer than 10 photographs")


def test_scan_lists_unreadable_files(messy):
    r = cli("scan", messy, "--image-size", "32")
    assert r.returncode == 0
    assert "Greek/truncated.jpg: truncated" in r.stdout and "Greek/empty.jpg: empty file" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["scan", "/no/such/folder"], "not found"),
    (["train", "--data", "/no/such/folder", "--run-dir", "RUN"], "not found"),
    (["train", "--data", "DATA", "--run-dir", "RUN", "--lr", "-0.1"], "(--lr) must be"),
    (["train", "--data", "DATA", "--run-dir", "RUN", "--epochs", "0"], "(--epochs) must be"),
    (["train", "--data", "DATA", "--run-dir", "RUN", "--preset", "huge"], "invalid choice"),
    (["train", "--data", "DATA", "--run-dir", "RUN", "--epochs", "ten"], "invalid int"),
    (["train", "--run-dir", "RUN", "--resume"], "no run found"),
    (["encode", "--run-dir", "/no/such/run"], "no run found"),
    (["bogus"], "invalid choice"),
])
def test_user_mistakes_get_one_line_and_status_2(tmp_path, small_demo, args, message):
    args = [a.replace("DATA", str(small_demo)).replace("RUN", str(tmp_path / "run")) for a in args]
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip() and "%|" not in l and "img/s" not in l]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_no_readable_image_is_status_2(tmp_path):
    (tmp_path / "Greek").mkdir()
    (tmp_path / "Greek" / "a.jpg").write_text("no")
    r = cli("scan", tmp_path)
    assert r.returncode == 2 and "no readable image" in r.stderr and "a.jpg" in r.stdout
    r = cli("train", "--data", tmp_path, "--run-dir", tmp_path / "run")
    assert r.returncode == 2 and "no readable image" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()  # the refused run leaves no folder behind
    (tmp_path / "kept").mkdir()  # a folder the user made is left, empty as it was
    assert cli("train", "--data", tmp_path, "--run-dir", tmp_path / "kept").returncode == 2
    assert (tmp_path / "kept").is_dir()


def test_a_cultures_own_folder_chosen_is_told_to_choose_the_one_above(tmp_path, small_demo):
    for p in sorted((small_demo / "Achaemenid").glob("*"))[:3]:
        shutil.copy(p, tmp_path)
    r = cli("scan", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "are not inside culture folders: choose the folder above it" in r.stderr.splitlines()[-1]


def test_a_folder_with_a_single_culture_trains_and_influence_says_why_not(tmp_path, capsys):
    from tests.corpus import figure

    (tmp_path / "d" / "Greek").mkdir(parents=True)
    for i in range(12):
        figure(40 + i, 60, seed=i).save(tmp_path / "d" / "Greek" / f"{i}.jpg")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d"), "--run-dir", str(run), "--image-size", "16",
                 "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--encode"]) == 0
    assert len(pd.read_parquet(run / "encodings.parquet")) == 12
    capsys.readouterr()
    assert main(["influence", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "only one culture: there are no source cultures to compare" in err
    assert "note: No culture is named Hellenistic Babylonian or has find-site folders" in err  # what is in doubt


@pytest.mark.parametrize("command", [[], ["demo"], ["scan"], ["train"], ["encode"], ["relink"], ["clear-status"],
                                     ["influence"]])
def test_every_help_page_prints(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0 and "usage: python -m core" in capsys.readouterr().out
