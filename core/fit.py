"""`fit_run`: train on a dataset folder into a run folder, the one entry point of the CLI, the app and the bench."""
from __future__ import annotations

import platform
from contextlib import ExitStack

import numpy as np

from . import locks
from .devices import device_name, pick_device
from .errors import UserError
from .runlog import TrainingFailed, snapshot_rows
from .runs import Run, atomic_write
from .settings import Settings
from .train import OnBatch, OnEpoch, train


def versions() -> dict:
    """Library versions, recorded in every run's config.json."""
    from importlib.metadata import version

    libs = ("torch", "numpy", "pillow", "scikit-learn", "umap-learn")
    return {"python": platform.python_version(), **{lib: version(lib) for lib in libs}}


def _looks(ds, progress) -> np.ndarray:
    """Each figurine in the descriptor space the Influence page reads in (its cached descriptors, standardised and
    projected on components fitted to the source figurines, so that local making gets no axis), rows as
    `ds.items`."""
    import pandas as pd

    from .dataset import load
    from .descriptors import describe
    from .influence import InfluenceSettings, descriptor_of
    from .labels import target_culture
    from .neighbours import descriptor_looks

    read = InfluenceSettings()
    d = descriptor_of(read)
    at = load(ds.root, d.image_size, read.background, progress=progress)
    x = describe(at, d)[pd.Index(at.items["path"]).get_indexer(ds.items["path"])]
    is_source = (ds.items["culture"] != target_culture(ds.items["culture"], ds.items["site"])).to_numpy()
    return descriptor_looks(x, is_source)


def fit_run(run_dir: str, settings: Settings | None = None, data_root: str | None = None, resume: bool = False,
            overrides: dict | None = None, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
            on_decode=None) -> Run:
    """Train on a dataset folder into a run folder.

    A new run needs `settings` and `data_root`; `resume` continues a run from its last checkpoint with
    its own settings and data, changed only by `overrides` (say, more epochs or another device). The run
    folder's lock and the device's lock are held throughout: a second trainer of either is refused.
    """
    run = Run(run_dir)
    if not resume:
        run.check_new()  # before anything is written into a folder that may be a user's own
    try:
        run.dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to the run folder {run.dir}: {e.strerror or e}") from None
    with ExitStack() as held:
        held.enter_context(locks.hold(locks.run_lock(run.dir), run.dir,
                                      f"run {run.name} is already being trained by {{holder}}"))
        if resume:
            config = run.config()
            run.require_idle()  # a trainer on another machine, which no lock here can see
            if why := run.problem():
                raise UserError(f"run {run.name} is damaged, so it is not resumed: {why}")
            if not run.model_path.is_file():
                raise UserError(f"run {run.name} has no checkpoint to resume from: it ended before its first one. "
                                "Start it again as a new run (the same name may be used).")
            s = Settings.from_run({**config["settings"], **(overrides or {})})
            data_root = config["data"]
        else:
            run.check_new()  # again, now that no other trainer can write here
            config, s = {}, settings
        dev = pick_device(s.device)
        held.enter_context(locks.hold(locks.device_lock(dev.type), run.dir,
                                      f"the {dev.type} is busy: {{holder}} is training on it; wait for it or stop "
                                      "it first (one training at a time per device)"))
        return _fit(run, s, data_root, resume, config, dev, on_batch, on_epoch, on_decode)


def _fit(run: Run, s: Settings, data_root: str, resume: bool, config: dict, dev, on_batch: OnBatch | None,
         on_epoch: OnEpoch | None, on_decode) -> Run:
    from .dataset import load
    from .labels import doubts

    ds = load(data_root, s.image_size, s.effective().background, progress=on_decode)
    plan = s.resolve(ds.items, config.get("sources") if resume else None)
    s, items = plan.settings, ds.items
    sample = items.iloc[snapshot_rows(len(items), s.snapshot_size, s.seed)][["path", "culture", "site"]]
    note = "" if resume else " ".join(doubts(items))  # said while it trains, on the Train page and the command line
    try:
        if not resume:
            run.remove_run_files()  # of a run that ended before its first checkpoint, which this one replaces
        elif (stored := run.snapshot_sample()).empty or \
                sample.astype(str).values.tolist() != stored[["path", "culture", "site"]].values.tolist():
            dropped = run.drop_snapshots()  # they show another sample: the dataset changed since
            note = dropped and (f"the dataset changed since this run began ({ds.root}): its {dropped} earlier latent "
                    "snapshot(s) showed other figurines and were dropped; snapshots start again from here") or ""
        run.write_config({"settings": s.to_dict(), "effective": s.effective().to_dict(), "data": ds.root,
                          "fingerprint": ds.fingerprint, "images": len(items), "device": device_name(dev),
                          "versions": versions(), **({"sources": plan.sources} if s.guided else {})})
        run.snapshots_dir.mkdir(exist_ok=True)
        atomic_write(run.snapshots_dir / "sample.csv", sample.to_csv(index=False).encode())
        run.clear_stop()
        run.remove_partial_files()
        run.set_status("running", epoch=0, epochs=s.epochs, message="starting", device=device_name(dev), note=note)
    except OSError as e:
        raise UserError(f"cannot write to the run folder {run.dir}: {e.strerror or e}") from None
    try:
        looks = _looks(ds, on_decode) if s.neighbours and s.looks == "descriptors" else None
        result = train(s, ds.images, plan.cultures, run, resume, on_batch, on_epoch, plan.guide, plan.local, looks)
    except (TrainingFailed, UserError) as e:
        run.set_status("failed", message=str(e))
        raise
    except OSError as e:  # a full disk or a folder that became unwritable
        msg = f"cannot write to the run folder {run.dir}: {e.strerror or e}"
        try:
            run.set_status("failed", message=msg)
        finally:
            raise UserError(msg) from None
    except KeyboardInterrupt:
        run.set_status("interrupted", message="interrupted from the keyboard; resume continues it")
        raise
    except BaseException as e:
        run.set_status("failed", message=f"{type(e).__name__}: {e}")
        raise
    epoch = int(result.history["epoch"].max()) if len(result.history) else 0
    if result.state == "stopped":
        run.set_status("stopped", epoch=epoch, message=f"stopped by request after epoch {epoch}; resume continues it")
    else:
        run.set_status("done", epoch=epoch, message=f"finished {epoch} epochs")
    run.clear_stop()
    return run
