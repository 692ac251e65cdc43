"""Background trainings: one `python -m core train` process per device, outliving the app that started it.

The app never trains in its own process: closing a tab, reloading or restarting the server leaves the
training running, and any session finds it again through the run folder and the device's lock file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from filelock import FileLock

from . import locks
from .errors import UserError
from .parallel import process_start
from .paths import PROJECT, inside_roots
from .runs import CAPS, Run, atomic_write, open_checked
from .settings import Settings


def _started_at(ticks: str) -> float | None:
    """A process start time from /proc (clock ticks since boot) as seconds since the epoch; None elsewhere."""
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return None


def trainer_gone(status: dict) -> str | None:
    """Why a `running` status written on this machine has no live trainer behind it (None: a live one, or cannot
    tell): the one test of a trainer's liveness, which `Run.status` applies.

    Its process must exist, have the recorded start time, and be older than the status it wrote last: a pid
    taken over by another program (after a restart, say) fails the last two."""
    started = process_start(status.get("pid", 0))
    if started is None:
        return "the training process ended without finishing (killed or crashed); resume continues it"
    at = _started_at(started) if started else None
    recorded = status.get("pid_start")
    if started and (recorded and recorded != started or at and at > float(status.get("updated") or 0) + 2):
        return (f"its training process is gone (pid {status.get('pid')} now belongs to another program, or the "
                "machine restarted); resume continues it")
    return None


def device_kind(settings: Settings) -> str:
    """The device a training will use, as a lock name: cuda, mps or cpu."""
    from .devices import pick_device

    return pick_device(settings.device).type


def active(device: str) -> Run | None:
    """The run training on this device now, if any (its trainer holds the device's lock while it trains,
    not while it only writes encodings)."""
    info = locks.holder(locks.device_lock(device))
    return Run(info["run"]) if info and isinstance(info.get("run"), str) and info["run"] else None


def launch(run_dir: Path, settings: Settings | None = None, data_root: str | None = None, resume: bool = False,
           encode: bool = True, started_within: float = 60.0) -> Run:
    """Start a training in a background process and wait until it has started (at most `started_within` s)
    or has ended; raise UserError if this device or this run is busy. Launches are one at a time (a
    mutex), so that two sessions launching at once cannot both find the device free."""
    run = Run(run_dir)
    if resume:
        inside_roots(run.config()["data"])  # a run folder may name any folder: train only on the app's own
        settings = Settings.from_run(run.config()["settings"])
        run.require_idle()
    elif run.exists() and not run.never_checkpointed():
        raise UserError(f"a run named {run.name} already exists; choose another name")
    else:
        run.check_new()
    device = device_kind(settings)
    lock = locks.device_lock(device)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{lock}.mutex"):
        if (holder := locks.holder(lock)) is not None:
            raise UserError(f"{locks.describe(holder)} is already training on the {device}; wait for it or stop "
                            "it first (one training at a time per device)")
        if (holder := locks.holder(locks.run_lock(run.dir))) is not None:
            raise UserError(f"run {run.name} is already being trained by {locks.describe(holder)}")
        run.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "core", "train", "--run-dir", str(run.dir)]
        if resume:
            cmd.append("--resume")
        else:
            atomic_write(run.dir / "settings.json", json.dumps(settings.to_dict()).encode())
            cmd += ["--data", str(data_root), "--settings", str(run.dir / "settings.json")]
        if encode:
            cmd.append("--encode")
        fd = os.open(run.dir / "train.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        threading.Thread(target=proc.wait, name=f"reap-{run.name}", daemon=True).start()  # no defunct trainers
        t0 = time.time()  # until the trainer has written its status (it holds both locks by then) or has ended
        while time.time() - t0 < started_within and proc.poll() is None:
            if run.status().get("pid") == proc.pid:
                break
            time.sleep(0.2)
    return run


def log_tail(run: Run, lines: int = 20) -> str:
    """The end of a background training's log (where a crash leaves its traceback); only a regular file of
    the run's own folder is read."""
    try:
        with open_checked(run.dir / "train.log", CAPS["train.log"]) as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 20_000))
            text = f.read(20_000).decode(errors="replace").replace("\r", "\n")
    except (OSError, ValueError):
        return ""
    kept = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    return "\n".join(kept[-lines:])


# Images per second at an image size in epochs without the look-alike and shape terms, and the seconds every
# epoch costs whatever its size: what an estimate starts from before this machine has trained such a network.
# The conv figures: fast-preset epochs of 564 and 4,315 photographs (1.1 s and 6.1 s) on the slower of the two
# 2-core CPUs measured, an AMD EPYC (bench/RESULTS.md, "The Train page's time estimate"); the dense rate:
# bench/run.py's paper preset on a 2-core CPU.
REFERENCE_RATES = {("conv", "cpu"): (750.0, 64), ("dense", "cpu"): (15.8, 256)}
EPOCH_SECONDS = 0.35
# What an epoch costs beyond such a plain one, as a share of it (the demo, fast preset, 2-core Intel Xeon: plain
# epochs 3.1 s, 3.8 s with the look-alike term, 6.4 s with the shape term as well; bench/RESULTS.md, "The prior's
# shape held over hundreds of photographs"): the look-alike term, and the shape term per photograph it encodes
# beside each one trained on.
LOOKALIKE_COST = 0.23
SHAPE_COST = 0.21


def epoch_cost(s: Settings, epoch: int) -> float:
    """How long epoch `epoch` (from 1) of a run with settings `s` takes, in plain epochs of the same run."""
    from . import shape

    cost = 1.0
    if s.neighbours and epoch > s.neighbourhood.after:
        cost += LOOKALIKE_COST
    if s.shape and epoch > shape.AFTER:
        cost += SHAPE_COST * shape.REFERENCE / s.batch_size
    return cost


def estimate(settings: Settings, images: int, runs: list[Run]) -> tuple[float, str] | None:
    """How long training `settings` on `images` photographs takes here, in seconds, and what that rests on:
    the median plain-epoch rate of this machine's own runs of the same network on the same device (scaled by
    images and pixels), else the rate and per-epoch seconds measured on a small CPU; None where neither is known
    (a GPU's first run).
    Epochs with the look-alike or shape term count as `epoch_cost` plain ones."""
    from .devices import device_name, pick_device

    s = settings.effective()
    here = device_name(pick_device(s.device))
    rates = []
    for run in runs:
        try:
            cfg = run.config()
            m = run.metrics()
            done = Settings.from_run(cfg["effective"])
        except (UserError, KeyError, TypeError):
            continue
        if cfg.get("device") == here and done.arch == s.arch and len(m) and isinstance(cfg.get("images"), int):
            per_epoch = [cfg["images"] * epoch_cost(done, int(e)) / t
                         for e, t in zip(m["epoch"], m["seconds"]) if t > 0]
            if per_epoch:
                rates.append((float(np.median(per_epoch)) * (done.image_size / s.image_size) ** 2, run.name))
    overhead = 0.0
    if rates:
        ips, name = sorted(rates)[len(rates) // 2]
        basis = f"the rate of run {name} on this {here}"
    elif (s.arch, pick_device(s.device).type) in REFERENCE_RATES:
        ips, size = REFERENCE_RATES[(s.arch, pick_device(s.device).type)]
        ips *= (size / s.image_size) ** 2
        overhead = EPOCH_SECONDS * s.epochs
        basis = "the rate measured on a 2-core CPU (bench/RESULTS.md); this machine has no such run yet"
    else:
        return None
    return images * sum(epoch_cost(s, e) for e in range(1, s.epochs + 1)) / ips + overhead, basis


def duration(seconds: float) -> str:
    """'40 s', '12 min', '3.5 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:.1f} days"
