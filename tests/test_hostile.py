"""What a hostile or messy world brings (issue 12): user folders as run folders, links out of the data
roots, formulas and terminal sequences in names, undecodable names, damaged runs, bad CLI input."""
import contextlib
import io
import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import jobs, locks
from core.cli import main
from core.dataset import scan
from core.embed import spaces
from core.errors import UserError
from core.export import csv
from core.paths import within_roots
from core.runs import Run, damaged_runs, list_runs
from core.fit import fit_run


def figure(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


@pytest.fixture(scope="module")
def run_dir(small_demo, tmp_path_factory):
    from core.settings import Settings

    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu", snapshot_size=20)
    return fit_run(tmp_path_factory.mktemp("runs") / "good", s, str(small_demo)).dir


def copy_of(run_dir, tmp_path, name="copy") -> Run:
    shutil.copytree(run_dir, tmp_path / name)
    return Run(tmp_path / name)


def error_of(args, capsys) -> str:
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n") and "error: " in err.splitlines()[-1], err
    return err.splitlines()[-1]  # after any progress bar: one line


# 1. a user's folder is never used as a run folder -----------------------------------------------
def test_a_folder_that_is_not_new_empty_or_a_run_is_refused_untouched(small_demo, tmp_path, tiny_settings, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    files = {"STOP": "", ".thesis-draft.tmp": "chapter 3", "metrics.csv": "my,own\n1,2\n"}
    for name, text in files.items():
        (mine / name).write_text(text)
    assert "not empty and not a run" in error_of(["train", "--data", small_demo, "--run-dir", mine], capsys)
    assert "run folder is empty" in error_of(["train", "--data", small_demo, "--run-dir", ""], capsys)
    with pytest.raises(UserError, match="not empty and not a run"):
        fit_run(mine, tiny_settings, str(small_demo))
    with pytest.raises(UserError, match="not empty and not a run"):
        jobs.launch(mine, tiny_settings, str(small_demo))
    assert {f.name: f.read_text() for f in mine.iterdir()} == files  # nothing replaced, nothing deleted
    (tmp_path / "empty").mkdir()
    Run(tmp_path / "empty").check_new()  # new and empty folders are fine
    Run(tmp_path / "absent").check_new()


# 2. nothing is read outside the data roots ---------------------------------------------------------
def test_links_out_of_the_data_roots_are_listed_not_followed(tmp_path, monkeypatch):
    root, outside = tmp_path / "roots" / "data", tmp_path / "elsewhere"
    figure(root / "Greek" / "a.png")
    figure(outside / "secret.png", 1)
    figure(tmp_path / "roots" / "shared" / "b.png", 2)
    monkeypatch.setenv("FIGURINES_DATA_ROOTS", str(tmp_path / "roots"))
    os.symlink(outside, root / "Greek" / "system")
    os.symlink(outside / "secret.png", root / "Greek" / "secret.png")
    os.symlink(tmp_path / "roots" / "shared", root / "Greek" / "shared")  # inside the roots: followed
    m = scan(root).set_index("path")
    assert list(m.index[m["readable"]]) == ["Greek/a.png", "Greek/shared/b.png"]
    assert "outside this folder and the data roots" in m.at["Greek/system", "reason"]
    assert "outside this folder and the data roots" in m.at["Greek/secret.png", "reason"]


def test_a_run_whose_data_lies_outside_the_roots_is_not_opened(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FIGURINES_DATA_ROOTS", str(tmp_path / "roots"))
    run = copy_of(run_dir, tmp_path)
    with pytest.raises(UserError, match="outside the folders"):
        jobs.launch(run.dir, resume=True)
    config = json.loads(run.config_path.read_text())
    run.config_path.write_text(json.dumps({**config, "data": str(tmp_path / "roots" / ".." / "elsewhere")}))
    assert "uses '..'" in dict((r.name, why) for r, why in damaged_runs(tmp_path))["copy"]


# 3. a changed or moved dataset --------------------------------------------------------------------------
def test_encodings_are_never_dropped_silently_and_a_moved_folder_is_relinked(run_dir, small_demo, tmp_path, capsys):
    data, moved = tmp_path / "data", tmp_path / "moved"
    shutil.copytree(small_demo, data)
    run = copy_of(run_dir, tmp_path)
    run.config_path.write_text(json.dumps({**json.loads(run.config_path.read_text()), "data": str(data)}))
    assert main(["encode", "--run-dir", str(run.dir)]) == 0
    before = pd.read_parquet(run.encodings_path)
    gone = sorted((data / "Achaemenid").iterdir())
    for f in gone:
        f.unlink()
    err = error_of(["encode", "--run-dir", run.dir], capsys)
    assert f"{len(gone)} files removed (Achaemenid/" in err and f"{len(before)} existing encodings" in err
    assert "--replace" in err and pd.read_parquet(run.encodings_path).equals(before)
    enc, sp = spaces(run.dir)  # Explore and Influence read the kept encodings, with the reason
    assert len(enc) == len(sp["pca"]) == len(before) and "files removed" in enc.attrs["kept"]

    data.rename(moved)
    err = error_of(["encode", "--run-dir", run.dir], capsys)
    assert "dataset folder not found" in err and "relink" in err and f"{len(before)} existing encodings" in err
    enc, sp = spaces(run.dir)  # the encodings open without their folder
    assert len(enc) == len(sp["pca"]) == len(before) and "_pca_0" not in enc
    figure(tmp_path / "other" / "Greek" / "a.png")
    assert "none of the figurines" in error_of(["relink", "--run-dir", run.dir, "--data", tmp_path / "other"], capsys)

    assert main(["encode", "--run-dir", str(run.dir), "--data", str(moved), "--replace"]) == 0
    out = capsys.readouterr().out
    assert f"now reads its dataset from {moved}" in out and f"{len(gone)} files removed" in out
    assert len(pd.read_parquet(run.encodings_path)) == len(before) - len(gone)
    assert run.config()["data"] == str(moved)
    changed = sorted((moved / "Neo-Babylonian").iterdir())[0]
    os.utime(changed, ns=(1, 1))
    figure(moved / "Neo-Babylonian" / "new.png")
    assert main(["encode", "--run-dir", str(run.dir)]) == 0  # nothing removed: encoded again, and said what changed
    out = capsys.readouterr().out
    assert "1 file added (Neo-Babylonian/new.png)" in out and f"1 file changed (Neo-Babylonian/{changed.name})" in out


# 4, 5. formulas and terminal sequences in names ------------------------------------------------------
def test_csv_downloads_escape_spreadsheet_formulas():
    table = pd.DataFrame({"path": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "plain"],
                          "culture": ["=1+1", "a", "b", "c", "d", "e"], "aae_x": [-1.5, 0, 1, 2, 3, 4]})
    back = pd.read_csv(io.StringIO(csv(table)), keep_default_na=False)
    assert list(back["path"]) == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert back.at[0, "culture"] == "'=1+1" and back.at[0, "aae_x"] == -1.5  # numbers stay numbers


def test_scan_prints_names_with_terminal_sequences_escaped(tmp_path, capsys):
    figure(tmp_path / "d" / "\x1b[2J\x1b]0;pwned\x07Greek" / "\x1b[31mred.png")
    (tmp_path / "d" / "\x1b[2J\x1b]0;pwned\x07Greek" / "\x1b[31mbad.png").write_bytes(b"not an image")
    assert main(["scan", str(tmp_path / "d"), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out and "\\x1b[31mbad.png" in out


# 6, 14. undecodable names and other formats are listed with the reason --------------------------------
def test_names_that_are_not_utf8_and_other_formats_are_listed_never_fatal(tmp_path, capsys):
    data = tmp_path / "d"
    for i in range(4):
        figure(data / "Greek" / f"{i}.png", i)
        figure(data / "Roman" / f"{i}.png", i + 4)
    figure(data / "Greek" / "x.png")
    os.rename(data / "Greek" / "x.png", os.fsencode(data / "Greek") + b"/caf\xe9.png")
    os.makedirs(os.fsencode(data) + b"/Gr\xfcn")
    figure(data / "Greek" / "y.png")
    os.rename(data / "Greek" / "y.png", os.fsencode(data) + b"/Gr\xfcn/y.png")
    for ext in ("heic", "avif", "gif", "HEIC"):
        (data / "Greek" / f"phone.{ext}").write_bytes(b"....")
    assert main(["scan", str(data), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "Greek/caf\\xe9.png: its name is not valid UTF-8" in out and "Gr\\xfcn: its name" in out
    for ext in ("heic", "avif", "gif", "HEIC"):
        assert f"Greek/phone.{ext}: {ext.upper()} files are not read" in out
    assert main(["train", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--epochs", "1",
                 "--image-size", "16", "--batch-size", "4", "--device", "cpu"]) == 0
    assert Run(tmp_path / "run").config()["images"] == 8


# 7. one damaged run is listed as damaged; the others keep working ------------------------------------
DAMAGE = {
    "status.json": lambda r: r.status_path.write_text("[]"),
    "pid": lambda r: r.status_path.write_text(json.dumps({"state": "running", "epoch": 1, "pid": "abc"})),
    "config.json": lambda r: r.config_path.write_text('{"settings": '),
    "metrics bytes": lambda r: r.metrics_path.write_bytes(np.random.default_rng(0).bytes(500)),
    "metrics column": lambda r: r.metrics_path.write_text("epoch,recon_loss\n1,0.5\n"),
    "snapshots": lambda r: next(r.snapshots_dir.glob("epoch_*.npy")).write_bytes(b"\x93NUMPY garbage"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_run_is_listed_with_the_reason(run_dir, tmp_path, kind):
    copy_of(run_dir, tmp_path, "good")
    bad = copy_of(run_dir, tmp_path, "bad")
    DAMAGE[kind](bad)
    assert [r.name for r in list_runs(tmp_path)] == ["good"]
    (run, why), = damaged_runs(tmp_path)
    assert run.name == "bad" and why
    assert isinstance(bad.status(), dict) and isinstance(bad.metrics(), pd.DataFrame) and bad.snapshots() is not None


def test_a_run_in_its_first_epoch_is_not_damaged(run_dir, tmp_path):
    """Its metrics.csv holds the header only: the run stays listed (a running run once vanished from the
    Train page's list for its whole first epoch, and the page switched to another run)."""
    run = copy_of(run_dir, tmp_path, "young")
    run.write_metrics([])
    assert [r.name for r in list_runs(tmp_path)] == ["young"] and run.metrics().empty


def test_a_damaged_lock_file_blocks_nothing(tmp_path):
    for text in ["[]", '{"run": "x", "pid": "abc"}', '{"pid": 1}', "\x00\xff"]:
        locks.device_lock("cpu").parent.mkdir(parents=True, exist_ok=True)
        locks.device_lock("cpu").write_text(text)
        assert jobs.active("cpu") is None


# 8. a stale "running" status -----------------------------------------------------------------------------
def test_a_running_status_without_its_trainer_is_told_apart_and_can_be_cleared(run_dir, tmp_path, capsys,
                                                                               monkeypatch):
    import socket
    import time

    from core.parallel import process_start

    run = copy_of(run_dir, tmp_path)
    me, host = os.getpid(), socket.gethostname()  # this test's process: alive, but no trainer of the run
    for st in [{"pid": me, "host": host, "updated": time.time() - 30 * 86400},  # a pid taken over since
               {"pid": me, "host": host, "pid_start": "12", "updated": time.time()},  # another start time
               {"pid": me}, {"pid": 2**31 - 1, "host": host, "updated": time.time()}]:  # no update time; gone
        run.status_path.write_text(json.dumps({"state": "running", "epoch": 1, **st}))
        assert run.status()["state"] == "interrupted" and "resume continues it" in run.status()["message"], st
        run.require_idle()
    live = {"state": "running", "epoch": 1, "pid": me, "host": host, "pid_start": process_start(me),
            "updated": time.time()}
    run.status_path.write_text(json.dumps(live))
    assert run.status()["state"] == "running"
    assert "on this machine: stop it first" in error_of(["train", "--run-dir", run.dir, "--resume"], capsys)
    assert "stop it first" in error_of(["clear-status", "--run-dir", run.dir], capsys)

    run.status_path.write_text(json.dumps({**live, "host": "another-machine", "message": "epoch 3"}))
    assert run.status()["state"] == "running" and "clear-status --run-dir" in run.status()["message"]
    err = error_of(["train", "--run-dir", run.dir, "--resume"], capsys)
    assert "on another-machine, which this machine cannot check" in err and "clear-status --run-dir" in err
    monkeypatch.setenv("FIGURINES_DATA_ROOTS", os.path.dirname(run.config()["data"]))
    with pytest.raises(UserError, match="clear-status"):  # the app's resume says the same
        jobs.launch(run.dir, resume=True)
    assert main(["clear-status", "--run-dir", str(run.dir)]) == 0
    assert run.status()["state"] == "interrupted" and "another-machine" in run.status()["message"]
    run.require_idle()


# 9. a malformed metadata.csv ---------------------------------------------------------------------------
def test_a_malformed_metadata_csv_is_reported_row_by_row(tmp_path, capsys):
    d = tmp_path / "d"
    for i, name in enumerate("abcde"):
        figure(d / "unsorted" / f"{name}.png", i)
    (d / "metadata.csv").write_text(
        "path, culture, site\n"
        "unsorted/a.png, Hellenistic, Babylonian, Uruk\n"  # 2: an unquoted comma
        "unsorted/b.png, Achaemenid, \n"                    # 3: spaces after commas are fine
        "unsorted/c.png,   ,Uruk\n"                         # 4: a culture of spaces
        "unsorted/gone.png,Achaemenid,\n"                   # 5: no such file
        "unsorted/b.png,Achaemenid,\n"                      # 6: a repeat
        "\n"
        "unsorted/d.png,Greek,\n"                           # 8, 9: contradicting rows
        "./unsorted/d.png,Roman,\n"
        '"unsorted/e.png","Neo-Babylonian","Kish, north"\n')  # 10: a quoted comma is fine
    m = scan(d).set_index("path")
    assert list(m.index[m["readable"]]) == ["unsorted/b.png", "unsorted/e.png"]
    assert m.at["unsorted/b.png", "culture"] == "Achaemenid" and m.at["unsorted/e.png", "site"] == "Kish, north"
    assert m.at["unsorted/a.png", "reason"].startswith("metadata.csv line 2: 4 fields where the header has 3")
    assert m.at["unsorted/c.png", "reason"] == "metadata.csv line 4: gives it no culture"
    assert m.at["unsorted/gone.png", "reason"] == "metadata.csv line 5: names this file, but it is not in the folder"
    assert m.at["metadata.csv line 6", "reason"] == "repeats line 3 (unsorted/b.png)"
    assert m.at["unsorted/d.png", "reason"].startswith("metadata.csv lines 8, 9: give it different labels")
    assert main(["scan", str(d), "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "metadata.csv: 5 row(s) not used or not matched" in out and "unsorted/a.png: metadata.csv line 2: 4" in out
    (d / "metadata.csv").write_text('path,culture\nunsorted/a.png,"Greek\nunsorted/b.png,Roman\n')
    assert "metadata.csv line 3 cannot be read as CSV" in error_of(["scan", d], capsys)
    (d / "metadata.csv").write_bytes("path,culture\nunsorted/a.png,Gr\u00e8ce\n".encode("latin-1"))
    assert "is not UTF-8 text" in error_of(["scan", d], capsys)


# 10. memory ----------------------------------------------------------------------------------------------
def test_a_large_16_bit_png_decodes_within_its_own_pixels_and_the_memory_budget(tmp_path, monkeypatch):
    import threading
    import time
    import tracemalloc

    from core import images
    from core.images import UnreadableImage, decode
    from core.parallel import MemorySlots

    n = 3000  # as the 12,200 x 12,200 16-bit PNG, at 6% of its pixels: 18 MB as loaded
    big = tmp_path / "Greek" / "big.png"
    big.parent.mkdir()
    Image.fromarray(np.add.outer(np.arange(n), np.arange(n)).astype(np.uint16) * 7).save(big)
    tracemalloc.start()  # numpy's arrays are traced (Pillow's own pixels are not)
    a = decode(str(big), 32, "flatten")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert a.shape == (32, 32, 3) and a.std() > 10 and peak < 2 * 2**20  # never a full-size float copy
    held = []
    monkeypatch.setattr(images, "LARGE_DECODE_BYTES", n * n)  # 18 MB: large

    @contextlib.contextmanager
    def reserve(nbytes):
        held.append(nbytes)
        yield

    decode(str(big), 32, reserve=reserve)
    assert held == [2 * n * n]  # its pixels as loaded: 2 bytes each
    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 2 * n * n - 1)
    with pytest.raises(UnreadableImage, match=f"too large to decode \\({n} x {n} pixels of mode I;16 need 0.0"):
        decode(str(big), 32)

    slots, order = MemorySlots(tmp_path / "slots", 1), []  # one slot: the second holder waits for the first

    def hold(name, seconds):
        with slots.hold():
            order.append(f"{name} in")
            time.sleep(seconds)
            order.append(f"{name} out")

    first = threading.Thread(target=hold, args=("a", 0.3))
    first.start()
    time.sleep(0.1)
    hold("b", 0)
    first.join()
    assert order == ["a in", "a out", "b in", "b out"]


def test_parallel_decoding_shares_the_memory_slots(tmp_path, monkeypatch):
    from core import dataset, images

    for i in range(6):
        figure(tmp_path / "d" / "Greek" / f"{i}.png", i)
    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "LARGE_DECODE_BYTES", 0)  # every file takes a slot
    monkeypatch.setattr(dataset, "available_memory", lambda: 2 * images.MAX_DECODE_BYTES)
    assert dataset.memory_slots() == 1
    ds = dataset.load(tmp_path / "d", 16, workers=1)  # in this process: worker processes may be spawned afresh
    assert len(ds.items) == 6 and ds.images.std() > 0 and (tmp_path / "cache" / ".decode-slots" / "slot-0.lock").exists()


# 11. clear messages instead of tracebacks ---------------------------------------------------------------
def test_bad_numbers_and_settings_files_get_one_clear_line(small_demo, tmp_path, capsys):
    new = ["train", "--data", small_demo, "--run-dir", tmp_path / "r"]
    for flags, message in [(["--seed", "-1"], "(--seed) must be"), (["--seed", str(2**70)], "(--seed) must be"),
                           (["--prior-std", "inf"], "Prior sd"), (["--prior-std", "1e-300"], "Prior sd"),
                           (["--disc-noise", "inf"], "(--disc-noise) must be")]:
        assert message in error_of(new + flags, capsys)
    assert "--seed must be" in error_of(["demo", "--out", tmp_path / "demo", "--seed", "-1"], capsys)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "types.json").write_text('{"epochs": "ten"}')
    (tmp_path / "device.json").write_text('{"device": "tpu"}')
    (tmp_path / "inner.json").write_text('{"settings": 3}')
    for f, message in [("fifo", "not a regular file"), ("/dev/zero", "not a regular file"),
                       ("list.json", "JSON object"), ("types.json", "(--epochs) must be a number"),
                       ("device.json", "(--device) must be"), ("inner.json", "JSON object")]:
        assert message in error_of(new + ["--settings", tmp_path / f], capsys)
    assert not (tmp_path / "r").exists()


def test_bad_run_folders_get_one_clear_line(run_dir, tmp_path, capsys):
    for name, change, message in [
        ("list", lambda c: [c], "not a JSON object"), ("nokeys", lambda c: {"data": c["data"]}, "no 'settings'"),
        ("nulldata", lambda c: {**c, "data": None}, "no dataset path"),
        ("size", lambda c: {**c, "effective": {**c["effective"], "image_size": 64},
                            "settings": {**c["settings"], "image_size": 64}}, "does not match")]:
        run = copy_of(run_dir, tmp_path, name)
        (run.dir / "encodings.parquet").unlink(missing_ok=True)
        run.config_path.write_text(json.dumps(change(json.loads(run.config_path.read_text()))))
        assert message in error_of(["encode", "--run-dir", run.dir], capsys), name
    run = copy_of(run_dir, tmp_path, "dir")
    (run.dir / "encodings.parquet").unlink(missing_ok=True)
    (run.dir / "encodings.parquet").mkdir()
    assert "is a folder where a file belongs" in error_of(["encode", "--run-dir", run.dir], capsys)
    for n in ("0", "10", "1000000000"):
        assert "--bootstrap must be" in error_of(["influence", "--run-dir", run_dir, "--bootstrap", n], capsys)
    assert "only --epochs and --device" in error_of(["train", "--run-dir", run_dir, "--resume", "--lr", "0.1"], capsys)


def test_scan_of_a_folder_without_images_says_so(tmp_path, capsys):
    (tmp_path / "Greek").mkdir()
    assert "no readable image" in error_of(["scan", tmp_path], capsys)


# 13, 15. the folder chooser, usage lines, Pillow's warnings ----------------------------------------------
def test_the_folder_chooser_refuses_null_bytes_and_overlong_names(tmp_path):
    for bad in ["x\x00y", "a" * 5000, "/".join(["b" * 255] * 20), "~no-such-user-here/x"]:
        with pytest.raises(UserError, match="not a usable path|outside the folders"):
            within_roots(bad, [tmp_path])


def test_usage_lines_and_no_pillow_warnings(tmp_path, capsys):
    assert "(see python -m core --help)" in error_of([], capsys)
    assert "(see python -m core train --help)" in error_of(["train", "--bogus"], capsys)
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x0f\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00"
    figure(tmp_path / "Greek" / "a.jpg")
    Image.new("RGB", (40, 40)).save(tmp_path / "Greek" / "exif.jpg", exif=exif)
    from core.images import decode

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decode(str(tmp_path / "Greek" / "exif.jpg"), 16)
    assert not caught
