"""The run folder: the only thing the CLI, the background trainer and the app share.

`config.json`, `status.json`, `metrics.csv`, `snapshots/`, `model.pt`, `encodings.parquet` (see
DESIGN.md). Every file is written atomically (a temporary file, then a rename), so a reader never sees
half a file and a crash never leaves one. A `running` status whose process is gone (or whose pid another
program took over) reads as `interrupted`; one of another machine stays `running`, with how to clear it.
Every file is checked when read: it must be a regular file inside the folder (no link, FIFO or device) within
a size cap for its kind, and hold what its kind holds; anything else makes the run `damaged`, with the reason,
never an exception elsewhere. A new run goes only into a new or empty folder, so that no file of a user's is
replaced.
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import UserError
from .parallel import process_start
from .settings import ARCHITECTURE, Settings

METRIC_COLUMNS = ["epoch", "recon_loss", "disc_loss", "gen_loss", "disc_acc", "within_3sd", "seconds"]
STATES = ("running", "done", "failed", "stopped", "interrupted")
OWN_FILES = {"settings.json", "train.log", ".trainer.lock"}  # what the launcher and the lock put in a new run's folder


MB = 1_000_000
CAPS = {"config.json": MB, "status.json": 100_000, "metrics.csv": 50 * MB, "sample.csv": 50 * MB,
        "influence.json": 50 * MB, "selections.json": 50 * MB, "snapshot": 500 * MB, "encodings.parquet": 4000 * MB,
        "model.pt": 8000 * MB,
        "train.log": 10**15}  # the log is only read from its end
"""The largest file of each kind a run may hold (far above what a training writes): a larger one is damage."""


def checked_file(path: Path, cap: int) -> os.stat_result:
    """The stat of a run's file if it is a regular file (not a link, FIFO or device) of at most `cap` bytes;
    else FileNotFoundError or ValueError saying what it is."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise ValueError("it is a link, and a run's files are read only from its own folder")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("it is not a regular file (a pipe, device or folder?)")
    if st.st_size > cap:
        raise ValueError(f"it is {st.st_size / MB:,.0f} MB, over the {cap / MB:,.1f} MB such a file may have")
    return st


def open_checked(path: Path, cap: int):
    """A run's file opened for reading after `checked_file`, never following a link swapped in meanwhile."""
    checked_file(path, cap)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ValueError("it is not a regular file")
    return f


def read_checked(path: Path, cap: int) -> bytes:
    with open_checked(path, cap) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"it grew past the {cap / MB:,.1f} MB such a file may have")
    return data


def read_json(path: Path, cap: int):
    """A JSON file checked as above; nesting too deep to parse is a ValueError like any other damage."""
    data = read_checked(path, cap)
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("it is nested too deeply to be a file of this tool") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to path so that readers see either the old file or the whole new one."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder where a file belongs; move it away")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"not enough space to write {path} (needs {len(data) / MB:,.1f} MB): free some "
                            "space there") from None
        raise


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=str).encode())


def run_name(name: str) -> str:
    """A new run's name, checked: one folder name that any file system takes (no slash, NUL or leading dot,
    at most 200 bytes)."""
    name = str(name).strip()
    if not name or any(c in name for c in "/\\\0") or name.startswith(".") or not name.isprintable():
        raise UserError("a run name may not be empty or hold slashes, control characters or a leading dot")
    if len(name.encode()) > 200:
        raise UserError(f"the run name is {len(name.encode())} bytes long: at most 200 (about 200 letters)")
    return name


class Run:
    """One training run's folder."""

    def __init__(self, path: str | os.PathLike):
        if not str(path).strip():
            raise UserError("the run folder is empty: give the path of a new folder or of a run")
        self.dir = Path(path).expanduser()

    config_path = property(lambda self: self.dir / "config.json")
    status_path = property(lambda self: self.dir / "status.json")
    metrics_path = property(lambda self: self.dir / "metrics.csv")
    model_path = property(lambda self: self.dir / "model.pt")
    snapshots_dir = property(lambda self: self.dir / "snapshots")
    encodings_path = property(lambda self: self.dir / "encodings.parquet")
    stop_path = property(lambda self: self.dir / "STOP")

    @property
    def name(self) -> str:
        return self.dir.name

    def exists(self) -> bool:
        return os.path.lexists(self.config_path)

    def require(self) -> "Run":
        if not self.exists():
            raise UserError(f"no run found at {self.dir} (it has no config.json)")
        return self

    def never_checkpointed(self) -> bool:
        """A run that ended (failed, or was killed) before its first checkpoint: a new run may take its place
        (and its name)."""
        return (self.exists() and not os.path.lexists(self.model_path)
                and self.status().get("state") in ("failed", "interrupted", "stopped", "damaged"))

    def check_new(self) -> None:
        """Refuse to start a new run here unless the folder is new, empty but for what the launcher wrote,
        or a run that ended before its first checkpoint."""
        if self.never_checkpointed():
            return
        if self.exists():
            raise UserError(f"{self.dir} already holds a run; resume it (--resume) or choose another folder")
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"{self.dir} is a file, not a folder; choose a new folder for the run")
        if self.dir.is_dir():
            others = sorted(set(os.listdir(self.dir)) - OWN_FILES)
            if others:
                raise UserError(f"{self.dir} is not empty and not a run (it holds {', '.join(others[:3])}"
                                f"{', ...' if len(others) > 3 else ''}); choose a new or empty folder, so that "
                                "none of its files is replaced")

    def remove_if_unused(self) -> None:
        """Remove the run's folder where it holds nothing but what a launch puts in a new one (`OWN_FILES`)."""
        try:
            if self.dir.is_dir() and not self.dir.is_symlink() and set(os.listdir(self.dir)) <= OWN_FILES:
                shutil.rmtree(self.dir)
        except OSError:
            pass  # left as it is: a later launch into it is still accepted

    # config and status ---------------------------------------------------------------------------
    def config(self) -> dict:
        """config.json, checked: an object with valid settings and an absolute dataset path."""
        try:
            cfg = read_json(self.require().config_path, CAPS["config.json"])
        except (OSError, ValueError) as e:
            raise UserError(f"run {self.name} is damaged: its config.json cannot be read ({e})") from None
        why = _config_problem(cfg)
        if why:
            raise UserError(f"run {self.name} is damaged: its config.json {why}")
        return cfg

    def write_config(self, config: dict) -> None:
        if not self.exists():
            self.check_new()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, config)

    def status(self) -> dict:
        """The run's status; `running` with a dead process (or another boot) becomes `interrupted`;
        a damaged status.json reads as `damaged` (a new status replaces it)."""
        try:
            st = read_json(self.status_path, CAPS["status.json"])
        except FileNotFoundError:
            return {"state": "interrupted" if self.exists() else "missing", "epoch": 0, "message": ""}
        except (OSError, ValueError) as e:
            return _damaged(f"its status.json cannot be read ({e})")
        why = _status_problem(st)
        if why:
            return _damaged(f"its status.json {why}")
        if st.get("state") != "running":
            return st
        from . import jobs  # which imports this module
        if st.get("host", socket.gethostname()) != socket.gethostname():
            st["message"] = (f"{st.get('message', '')} (training on {st['host']}, pid {st.get('pid')}: this machine "
                             f"cannot check it; if nothing trains it there any more: {self.clear_command})").strip()
        elif why := jobs.trainer_gone(st):
            st.update(state="interrupted", message=why)
        return st

    @property
    def clear_command(self) -> str:
        return f"python -m core clear-status --run-dir {self.dir}"

    def require_idle(self) -> None:
        """Refuse to train a run that another process trains (or may train, on another machine)."""
        st = self.status() if self.exists() else {}
        if st.get("state") == "running":
            host = st.get("host", socket.gethostname())
            where = "on this machine: stop it first" if host == socket.gethostname() else (
                f"on {host}, which this machine cannot check; if nothing trains it there any more: {self.clear_command}")
            raise UserError(f"run {self.name} is already training (pid {st.get('pid')}) {where}")

    def clear_running(self) -> str:
        """Mark a `running` status that no live process of this machine stands behind as interrupted."""
        st = self.status()
        if st["state"] != "running":
            return f"run {self.name} is not marked as training ({st['state']}): nothing to clear"
        if st.get("host", socket.gethostname()) == socket.gethostname():
            raise UserError(f"run {self.name} is training in process {st.get('pid')} on this machine: stop it first")
        self.set_status("interrupted", message=f"marked as interrupted by hand (it was training on {st['host']}, "
                                               f"pid {st.get('pid')}); resume continues it")
        return f"run {self.name} is now marked as interrupted; resume continues it"

    def set_status(self, state: str, **fields) -> dict:
        assert state in STATES
        try:
            st = read_json(self.status_path, CAPS["status.json"])
        except (OSError, ValueError):
            st = {}
        st = st if isinstance(st, dict) and not _status_problem(st) else {}
        now = time.time()
        st.update(fields, state=state, updated=now)
        if state == "running":
            st.update(pid=os.getpid(), pid_start=process_start(os.getpid()), host=socket.gethostname())
            st.setdefault("started", now)
            st.pop("finished", None)
        else:
            st["finished"] = now
        write_json(self.status_path, st)
        return st

    def is_active(self) -> bool:
        return self.status().get("state") == "running"

    # metrics -----------------------------------------------------------------------------------
    def metrics(self) -> pd.DataFrame:
        """One row per epoch; empty if there are none yet or metrics.csv is damaged (see `problem`)."""
        return self._metrics()[0]

    def _metrics(self) -> tuple[pd.DataFrame, str | None]:
        empty = pd.DataFrame(columns=METRIC_COLUMNS)
        if not self.metrics_path.exists() and not self.metrics_path.is_symlink():
            return empty, None
        try:
            m = pd.read_csv(io.BytesIO(read_checked(self.metrics_path, CAPS["metrics.csv"])))
        except pd.errors.EmptyDataError:
            return empty, None
        except (OSError, ValueError, UnicodeError, pd.errors.ParserError) as e:
            return empty, f"its metrics.csv cannot be read ({str(e).splitlines()[0]})"
        missing = [c for c in METRIC_COLUMNS if c not in m]
        if missing:
            return empty, f"its metrics.csv lacks the column(s) {', '.join(missing)}"
        numbers = m[METRIC_COLUMNS].apply(pd.to_numeric, errors="coerce")
        if numbers["epoch"].isna().any() or (len(m) and numbers.isna().all(axis=None)):
            return empty, "its metrics.csv holds rows that are not numbers"
        epoch = numbers["epoch"].to_numpy(float)
        if not (np.isfinite(epoch) & (epoch >= 0) & (epoch < 2**31) & (epoch == np.round(epoch))).all():
            return empty, "its metrics.csv has an epoch that is not a whole number"
        return m.assign(**numbers.replace([np.inf, -np.inf], np.nan)), None

    def write_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.csv with these rows (one per epoch), atomically."""
        buf = io.StringIO()
        pd.DataFrame(rows, columns=_columns(rows)).to_csv(buf, index=False)
        atomic_write(self.metrics_path, buf.getvalue().encode())

    def drop_snapshots(self) -> int:
        """Remove the latent snapshots (they show another sample); how many there were. A link planted as the
        snapshots folder is removed itself, never what it points to."""
        if self.snapshots_dir.is_symlink():
            self.snapshots_dir.unlink()
        found = list(self.snapshots_dir.glob("epoch_*.npy")) if self.snapshots_dir.is_dir() else []
        for f in found:
            f.unlink(missing_ok=True)
        return len(found)

    def remove_run_files(self) -> None:
        """What a run that ended before its first checkpoint left (a new run takes its place)."""
        self.drop_snapshots()
        for f in (self.metrics_path, self.status_path, self.encodings_path, self.dir / "influence.json"):
            f.unlink(missing_ok=True)

    def remove_partial_files(self) -> None:
        """Temporary files of a process killed while writing (never read: every write is a rename)."""
        for f in [*self.dir.glob(".*.tmp"), *self.snapshots_dir.glob(".*.tmp")]:
            f.unlink(missing_ok=True)

    # stop requests -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        atomic_write(self.stop_path, b"")  # a new file: a link planted as STOP is replaced, never followed

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    # checkpoint --------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.model_path, buf.getbuffer())

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict:
        """Load model.pt with weights_only=True: a checkpoint carrying code is refused, never run."""
        if not self.model_path.is_file():
            raise UserError(f"run {self.name} has no checkpoint yet (model.pt)")
        try:
            with open_checked(self.model_path, CAPS["model.pt"]) as f:
                ckpt = torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:  # PyTorch's own message advises loading it unsafely: never pass that on
            raise UserError(f"refused to load {self.model_path}: it holds more than weights (possibly code), so "
                            "it is not loaded. Use only checkpoints this tool wrote.") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise UserError(f"{self.model_path} is damaged and cannot be loaded ({str(e).splitlines()[0]})") from None
        if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict)
                and isinstance(ckpt.get("settings"), dict)):
            raise UserError(f"{self.model_path} is not a checkpoint of this tool")
        mine = self.config()["effective"]
        differ = [k for k in ARCHITECTURE if k in mine and k in ckpt["settings"] and mine[k] != ckpt["settings"][k]]
        if differ:
            raise UserError(f"{self.model_path} does not match this run's settings ({differ[0].replace('_', ' ')}: "
                            f"{ckpt['settings'][differ[0]]!r} in the checkpoint, {mine[differ[0]]!r} in config.json)")
        return ckpt

    # snapshots ---------------------------------------------------------------------------------
    def save_snapshot(self, epoch: int, codes: np.ndarray) -> None:
        self.snapshots_dir.mkdir(exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, codes.astype(np.float32))
        atomic_write(self.snapshots_dir / f"epoch_{epoch:04d}.npy", buf.getvalue())

    def snapshots(self, mmap_mode: str | None = None) -> dict[int, np.ndarray]:
        """Latent codes of the fixed sample by epoch; rows match `snapshot_sample()`. Damaged files are left
        out (see `problem`)."""
        return self._snapshots(mmap_mode)[0]

    def _snapshots(self, mmap_mode: str | None = None) -> tuple[dict[int, np.ndarray], str | None]:
        out, bad, rows = {}, [], len(self.snapshot_sample())
        if self.snapshots_dir.is_symlink() or self.snapshots_dir.exists() and not self.snapshots_dir.is_dir():
            return out, "its snapshots folder is a link or not a folder"
        for f in sorted(self.snapshots_dir.glob("epoch_*.npy")):
            try:
                checked_file(f, CAPS["snapshot"])
                a = np.load(f, mmap_mode=mmap_mode, allow_pickle=False)
                if a.ndim == 2 and a.shape[0] == rows and a.shape[1] >= 1 and a.dtype.kind == "f":
                    out[int(f.stem.split("_")[1])] = a
                    continue
            except (OSError, ValueError, EOFError):
                pass
            bad.append(f.name)
        return out, f"its snapshot(s) {', '.join(bad[:3])} are damaged" if bad else None

    def snapshot_sample(self) -> pd.DataFrame:
        """The figurines every snapshot shows (path, culture, site); empty if none or damaged."""
        f = self.snapshots_dir / "sample.csv"
        if self.snapshots_dir.is_symlink():
            return pd.DataFrame()
        try:
            sample = pd.read_csv(io.BytesIO(read_checked(f, CAPS["sample.csv"])), keep_default_na=False, dtype=str)
        except (OSError, ValueError, UnicodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return pd.DataFrame()
        return sample if {"path", "culture", "site"} <= set(sample) else pd.DataFrame()

    # checks ------------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this run is damaged (the first damaged file found), or None."""
        try:
            self.config()
        except UserError as e:
            return str(e).split(": ", 1)[-1]
        st = self.status()
        if st["state"] == "damaged":
            return st["message"]
        for f in ("train.log", "settings.json", "model.pt"):  # read elsewhere: never through a link
            if os.path.lexists(self.dir / f):
                try:
                    checked_file(self.dir / f, CAPS.get(f, MB))
                except (OSError, ValueError) as e:
                    return f"its {f} cannot be read ({e})"
        sample = self.snapshots_dir / "sample.csv"
        if (sample.exists() or sample.is_symlink()) and self.snapshot_sample().empty:
            return "its snapshots/sample.csv is damaged"
        return self._metrics()[1] or self._snapshots("r")[1]


def _columns(rows: list[dict]) -> list[str]:
    extra = [k for r in rows for k in r if k not in METRIC_COLUMNS]
    return METRIC_COLUMNS + list(dict.fromkeys(extra))


def _damaged(why: str) -> dict:
    return {"state": "damaged", "epoch": 0, "message": why}


def _status_problem(st) -> str | None:
    if not isinstance(st, dict):
        return "is not a JSON object"
    if st.get("state") not in STATES:
        return f"has an unknown state {str(st.get('state'))[:40]!r}"
    for key in ("epoch", "epochs", "pid"):
        v = st.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31:
            return f"has a {key} that is not a whole number: {str(v)[:40]!r}"
    if not all(isinstance(st.get(k, ""), str) for k in ("message", "host", "note", "device")):
        return "has a message, note, device or host name that is not text"
    if isinstance(st.get("updated", 0), bool) or not isinstance(st.get("updated", 0), (int, float)):
        return f"has an update time that is not a number: {str(st.get('updated'))[:40]!r}"
    return None


def _config_problem(cfg) -> str | None:
    if not isinstance(cfg, dict):
        return "is not a JSON object"
    for key in ("settings", "effective"):
        if not isinstance(cfg.get(key), dict):
            return f"has no {key!r} object"
        try:
            Settings.from_dict(cfg[key])
        except UserError as e:
            return f"has invalid {key}: {e}"
    data = cfg.get("data")
    if not isinstance(data, str) or not data:
        return "has no dataset path ('data')"
    if not Path(data).is_absolute() or ".." in Path(data).parts:
        return f"has a dataset path that is not absolute or uses '..': {data}"
    return None


def _runs(root: str | os.PathLike) -> list[Run]:
    root = Path(root)
    runs = [Run(p) for p in root.iterdir() if os.path.lexists(p / "config.json")] if root.is_dir() else []
    return sorted(runs, key=lambda r: r.config_path.lstat().st_mtime, reverse=True)


def checked_runs(root: str | os.PathLike) -> list[tuple[Run, str | None]]:
    """Every run under a folder, newest first, with why it is damaged (None: sound); each run read once."""
    return [(r, r.problem()) for r in _runs(root)]


def list_runs(root: str | os.PathLike) -> list[Run]:
    """The runs under a folder that are not damaged, newest first."""
    return [r for r, why in checked_runs(root) if why is None]


def damaged_runs(root: str | os.PathLike) -> list[tuple[Run, str]]:
    """The damaged runs under a folder, each with the reason."""
    return [(r, why) for r, why in checked_runs(root) if why is not None]
