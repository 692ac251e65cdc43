"""Background trainings: one `python -m core train` process per device, outliving the app that started it.

The app never trains in its own process: closing a tab, reloading or restarting the server leaves the
training running, and any session finds it again through the run folder and the device's lock file.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from filelock import FileLock

from .errors import UserError
from .paths import PROJECT, inside_roots
from .runs import Run, atomic_write, process_start
from .settings import Settings


def _lock_path(runs_root: Path, device: str) -> Path:
    return Path(runs_root) / f".training-{device.split(':')[0]}.lock"


def device_kind(settings: Settings) -> str:
    """The device a training will use, as a lock name: cuda, mps or cpu."""
    from .train import pick_device

    return pick_device(settings.device).type


def active(runs_root: Path, device: str) -> Run | None:
    """The run training on this device now, if any (a lock whose process is gone, or has finished
    training and only writes encodings, does not count)."""
    lock = _lock_path(runs_root, device)
    try:
        info = json.loads(lock.read_text())
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not (isinstance(info, dict) and isinstance(info.get("run"), str) and info["run"]
            and type(info.get("pid", 0)) is int and 0 <= info.get("pid", 0) < 2**31):
        return None  # a damaged lock file holds nothing: the next launch replaces it
    if not info.get("pid") and age > 120:
        return None  # a launcher that died before it could start its trainer
    started = process_start(info.get("pid", 0))
    if started is None or (started and info.get("pid_start") and started != info["pid_start"]):
        return None
    run = Run(info["run"])
    if info.get("pid") and run.status().get("state") not in ("running", "missing", "interrupted"):
        return None
    return run


def _take_lock(runs_root: Path, device: str, run: Run) -> bool:
    """Write the device's lock file for `run`; False if another live training holds it.

    A file lock (released by the system if its holder dies) makes check-and-take one step across
    sessions and processes; the lock file itself is only ever replaced whole, never seen half-written.
    """
    lock = _lock_path(runs_root, device)
    with FileLock(f"{lock}.mutex"):
        if lock.exists() and active(runs_root, device) is not None:
            return False
        atomic_write(lock, json.dumps({"run": str(run.dir), "pid": 0}).encode())
        return True


def launch(runs_root: Path, run_dir: Path, settings: Settings | None = None, data_root: str | None = None,
           resume: bool = False, encode: bool = True, started_within: float = 60.0) -> Run:
    """Start a training in a background process and wait until it has started (at most `started_within` s);
    raise UserError if this device is busy."""
    run = Run(run_dir)
    if resume:
        inside_roots(run.config()["data"])  # a run folder may name any folder: train only on the app's own
        settings = Settings.from_run(run.config()["settings"])
        run.require_idle()
    elif run.exists() and not run.failed_start():
        raise UserError(f"a run named {run.name} already exists; choose another name")
    else:
        run.check_new()
    device = device_kind(settings)
    Path(runs_root).mkdir(parents=True, exist_ok=True)
    lock = _lock_path(runs_root, device)
    if not _take_lock(runs_root, device, run):
        busy = active(runs_root, device)
        raise UserError(f"run {busy.name if busy else '?'} is already training on the {device}; "
                        f"wait for it or stop it first (one training at a time per device)")
    try:
        run.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "core", "train", "--run-dir", str(run.dir)]
        if resume:
            cmd.append("--resume")
        else:
            (run.dir / "settings.json").write_text(json.dumps(settings.to_dict()))
            cmd += ["--data", str(data_root), "--settings", str(run.dir / "settings.json")]
        if encode:
            cmd.append("--encode")
        log = open(run.dir / "train.log", "ab")
        proc = subprocess.Popen(cmd, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        log.close()
        atomic_write(lock, json.dumps({"run": str(run.dir), "pid": proc.pid,
                                       "pid_start": process_start(proc.pid)}).encode())
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    threading.Thread(target=proc.wait, name=f"reap-{run.name}", daemon=True).start()  # no defunct trainers
    t0 = time.time()  # wait until the trainer has written its status, or has ended (a bad folder, say)
    while time.time() - t0 < started_within and proc.poll() is None:
        if run.status_path.is_file() and run.status().get("pid") == proc.pid:
            break
        time.sleep(0.2)
    return run


def log_tail(run: Run, lines: int = 20) -> str:
    """The end of a background training's log (where a crash leaves its traceback)."""
    f = run.dir / "train.log"
    if not f.is_file():
        return ""
    text = f.read_bytes()[-20_000:].decode(errors="replace").replace("\r", "\n")
    kept = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    return "\n".join(kept[-lines:])
