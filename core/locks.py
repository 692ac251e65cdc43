"""Locks that hold across processes: one training per device, one trainer per run folder.

Each lock is an `flock` on a small file, taken by whatever trains (the CLI, the app's background trainer,
the bench: all go through `fit_run`) and released by the system when its holder ends, however it ends. The
holder writes who it is into the file, so that a refused second attempt names it in one line.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .paths import RUNS

_held: dict[str, int] = {}  # lock files this process holds (a nested `hold` of one of them is a no-op)


def device_lock(kind: str) -> Path:
    """The lock file of a device kind (cpu, cuda, mps), one per machine and runs folder."""
    return RUNS / f".training-{kind}.lock"


def run_lock(run_dir: Path) -> Path:
    return Path(run_dir) / ".trainer.lock"


def _open(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:  # a link planted in its place, a folder that cannot be written
        raise UserError(f"cannot open the lock file {path} ({e.strerror}); if it is a link, remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a regular file: remove it")
    return fd


def _info(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 10_000, 0) or b"{}")
    except (ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def holder(path: Path) -> dict | None:
    """Who holds the lock at `path` now (run, pid, since), {} if it cannot be told who; None if nobody."""
    try:
        fd = _open(Path(path), os.O_RDONLY)
    except (OSError, UserError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _info(fd)
    finally:
        os.close(fd)  # also releases the probe's shared lock


def describe(info: dict | None) -> str:
    """A holder in words: 'run X (process N, since 14:03)'."""
    info = info or {}
    since = time.strftime("%H:%M", time.localtime(info["since"])) if isinstance(info.get("since"), (int, float)) \
        else "?"
    return f"run {Path(str(info.get('run', '?'))).name} (process {info.get('pid', '?')}, since {since})"


@contextmanager
def hold(path: Path, run: Path, refusal: str):
    """Hold the lock at `path` for `run` while the block runs; if another process holds it, raise a UserError:
    `refusal` with `{holder}` replaced by who holds it. (A probe by `holder` holds it for microseconds: a few
    tries tell the two apart.)"""
    path = Path(path)
    if str(path) in _held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    for attempt in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 19 or _info(fd):
                info = _info(fd)
                os.close(fd)
                raise UserError(refusal.format(holder=describe(info))) from None
            time.sleep(0.05)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run": str(run), "pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.time()}).encode(), 0)
        _held[str(path)] = fd
        yield
    finally:
        _held.pop(str(path), None)
        os.ftruncate(fd, 0)
        os.close(fd)
