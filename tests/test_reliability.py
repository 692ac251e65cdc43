"""Reliability and security, third round (issue 26): run folders as hostile input, one server for everyone,
locks that hold, names shown as text, Unicode forms, files never left out silently, caches that are checked.

Each test names the class it covers; each would have failed before the fix."""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import tomllib
import unicodedata
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import dataset, influence, jobs, locks
from core.cli import main
from core.dataset import load, scan
from core.errors import UserError
from core.paths import DATA, RUNS
from core.runs import Run, damaged_runs, run_name
from core.settings import Settings
from core.fit import fit_run
from tests.corpus import EVIL, HOSTILE, hostile

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(args, capsys) -> str:
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: " in err.splitlines()[-1], err
    return err.splitlines()[-1]


@pytest.fixture(scope="module")
def run_dir(small_demo, tmp_path_factory):
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu", snapshot_size=20)
    return fit_run(tmp_path_factory.mktemp("runs") / "good", s, str(small_demo)).dir


def copy_of(run_dir, tmp_path, name="copy") -> Run:
    shutil.copytree(run_dir, tmp_path / name, ignore=shutil.ignore_patterns(".trainer.lock"))
    return Run(tmp_path / name)


# 1. a run folder's files are read only as regular files of the folder, within a size cap --------------------
SPOILED = {
    "log link": lambda r, out: (r.dir / "train.log").symlink_to(out),
    "status to /dev/zero": lambda r, out: (r.status_path.unlink(), r.status_path.symlink_to("/dev/zero")),
    "status FIFO": lambda r, out: (r.status_path.unlink(), os.mkfifo(r.status_path)),
    "snapshot FIFO": lambda r, out: (next(r.snapshots_dir.glob("epoch_*.npy")).unlink(),
                                     os.mkfifo(r.snapshots_dir / "epoch_0001.npy")),
    "huge config": lambda r, out: r.config_path.write_text(json.dumps({**r.config(), "pad": "x" * 2_000_000})),
    "config link": lambda r, out: (r.config_path.rename(out.with_name("config.json")),
                                   r.config_path.symlink_to(out.with_name("config.json"))),
    "model link": lambda r, out: (r.model_path.rename(out.with_name("model.pt")),
                                  r.model_path.symlink_to(out.with_name("model.pt"))),
    "snapshots link": lambda r, out: (r.snapshots_dir.rename(out.parent / "snapshots"),
                                      r.snapshots_dir.symlink_to(out.parent / "snapshots")),
}


@pytest.mark.parametrize("kind", SPOILED)
def test_run_files_that_are_links_pipes_devices_or_huge_make_the_run_damaged(run_dir, tmp_path, kind):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the server's secret\n" * 30)
    runs = tmp_path / "runs"
    runs.mkdir()
    run = copy_of(run_dir, runs, "spoiled")
    SPOILED[kind](run, secret)
    done = []
    worker = threading.Thread(target=lambda: done.append(damaged_runs(runs)), daemon=True)
    worker.start()
    worker.join(20)
    assert done, "listing the runs hung"
    (damaged, why), = done[0]
    assert damaged.name == "spoiled" and why
    assert "secret" not in jobs.log_tail(run)
    with pytest.raises(UserError, match="damaged"):  # not trained further: nothing is written through its links
        fit_run(run.dir, resume=True, overrides={"epochs": 2})
    (run.dir / ".trainer.lock").unlink(missing_ok=True)
    (run.dir / ".trainer.lock").symlink_to(secret)
    with pytest.raises(UserError, match="lock file"):  # a link planted as the lock is not opened either
        fit_run(run.dir, resume=True, overrides={"epochs": 2})
    assert secret.read_text().startswith("the server's secret")
    planted = tmp_path / "outside" / "planted"
    run.stop_path.symlink_to(planted)
    run.request_stop()  # never through a link planted as STOP
    assert run.stop_path.is_file() and not run.stop_path.is_symlink() and not planted.exists()


def test_pipes_and_links_in_a_dataset_folder_are_never_read(tmp_path, capsys):
    _png(tmp_path / "Greek" / "a.png")
    os.mkfifo(tmp_path / "Greek" / "pipe.jpg")
    m = scan(tmp_path)
    assert m.loc[m["path"] == "Greek/pipe.jpg", "reason"].item().startswith("not a regular file")
    os.mkfifo(tmp_path / "truth.json")
    assert influence.known_answer(tmp_path) is None  # returns at once, not waiting on the pipe
    os.mkfifo(tmp_path / "metadata.csv")
    assert "metadata.csv is a link, pipe or device" in one_line_error(["scan", tmp_path], capsys)


# 2. a full cache disk: one clear line before writing, nothing half-built, the process lives -----------------
def test_a_full_cache_disk_is_said_before_writing_and_leaves_nothing(small_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000))
    with pytest.raises(UserError, match=r"not enough space in the cache folder .* \(needs \d+ MB, has 1 MB\)"):
        load(small_demo, 64)
    assert "not enough space in the cache folder" in one_line_error(["scan", small_demo], capsys)
    assert not list((tmp_path / "cache").glob(".building-*"))


def test_a_disk_that_fills_while_allocating_is_said_too(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset.os, "posix_fallocate", full)
    with pytest.raises(UserError, match="not enough space in the cache folder"):
        load(small_demo, 40)
    assert not list((tmp_path / "cache").glob(".building-*"))


def test_builds_of_processes_that_died_are_removed(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))
    dead = tmp_path / "cache" / f".building-{2**22 + 11}-abc"
    dead.mkdir(parents=True)
    (dead / "images.npy").write_bytes(b"half")
    load(small_demo, 24)
    assert not dead.exists()


# 3. locks: one training per device and one trainer per run folder, whoever starts them ----------------------
def _holder(path: Path, run: Path):
    """Another process holding a lock until its stdin closes."""
    code = ("import sys; from pathlib import Path; from core import locks\n"
            f"with locks.hold(Path({str(path)!r}), Path({str(run)!r}), 'busy'):\n"
            "    print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_cli_and_the_app_share_one_lock_per_device(small_demo, tmp_path, tiny_settings, capsys):
    other = _holder(locks.device_lock("cpu"), tmp_path / "app-run")
    try:
        line = one_line_error(["train", "--data", small_demo, "--run-dir", tmp_path / "cli-run", "--device", "cpu",
                               "--epochs", "1", "--image-size", "32"], capsys)
        assert f"the cpu is busy: run app-run (process {other.pid}, since" in line
        assert not (tmp_path / "cli-run" / "config.json").exists()
        with pytest.raises(UserError, match=rf"run app-run \(process {other.pid}, since .*\) is already training"):
            jobs.launch(tmp_path / "app-run-2", tiny_settings, str(small_demo))
        assert jobs.active("cpu").name == "app-run"
    finally:
        other.communicate("")
    assert jobs.active("cpu") is None


def test_a_run_folder_has_one_trainer_new_or_resumed(run_dir, small_demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FIGURINES_DATA_ROOTS", str(small_demo))  # the app resumes only runs on its own data
    new = tmp_path / "new-run"
    new.mkdir()
    other = _holder(locks.run_lock(new), new)
    try:
        assert f"run new-run is already being trained by run new-run (process {other.pid}" in one_line_error(
            ["train", "--data", small_demo, "--run-dir", new, "--epochs", "1"], capsys)
        assert not (new / "config.json").exists()
    finally:
        other.communicate("")
    run = copy_of(run_dir, tmp_path, "resumed")
    other = _holder(locks.run_lock(run.dir), run.dir)
    try:
        assert "already being trained by run resumed" in one_line_error(
            ["train", "--run-dir", run.dir, "--resume", "--epochs", "2"], capsys)
        with pytest.raises(UserError, match="already being trained"):
            jobs.launch(run.dir, resume=True)
    finally:
        other.communicate("")
    assert run.status()["state"] == "done" and run.status()["epoch"] == 1


def test_two_trainings_into_one_new_folder_at_once_give_one_run(small_demo, tmp_path):
    cmd = [sys.executable, "-m", "core", "train", "--data", str(small_demo), "--run-dir", str(tmp_path / "same"),
           "--epochs", "1", "--image-size", "32", "--device", "cpu"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = next(err for p, (out, err) in zip(procs, outs) if p.returncode == 2)
    assert "Traceback" not in refused and ("already being trained" in refused or "is busy" in refused
                                           or "already holds a run" in refused)
    run = Run(tmp_path / "same")
    assert run.problem() is None and run.status()["state"] == "done"


# 4. one deeply nested file takes down nothing -------------------------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "status.json"])
def test_a_deeply_nested_run_file_is_damage_not_a_crash(run_dir, tmp_path, name, capsys):
    run = copy_of(run_dir, tmp_path, "nested")
    (run.dir / name).write_text("[" * 5000 + "]" * 5000)
    (damaged, why), = damaged_runs(tmp_path)
    assert "nested too deeply" in why or "cannot be read" in why
    if name == "config.json":
        one_line_error(["influence", "--run-dir", run.dir], capsys)
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 3000 + "1" + "}" * 3000)
    assert "nested too deeply" in one_line_error(["train", "--data", run_dir, "--run-dir", tmp_path / "x",
                                                  "--settings", deep], capsys)


# 6. terminal sequences in names never reach the terminal ----------------------------------------------------
def test_the_reading_lines_escape_names_and_reasons():
    from core.cli import printable

    withheld = {"table": pd.DataFrame({"group": ["g"]}), "target": "T",
                "verdict": {"level": "withheld", "reasons": [f"it cannot tell {HOSTILE['Achaemenid']} apart"]}}
    line, = influence.reading(withheld, printable)
    assert "\x1b" not in line and "\x07" not in line and "\n" not in line and "\\x1b" in line


# 7. Streamlit's own table download is off: the app's escaped downloads are the only ones -------------------
def test_table_toolbars_offer_no_unescaped_download():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["disableDataExport"] is True


# 8. names match under one Unicode form; true duplicates are listed ----------------------------------------
def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)


def test_mac_file_names_match_metadata_typed_elsewhere(tmp_path):
    nfd = unicodedata.normalize("NFD", "Café")
    _png(tmp_path / nfd / "é1.png")
    _png(tmp_path / nfd / "b.png", 2)  # copied from a Mac: decomposed
    _png(tmp_path / unicodedata.normalize("NFC", "Café") / "é1.png", 1)  # the same name, composed: a duplicate
    (tmp_path / "metadata.csv").write_text("path,culture,site\n"
                                           f"{unicodedata.normalize('NFC', 'Café/b.png')},Café,Süd\n",
                                           encoding="utf-8")
    m = scan(tmp_path)
    readable = m[m["readable"]]
    assert set(readable["culture"]) == {"Café"} and len(readable) == 2  # one culture, not two that look alike
    assert readable.loc[readable["path"].str.endswith("b.png"), "site"].item() == "Süd"  # metadata matched
    twin, = m.loc[~m["readable"], "reason"]
    assert "another Unicode form" in twin
    assert not m["reason"].str.contains("not in the folder").any()


# 9. no file is left out silently ------------------------------------------------------------------------------
def test_a_folder_too_deep_for_the_system_is_listed(tmp_path):
    _png(tmp_path / "Greek" / "ok.png")
    fd = os.open(tmp_path / "Greek", os.O_RDONLY)
    try:
        for _ in range(24):  # 24 x 240 characters: past the system's 4096
            os.mkdir("d" * 240, dir_fd=fd)
            fd, old = os.open("d" * 240, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        with open(os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            Image.new("RGB", (8, 8)).save(f, "PNG")
    finally:
        os.close(fd)
    m = scan(tmp_path)
    assert m["readable"].sum() == 1
    assert m["reason"].str.contains("cannot be read").any() and m["reason"].str.contains("not counted").any()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_a_folder_the_server_cannot_read_is_listed(tmp_path):
    _png(tmp_path / "Greek" / "ok.png")
    _png(tmp_path / "Greek" / "locked" / "a.png")
    (tmp_path / "Greek" / "locked").chmod(0)
    try:
        m = scan(tmp_path)
    finally:
        (tmp_path / "Greek" / "locked").chmod(stat.S_IRWXU)
    assert m.loc[m["path"].str.contains("locked"), "reason"].str.contains("cannot be read").all()


# 11. resuming after photographs were added keeps the run whole ------------------------------------------------
def test_resume_after_adding_photographs_drops_old_snapshots_with_a_note(small_demo, tmp_path, tiny_settings):
    data = tmp_path / "data"
    shutil.copytree(small_demo, data)
    run = fit_run(tmp_path / "run", replace(tiny_settings, epochs=1), str(data))
    for i in range(5):
        _png(data / "Greek" / f"000-new-{i}.png", i)
    fit_run(run.dir, resume=True, overrides={"epochs": 2})
    assert run.problem() is None and run.status()["state"] == "done"
    assert "earlier latent snapshot(s) showed other figurines and were dropped" in run.status()["note"]
    assert sorted(run.snapshots()) == [2]


# 12. cached files are checked when read ----------------------------------------------------------------------
def test_damaged_or_forged_encodings_are_recomputed(run_dir, tmp_path):
    from core.embed import encode_run, write_encodings, stored_key

    run = copy_of(run_dir, tmp_path, "enc")
    good = encode_run(run.dir)
    key = stored_key(run.encodings_path)
    write_encodings(run, good.assign(aae_x=np.where(np.arange(len(good)) == 0, np.nan, good["aae_x"])), key)
    assert np.isfinite(encode_run(run.dir)[["aae_x", "aae_y"]].to_numpy()).all()
    write_encodings(run, good.drop(columns=["umap_y"]), key)
    assert "umap_y" in encode_run(run.dir)


def test_a_metrics_file_with_an_infinite_epoch_is_damage(run_dir, tmp_path):
    run = copy_of(run_dir, tmp_path, "inf")
    m = run.metrics()
    run.metrics_path.write_text(m.assign(epoch=["inf"] * len(m)).to_csv(index=False))
    (damaged, why), = damaged_runs(tmp_path)
    assert "not a whole number" in why and run.metrics().empty


# 14. smaller loose ends ----------------------------------------------------------------------------------------
def test_run_names_that_no_file_system_takes_are_refused_in_words():
    for bad in ("x" * 300, "a\0b", "a/b", ".hidden", " ", "tab\there"):
        with pytest.raises(UserError, match="run name"):
            run_name(bad)
    assert run_name("  Uruk 2026  ") == "Uruk 2026"


def test_a_run_killed_before_its_first_checkpoint_can_start_again(run_dir, small_demo, tmp_path, capsys):
    run = copy_of(run_dir, tmp_path, "killed")
    run.model_path.unlink()
    st = json.loads(run.status_path.read_text())
    run.status_path.write_text(json.dumps({**st, "state": "running", "pid": 2**22 + 3}))  # its trainer is gone
    assert "ended before its first one" in one_line_error(["train", "--run-dir", run.dir, "--resume"], capsys)
    assert main(["train", "--data", str(small_demo), "--run-dir", str(run.dir), "--epochs", "1",
                 "--image-size", "32"]) == 0
    assert run.status()["state"] == "done" and run.model_path.is_file()


def test_a_settings_file_naming_a_preset_gets_that_preset(tmp_path):
    s = Settings.from_dict({"preset": "paper", "epochs": 3})
    assert s.arch == "dense" and s.image_size == 256 and s.epochs == 3


def test_refusing_an_unsafe_checkpoint_never_advises_loading_it_unsafely(run_dir, tmp_path):
    import pickle

    run = copy_of(run_dir, tmp_path, "unsafe")

    class Code:
        def __reduce__(self):
            return (print, ("this ran",))

    run.model_path.write_bytes(pickle.dumps({"model": Code()}, protocol=2))
    with pytest.raises(UserError) as e:
        run.load_checkpoint()
    assert "weights_only" not in str(e.value) and "refused" in str(e.value)


# 13. one source culture ---------------------------------------------------------------------------------------
def test_one_source_culture_says_every_share_is_one(small_demo, tiny_settings, capsys):
    from tests.test_pages import page

    data = DATA / "two-cultures"
    for culture in ("Achaemenid", "Hellenistic Babylonian"):
        shutil.copytree(small_demo / culture, data / culture)
    run = fit_run(RUNS / "one-source", replace(tiny_settings, epochs=1), str(data))
    line = one_line_error(["influence", "--run-dir", run.dir, "--bootstrap", "20"], capsys)
    assert "one source culture only (Achaemenid)" in line and "each share is 1" in line
    assert main(["influence", "--run-dir", str(run.dir), "--json"]) == 2
    at = page("influence", run=run.name)
    assert not at.exception and any("one source culture only" in w.value for w in at.warning)


# 5, 10, 12. every page with hostile names, a forged results file, and files added under a cached folder ------
def md_leaks(at) -> list[str]:
    """Elements whose Markdown would render a hostile name as a link, image, colour or formula."""
    plain_types = {"code", "text", "arrow_data_frame", "dataframe", "selectbox", "multiselect", "vega_lite_chart",
                   "arrow_vega_lite_chart", "json", "text_input", "imgs", "image", "select_slider"}
    leaks, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        stack.extend(getattr(node, "children", {}).values())
        proto = getattr(node, "proto", None)
        if proto is None or getattr(node, "type", "") in plain_types:
            continue
        text = "\n".join(line for line in str(proto).splitlines()  # widget ids hold keys, never shown
                         if not line.strip().startswith(("id:", "form_id:")))
        if EVIL in text or ":red[" in text:
            leaks.append(f"{node.type}: {text[:300]}")
    return leaks


@pytest.fixture(scope="module")
def hostile_run(small_demo):
    data = hostile(small_demo, DATA / "hostile")
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=2, device="cpu")
    run = fit_run(RUNS / "[Session expired](mailto:a@evil.invalid)", s, str(data))
    run.config_path.write_text(json.dumps({**run.config(), "device": "[cpu](http://evil.invalid/d)"}))
    return run


def test_every_page_shows_hostile_names_as_text(hostile_run):
    from tests.test_pages import page

    name = hostile_run.name
    n = len(load(hostile_run.config()["data"], 32).items)
    state = {"run": name, "watch": name, "data_root": hostile_run.config()["data"],
             "picks": {name: {"ids": list(range(n)), "gen": {}, "seen": {}}}}
    for p in ("home", "data", "train", "explore", "influence"):
        at = page(p, **state)
        assert not at.exception, (p, at.exception)
        assert not md_leaks(at), (p, md_leaks(at))
    at = page("train", **state)
    for bad in ("x" * 300, "a\0b"):
        at.text_input(key="run_name").set_value(bad)
        next(b for b in at.button if b.label == "Launch training").click().run()
        assert not at.exception and any("run name" in e.value for e in at.error)


def test_a_forged_results_file_is_recomputed_not_shown(hostile_run):
    influence.for_run(hostile_run.dir)  # written by the Influence page already, if that test ran first
    stored = json.loads((hostile_run.dir / "influence.json").read_text())
    body = json.loads(stored["body"])
    for r in body["results"].values():
        for row in r["table"]:
            row.update(share=0.99, ci_low=0.98, ci_high=1.0)
        r["verdict"] = {"level": "good", "reasons": []}
    forged = json.dumps(body)
    (hostile_run.dir / "influence.json").write_text(json.dumps({"seal": stored["seal"], "body": forged}))
    assert not influence.is_current(hostile_run.dir)
    (hostile_run.dir / "influence.json").write_text(json.dumps({"key": body["key"], "results": {}}))
    assert not influence.is_current(hostile_run.dir)
    results = influence.for_run(hostile_run.dir)
    assert all(r["verdict"]["level"] in influence.LEVELS for r in results.values())
    assert not any((r["table"]["share"] == 0.99).all() for r in results.values())


def test_explore_shows_the_photographs_of_the_rows_after_files_are_added(small_demo):
    """Open Explore on run X, add files that sort first, train run Y on the same folder, open Y: the gallery
    shows Y's rows (the images were cached by folder, size and background only)."""
    from tests.test_pages import page

    data = DATA / "growing"
    shutil.copytree(small_demo, data)
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu")
    x = fit_run(RUNS / "before-adding", s, str(data))
    assert not page("explore", run=x.name, picks={x.name: {"ids": [0], "gen": {}, "seen": {}}}).exception
    for i in range(4):
        _png(data / "Achaemenid" / f"000-added-{i}.png", i)
    y = fit_run(RUNS / "after-adding", s, str(data))
    n = len(load(data, 32).items)
    last = n - 1  # beyond the old row count
    at = page("explore", run=y.name, picks={y.name: {"ids": [0, last], "gen": {}, "seen": {}}})
    assert not at.exception, at.exception
    captions = " ".join(c.value.replace("<wbr>", "") for c in at.caption)
    assert "000\\-added\\-0\\.png" in captions and len(at.get("image")) >= 2, captions


def test_damaged_baseline_and_descriptor_caches_are_made_again(small_demo):
    from core.descriptors import Descriptor, describe
    from core.embed import UMAPBaseline, baseline

    ds = load(small_demo, 32)
    params = UMAPBaseline(neighbours="exact")
    pcs, emb = baseline(ds, params)
    x = describe(ds, Descriptor("hog", 32))
    for f in [*(dataset.cache_root() / "umap").glob(f"{ds.key}-*.npz"),
              *(dataset.cache_root() / "descriptors").glob(f"{ds.key}-*.npy")]:
        f.write_bytes(b"\x93NUMPY damaged")
    again, again_emb = baseline(ds, params)
    assert np.allclose(again, pcs) and again_emb.shape == emb.shape
    assert np.allclose(describe(ds, Descriptor("hog", 32)), x)
