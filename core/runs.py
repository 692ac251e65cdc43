"""The run folder: the only thing the CLI, the background trainer and the app share.

`config.json`, `status.json`, `metrics.csv`, `snapshots/`, `model.pt`, `encodings.parquet` (see
DESIGN.md). Every file is written atomically (a temporary file, then a rename), so a reader never sees
half a file and a crash never leaves one. A `running` status whose process is gone reads as `interrupted`.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import UserError

METRIC_COLUMNS = ["epoch", "recon_loss", "disc_loss", "gen_loss", "disc_acc", "within_3sd", "seconds"]
STATES = ("running", "done", "failed", "stopped", "interrupted")


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to path so that readers see either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=str).encode())


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a live trainer from a reused pid); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return ""
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""


class Run:
    """One training run's folder."""

    def __init__(self, path: str | os.PathLike):
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
        return self.config_path.is_file()

    def require(self) -> "Run":
        if not self.exists():
            raise UserError(f"no run found at {self.dir} (it has no config.json)")
        return self

    # config and status ---------------------------------------------------------------------------
    def config(self) -> dict:
        try:
            return json.loads(self.require().config_path.read_text())
        except ValueError as e:
            raise UserError(f"{self.config_path} is damaged: {e}") from None

    def write_config(self, config: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, config)

    def status(self) -> dict:
        """The run's status; `running` with a dead process (or another boot) becomes `interrupted`."""
        try:
            st = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {"state": "interrupted" if self.exists() else "missing", "epoch": 0, "message": ""}
        if st.get("state") == "running" and st.get("host") == socket.gethostname():
            alive = process_start(int(st.get("pid", 0)))
            if alive is None or (alive and st.get("pid_start") and alive != st["pid_start"]):
                st["state"] = "interrupted"
                st["message"] = "the training process ended without finishing (killed or crashed); resume continues it"
        return st

    def set_status(self, state: str, **fields) -> dict:
        assert state in STATES
        try:
            st = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            st = {}
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
        if not self.metrics_path.is_file():
            return pd.DataFrame(columns=METRIC_COLUMNS)
        return pd.read_csv(self.metrics_path, on_bad_lines="skip")

    def write_metrics(self, rows: list[dict]) -> None:
        """Replace metrics.csv with these rows (one per epoch), atomically."""
        buf = io.StringIO()
        pd.DataFrame(rows, columns=_columns(rows)).to_csv(buf, index=False)
        atomic_write(self.metrics_path, buf.getvalue().encode())

    def remove_partial_files(self) -> None:
        """Temporary files of a process killed while writing (never read: every write is a rename)."""
        for f in [*self.dir.glob(".*.tmp"), *self.snapshots_dir.glob(".*.tmp")]:
            f.unlink(missing_ok=True)

    # stop requests -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.stop_path.touch()

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
            return torch.load(self.model_path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise UserError(f"refused to load {self.model_path}: it holds more than weights "
                            f"(possibly code), so it is not loaded ({str(e).splitlines()[0]})") from None
        except (RuntimeError, EOFError, OSError) as e:
            raise UserError(f"{self.model_path} is damaged and cannot be loaded ({e})") from None

    # snapshots ---------------------------------------------------------------------------------
    def save_snapshot(self, epoch: int, codes: np.ndarray) -> None:
        self.snapshots_dir.mkdir(exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, codes.astype(np.float32))
        atomic_write(self.snapshots_dir / f"epoch_{epoch:04d}.npy", buf.getvalue())

    def snapshots(self) -> dict[int, np.ndarray]:
        """Latent codes of the fixed sample by epoch; rows match `snapshot_sample()`."""
        out = {}
        for f in sorted(self.snapshots_dir.glob("epoch_*.npy")):
            out[int(f.stem.split("_")[1])] = np.load(f)
        return out

    def snapshot_sample(self) -> pd.DataFrame:
        f = self.snapshots_dir / "sample.csv"
        return pd.read_csv(f, keep_default_na=False) if f.is_file() else pd.DataFrame()


def _columns(rows: list[dict]) -> list[str]:
    extra = [k for r in rows for k in r if k not in METRIC_COLUMNS]
    return METRIC_COLUMNS + list(dict.fromkeys(extra))


def list_runs(root: str | os.PathLike) -> list[Run]:
    """Runs under a folder, newest first."""
    root = Path(root)
    runs = [Run(p) for p in root.iterdir() if (p / "config.json").is_file()] if root.is_dir() else []
    return sorted(runs, key=lambda r: r.config_path.stat().st_mtime, reverse=True)
