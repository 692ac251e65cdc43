"""A training's bookkeeping: each epoch's metrics, and in a run folder its snapshots, checkpoints and status."""
from __future__ import annotations

import math

import numpy as np
import torch

from .model import AAEModel
from .runs import Run
from .settings import Settings

METRICS = ("recon_loss", "map_loss", "disc_loss", "gen_loss", "disc_acc")
"""Summed over an epoch's batches: recon_loss, the reconstruction's MSE alone; map_loss, the costs on the map beside
it (look-alikes, cluster heads, guided labels); disc_loss and gen_loss, the critic's and the generator's;
disc_acc, how often the critic is right. Beside them each epoch's row has `within_3sd`: the share of the photographs'
own codes (the snapshot sample as taken; a cluster map's offsets from its heads) within 3 prior sd at its end."""


class TrainingFailed(Exception):
    """The run diverged (NaN or inf loss); its last good checkpoint is kept."""


def snapshot_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The fixed random sample of rows that every latent snapshot of a run shows."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(size, n)])


class Tally:
    """An epoch's metrics summed on the device, batch by batch; read back once, at its end."""

    def __init__(self, device: torch.device):
        self.sums, self.batches = torch.zeros(len(METRICS), device=device), 0

    @torch.no_grad()
    def add(self, **values: torch.Tensor) -> None:
        self.sums += torch.stack([values[k].detach() for k in METRICS]).float()
        self.batches += 1

    def means(self) -> dict:
        return dict(zip(METRICS, (self.sums / self.batches).tolist()))  # the only host synchronisation of an epoch


class Log:
    """A training's history (one row per epoch) without a run folder: nothing is written."""

    run: Run | None = None

    def __init__(self, s: Settings):
        self.s, self.history = s, []

    def begin(self, model: AAEModel, optimisers: dict, resume: bool) -> int:
        """The first epoch to train."""
        return 1

    def epoch(self, row: dict, model: AAEModel, optimisers: dict, places: np.ndarray) -> None:
        """Keep the epoch's row (`places`: where the map puts the snapshot sample now); a non-finite metric ends the
        training (TrainingFailed)."""
        bad = [k for k, v in row.items() if not math.isfinite(v)]
        if bad:
            kept = ("the last good checkpoint is kept" if self.run is not None and self.run.model_path.is_file()
                    else "no checkpoint had been written yet")
            raise TrainingFailed(f"{bad[0]} became {row[bad[0]]} in epoch {row['epoch']}: training diverged; "
                                 f"{kept}. Try lower learning rates.")
        self.history.append(row)

    def stopped(self, epoch: int, model: AAEModel, optimisers: dict) -> None:
        """A stop asked for during `epoch`: its training is kept, not as a finished epoch."""


class RunLog(Log):
    """A training's history in its run folder: metrics.csv every epoch, a snapshot of the fixed sample's places and
    a resumable checkpoint on their schedules, and the status."""

    def __init__(self, s: Settings, run: Run):
        super().__init__(s)
        self.run = run

    def begin(self, model: AAEModel, optimisers: dict, resume: bool) -> int:
        """A resumed run's model, optimisers and history from its checkpoint (rows written after it are dropped:
        they are trained again); a new run's empty metrics."""
        if not resume:
            self.run.write_metrics([])
            return 1
        ckpt = self.run.load_checkpoint(next(model.parameters()).device)
        model.load_state_dict(ckpt["model"])
        for k, opt in optimisers.items():
            opt.load_state_dict(ckpt["optimisers"][k])
        self.history = [r for r in ckpt["history"] if r["epoch"] <= ckpt["epoch"]]
        self.run.write_metrics(self.history)
        return ckpt["epoch"] + 1

    def epoch(self, row: dict, model: AAEModel, optimisers: dict, places: np.ndarray) -> None:
        super().epoch(row, model, optimisers, places)
        s, epoch = self.s, row["epoch"]
        self.run.write_metrics(self.history)
        if epoch % s.snapshot_every == 0 or epoch == s.epochs or epoch == 1:
            self.run.save_snapshot(epoch, places)
        if epoch % s.checkpoint_every == 0 or epoch == s.epochs:
            self.checkpoint(epoch, model, optimisers)
        self.run.set_status("running", epoch=epoch, epochs=s.epochs, message=f"epoch {epoch} of {s.epochs}")

    def stopped(self, epoch: int, model: AAEModel, optimisers: dict) -> None:
        self.checkpoint(epoch - 1, model, optimisers)

    def checkpoint(self, epoch: int, model: AAEModel, optimisers: dict) -> None:
        self.run.save_checkpoint({"model": model.state_dict(), "epoch": epoch, "history": self.history,
                                  "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                                  "settings": self.s.to_dict()})
