"""Training: the reference study's three steps per batch, made to converge, resumable and stoppable.

Per batch: 1) encoder + decoder on the reconstruction MSE; 2) the discriminator learns prior samples
(real) from codes (fake); 3) the encoder, as generator, learns to fool the frozen discriminator.
Everything stays on the device within an epoch; metrics are read once at its end.
"""
from __future__ import annotations

import math
import platform
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import labels, locks
from .errors import UserError
from .model import FIGURE_LEVEL, AAEModel, head_cost
from .runs import Run, atomic_write
from .settings import Settings

OnBatch = Callable[[int, int, int], None]   # (epoch, batch, n_batches)
OnEpoch = Callable[[dict], None]            # the epoch's metric row
AMP_DEVICES = ("cuda",)  # bf16 autocast where it pays; on CPUs without bf16 units it is slower
SEEN_BYTES = 2 << 30  # the most memory that the normalised images may take to be computed once (see train)


class TrainingFailed(Exception):
    """The run diverged (NaN or inf loss); its last good checkpoint is kept."""


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is missing is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but no CUDA GPU is available here; use --device auto or cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps was asked for, but Apple MPS is not available here")
    return dev


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "Apple MPS" if dev.type == "mps" else f"CPU ({platform.processor() or platform.machine()})"


def _batches(n: int, labels: np.ndarray | None, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """One epoch's image order: a permutation, or with labels a class-balanced draw (with replacement)."""
    if labels is None:
        return torch.randperm(n, generator=g)
    counts = np.bincount(labels)
    w = torch.as_tensor(1.0 / counts[labels], dtype=torch.float64)
    return torch.multinomial(w, n, replacement=True, generator=g)


# How far `augmented` varies each view: mirror, scale, rotation and shift of the framing, one hidden patch;
# on colour, also brightness, contrast and saturation of the figure (the form style standardises them away).
AUGMENT = dict(scale=1.15, degrees=10.0, shift=0.08, area=(0.05, 0.25), brightness=0.1, contrast=1.25,
               saturation=1.3)


def augmented(x: torch.Tensor, g: torch.Generator, colour: bool = False) -> torch.Tensor:
    """Normalised images (n, 3, H, W) as a differently taken photograph might show them, each at random:
    mirrored (p 1/2), rescaled (1/1.15 to 1.15), rotated (up to 10 degrees) and shifted (up to 8% of the
    side), with neutral background filling what comes into view; one rectangle (5-25% of the image, aspect
    1:2 to 2:1) set to the background, so that no single part, such as a base or a head, decides the code
    alone (random erasing, Zhong et al. 2017); with `colour`, the figure's brightness, contrast and
    saturation varied too. Computed on x's device, in one pass for the whole batch."""
    a = AUGMENT
    n, _, h, w = x.shape
    u = torch.rand(12, n, device=x.device, generator=g) * 2 - 1  # uniform in [-1, 1]
    if colour:
        fig = x.abs().sum(1, keepdim=True) > FIGURE_LEVEL
        lum = x.mean(1, keepdim=True)
        sat = a["saturation"] ** u[0]
        con = a["contrast"] ** u[1]
        x = torch.where(fig, ((lum + sat[:, None, None, None] * (x - lum)) * con[:, None, None, None]
                              + a["brightness"] * u[2, :, None, None, None]).clamp(-1, 1), x)
    # the affine map from each output pixel to where it is read in x (grid coordinates in [-1, 1])
    inv = a["scale"] ** -u[3]
    ang = u[4] * math.radians(a["degrees"])
    flip = torch.where(u[5] < 0, -1.0, 1.0)
    cos, sin = ang.cos() * inv, ang.sin() * inv
    theta = torch.stack([torch.stack([cos * flip, -sin, 2 * a["shift"] * u[6]], 1),
                         torch.stack([sin * flip, cos, 2 * a["shift"] * u[7]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), [n, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    area = a["area"][0] + (a["area"][1] - a["area"][0]) * (u[8] + 1) / 2
    r = torch.exp(u[9] * math.log(2))
    bh, bw = (area * r).sqrt().clamp(max=1) * h, (area / r).sqrt().clamp(max=1) * w
    top, left = (u[10] + 1) / 2 * (h - bh), (u[11] + 1) / 2 * (w - bw)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + bh)[:, None, None])
           & (xs >= left[:, None, None]) & (xs < (left + bw)[:, None, None]))
    return x.masked_fill(box[:, None], 0.0)


# The neighbourhood term (`Settings.neighbours`): each code is drawn toward one of its figurine's K nearest
# neighbours in the PCA space of the model's inputs, and NEGATIVES other codes of the batch are kept further
# away than it by (KERNEL prior sd)^2 in squared distance (a margin, so nothing is pushed out of the prior), from
# epoch AFTER + 1 on, once the codes match the prior; the first SHARE of each batch (in random order) stands for
# it, which spares a quarter of the neighbours' encoder pass (so the fast preset keeps to its 3 minutes).
NEIGHBOURS = dict(k=15, pca=50, fit_rows=5000, weight=0.2, kernel=0.5, negatives=5, after=5, share=0.75)


@torch.no_grad()
def neighbour_graph(view: Callable[[torch.Tensor], torch.Tensor], n: int, seed: int,
                    batch_size: int = 500) -> torch.Tensor:
    """(n, K) indices of each image's nearest neighbours (itself left out) in the PCA space of what the model
    sees (`view(rows)`: the normalised images at `rows`); the PCA fitted on at most `fit_rows` drawn at random."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    def flat(rows: torch.Tensor) -> np.ndarray:
        return np.concatenate([view(rows[i:i + batch_size]).flatten(1).float().cpu().numpy()
                               for i in range(0, len(rows), batch_size)])

    a = NEIGHBOURS
    fit = flat(torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(n)[:a["fit_rows"]])))
    pca = PCA(min(a["pca"], len(fit) - 1, fit.shape[1]), random_state=seed).fit(fit)
    pcs = np.concatenate([pca.transform(flat(torch.arange(i, min(i + batch_size, n))))
                          for i in range(0, n, batch_size)])
    k = min(a["k"], len(pcs) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(pcs).kneighbors(pcs)[1]
    # drop each image itself (not always listed first: a duplicate photograph is as near)
    not_self = np.argsort(idx == np.arange(len(idx))[:, None], axis=1, kind="stable")
    return torch.from_numpy(np.take_along_axis(idx, not_self, 1)[:, :k].copy())


def neighbour_cost(z: torch.Tensor, z_near: torch.Tensor) -> torch.Tensor:
    """The margin cost of codes (in prior sds) against their neighbours' codes and other codes of the batch."""
    a = NEIGHBOURS
    d_near = ((z - z_near) ** 2).sum(1) / a["kernel"] ** 2
    d_other = torch.stack([((z - z.roll(r, 0)) ** 2).sum(1) for r in range(1, a["negatives"] + 1)]) / a["kernel"] ** 2
    return a["weight"] * F.relu(d_near[None] - d_other + 1.0).mean()


def snapshot_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The fixed random sample of rows that every latent snapshot of a run shows."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(size, n)])


def normalised_batches(model: AAEModel, images, batch_size: int = 500):
    """uint8 images (array, memory map or tensor) in normalised batches on the model's device."""
    dev = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        b = images[i:i + batch_size]
        yield model.normalise((b if torch.is_tensor(b) else torch.from_numpy(np.array(b))).to(dev))


@torch.no_grad()
def encode(model: AAEModel, images, batch_size: int = 500, style: bool = False):
    """Codes of uint8 images (n, H, W, 3), in batches, on the model's device: their place on the map; with
    `style`, (place, style code) from the same pass (the two are the same for a model without clusters)."""
    was_training = model.training
    model.eval()
    places, styles = [], []
    for x in normalised_batches(model, images, batch_size):
        logits, z = model.parts(x)
        places.append(model.place(logits, z).float().cpu())
        styles.append(z.float().cpu())
    model.train(was_training)
    empty = np.zeros((0, model.settings.latent_dim), np.float32)
    place, z = (torch.cat(places).numpy(), torch.cat(styles).numpy()) if places else (empty, empty)
    return (place, z) if style else place


@dataclass
class Trained:
    model: AAEModel
    history: pd.DataFrame
    state: str  # done or stopped


class _StopFlag:
    """Set by SIGTERM (when training runs in the main thread) or by the run's STOP file."""

    def __init__(self, run: Run | None):
        self.run, self.flag, self.old = run, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "flag", True))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)

    def __bool__(self) -> bool:
        return self.flag or (self.run is not None and self.run.stop_requested())


def train(settings: Settings, images: np.ndarray, labels: np.ndarray | None = None, run: Run | None = None,
          resume: bool = False, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
          guide: np.ndarray | None = None, local: np.ndarray | None = None) -> Trained:
    """Train an AAE on uint8 images (n, H, W, 3). With `run`, write metrics, snapshots and checkpoints.

    `labels` (integer culture codes) are needed for `balanced` sampling; `guide` (each image's prior
    component, -1 where its label is not to be seen; see labels.guide) for a `guided` run; `local` (whether
    each image is of the target culture) for a `local` run.
    """
    s = settings.effective()
    n = len(images)
    if n < 2:
        raise UserError(f"training needs at least 2 readable images, got {n}")
    if images.shape[1:] != (s.image_size, s.image_size, 3):
        raise UserError(f"images are {images.shape[1]} px but the settings say {s.image_size} px")
    if s.balanced and labels is None:
        raise UserError("balanced sampling needs the images' culture labels")
    if s.local and (local is None or len(local) != n):
        raise UserError("a local run needs to know which images are of the target culture (fit_run sets it)")
    slots = s.clusters or (s.prior_components if s.prior == "mixture" else 0)
    if s.guided and (not slots or guide is None or len(guide) != n or guide.max() >= slots):
        raise UserError("a guided run needs clusters or the mixture prior, and each image's source index below "
                        "their number (fit_run sets both from the dataset)")
    dev = pick_device(s.device)
    torch.manual_seed(s.seed)
    model = AAEModel(s).to(dev)
    fused = dev.type == "cuda"
    critics = [model.discriminator] + ([model.cat_discriminator] if s.clusters else [])
    opt_ae = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters(),
                               *([model.heads] if s.clusters else [])], lr=s.lr, betas=(s.beta1, 0.999), fused=fused)
    opt_d = torch.optim.Adam([p for c in critics for p in c.parameters()], lr=s.disc_lr, betas=(s.adv_beta1, 0.999),
                             fused=fused)
    opt_g = torch.optim.Adam(model.encoder.parameters(), lr=s.gen_lr, betas=(s.adv_beta1, 0.999), fused=fused)
    optimisers = {"ae": opt_ae, "disc": opt_d, "gen": opt_g}
    history: list[dict] = []
    start = 1
    if resume:
        ckpt = run.load_checkpoint(dev)
        model.load_state_dict(ckpt["model"])
        for k, opt in optimisers.items():
            opt.load_state_dict(ckpt["optimisers"][k])
        history = [r for r in ckpt["history"] if r["epoch"] <= ckpt["epoch"]]
        start = ckpt["epoch"] + 1
        run.write_metrics(history)  # drop rows written after the checkpoint: they are trained again
    elif run is not None:
        run.write_metrics([])

    # The data: the whole uint8 set on the device when it fits (a quarter of free memory), else pinned.
    data = torch.from_numpy(np.array(images))  # a copy in memory, off the memory map
    if dev.type == "cuda" and data.nbytes < torch.cuda.mem_get_info(dev)[0] // 4:
        data = data.to(dev)
    elif dev.type == "cuda":
        data = data.pin_memory()
    label_arr = np.asarray(labels) if s.balanced else None
    guide_t = torch.as_tensor(np.asarray(guide), dtype=torch.long).to(data.device) if s.guided else None
    local_t = torch.from_numpy(np.array(local, dtype=bool)).to(data.device) if s.local else None
    sample = torch.as_tensor(snapshot_rows(n, s.snapshot_size, s.seed)).to(data.device)
    # What the model sees of each image does not change (the augmentation comes after it): on a CPU it is
    # computed once, when it fits in SEEN_BYTES, rather than in every step.
    seen = torch.cat(list(normalised_batches(model, data))) if dev.type == "cpu" and data.numel() * 4 <= SEEN_BYTES \
        else None

    def view(rows: torch.Tensor) -> torch.Tensor:
        return seen[rows] if seen is not None else model.normalise(data[rows].to(dev, non_blocking=True))

    near = neighbour_graph(view, n, s.seed).to(data.device) if s.neighbours and n > 2 else None
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type in AMP_DEVICES and s.amp)
    noise = s.disc_noise * s.prior_std
    n_batches = math.ceil(n / s.batch_size)
    state = "done"

    def checkpoint(epoch: int) -> None:
        if run is not None:
            run.save_checkpoint({"model": model.state_dict(), "epoch": epoch, "history": history,
                                 "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                                 "settings": s.to_dict()})

    with _StopFlag(run) as stop:
        for epoch in range(start, s.epochs + 1):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch)  # the same order after a resume
            g_dev = torch.Generator(dev).manual_seed(s.seed * 1_000_003 + epoch)
            order = _batches(n, label_arr, s.batch_size, g).to(data.device)
            sums = torch.zeros(6, device=dev)
            for b in range(n_batches):
                idx = order[b * s.batch_size:(b + 1) * s.batch_size]
                x = view(idx)
                m = len(idx)
                lab = guide_t[idx].to(dev, non_blocking=True) if s.guided else None
                # what the encoder sees; the decoder draws x as photographed
                x_in = augmented(x, g_dev, colour=s.style == "colour") if s.augment else x
                # 1) reconstruction: encoder + decoder on the MSE (with clusters: the heads kept apart, and
                #    a guided run's labelled images in their source's cluster)
                with amp:
                    logits, z = model.parts(x_in)
                    made = local_t[idx].to(dev, non_blocking=True) if s.local else None  # drawn as a target
                    zz = model.place(logits, z)
                    mse = F.mse_loss(model.decode(zz, made), x)
                    loss_r = mse
                    if near is not None and epoch > NEIGHBOURS["after"] and m > 1:  # a neighbour each, as seen
                        h = max(2, round(m * NEIGHBOURS["share"]))
                        pick = torch.randint(near.shape[1], (h,), generator=g).to(near.device)
                        x_near = view(near[idx[:h], pick])
                        if s.augment:
                            x_near = augmented(x_near, g_dev, colour=s.style == "colour")
                        loss_r = loss_r + neighbour_cost(zz[:h] / model.code_scale,
                                                         model.encode(x_near) / model.code_scale)
                    if s.clusters:
                        loss_r = loss_r + head_cost(model.heads)
                        if s.guided and (lab >= 0).any():
                            loss_r = loss_r + F.cross_entropy(logits[lab >= 0].float(), lab[lab >= 0])
                opt_ae.zero_grad(set_to_none=True)
                loss_r.backward()
                opt_ae.step()
                # 2) discriminator: prior samples are real, the (detached) codes are fake
                with amp:
                    logits, z = model.parts(x_in)
                    real = model.prior.sample(m, g_dev, lab)  # guided mixture: from each labelled image's component
                    eps = noise * torch.randn(2, m, z.shape[1], device=dev, generator=g_dev)  # instance noise
                    d_real = model.discriminate(real + eps[0], lab)
                    d_fake = model.discriminate(z.detach() + eps[1], lab)
                    loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
                    if s.clusters:  # the category: one-hot draws are real, the encoder's softmax is fake
                        y = logits.float().softmax(1)
                        onehot = F.one_hot(torch.randint(s.clusters, (m,), device=dev, generator=g_dev), s.clusters)
                        c_real = model.cat_discriminator(onehot.to(y.dtype)).squeeze(1)
                        c_fake = model.cat_discriminator(y.detach()).squeeze(1)
                        loss_d = loss_d + (F.binary_cross_entropy_with_logits(c_real, torch.ones_like(c_real))
                                           + F.binary_cross_entropy_with_logits(c_fake, torch.zeros_like(c_fake)))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                # 3) generator: the encoder learns to make the frozen discriminators call its codes real
                for c in critics:
                    c.requires_grad_(False)
                with amp:
                    d_gen = model.discriminate(z + eps[1], lab)
                    loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
                    if s.clusters:
                        c_gen = model.cat_discriminator(y).squeeze(1)
                        loss_g = loss_g + F.binary_cross_entropy_with_logits(c_gen, torch.ones_like(c_gen))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                for c in critics:
                    c.requires_grad_(True)

                with torch.no_grad():
                    acc = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
                    inside = (z.detach().float().norm(dim=1) <= 3 * s.prior_std).float().mean()
                    sums += torch.stack([mse.detach(), (loss_r - mse).detach(), loss_d.detach(), loss_g.detach(),
                                         acc, inside]).float()
                if on_batch:
                    on_batch(epoch, b + 1, n_batches)
                if stop:
                    state = "stopped"
                    break
            if state == "stopped":  # keep this epoch's training, but not as a finished epoch
                checkpoint(epoch - 1)
                break
            vals = (sums / n_batches).tolist()  # the only host synchronisation of the epoch
            # recon_loss is the MSE alone; map_loss the costs on the map beside it (neighbours, heads, guided labels)
            row = dict(zip(["recon_loss", "map_loss", "disc_loss", "gen_loss", "disc_acc", "within_3sd"], vals))
            row.update(epoch=epoch, seconds=time.perf_counter() - t0)
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad:
                kept = ("the last good checkpoint is kept" if run is not None and run.model_path.is_file()
                        else "no checkpoint had been written yet")
                raise TrainingFailed(f"{bad[0]} became {row[bad[0]]} in epoch {epoch}: training diverged; "
                                     f"{kept}. Try lower learning rates.")
            history.append(row)
            if run is not None:
                run.write_metrics(history)
                if epoch % s.snapshot_every == 0 or epoch == s.epochs or epoch == 1:
                    run.save_snapshot(epoch, encode(model, data[sample]))
                if epoch % s.checkpoint_every == 0 or epoch == s.epochs:
                    checkpoint(epoch)
                run.set_status("running", epoch=epoch, epochs=s.epochs,
                               message=f"epoch {epoch} of {s.epochs}")
            if on_epoch:
                on_epoch(row)
    model.eval()
    return Trained(model, pd.DataFrame(history), state)


def versions() -> dict:
    """Library versions, recorded in every run's config.json."""
    from importlib.metadata import version

    libs = ("torch", "numpy", "pillow", "scikit-learn", "umap-learn")
    return {"python": platform.python_version(), **{lib: version(lib) for lib in libs}}


def fit_run(run_dir: str, settings: Settings | None = None, data_root: str | None = None, resume: bool = False,
            overrides: dict | None = None, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
            on_decode=None) -> Run:
    """Train on a dataset folder into a run folder: the one entry point of the CLI, the app and the bench.

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


def _fit(run: Run, s: Settings, data_root: str, resume: bool, config: dict, dev: torch.device,
         on_batch: OnBatch | None, on_epoch: OnEpoch | None, on_decode) -> Run:
    from .dataset import load

    ds = load(data_root, s.image_size, s.effective().background, progress=on_decode)
    items = ds.items
    codes = items["culture"].astype("category").cat.codes.to_numpy()
    guide, sources = None, None
    if s.guided:  # one prior component, or with clusters one cluster, per source culture
        guide, sources = labels.guide(items, s.label_holdout, s.seed, config.get("sources") if resume else None)
        if len(sources) < 2 or (np.bincount(guide[guide >= 0], minlength=len(sources)) == 0).any():
            raise UserError("a guided run needs at least two source cultures, each with images whose label it "
                            "may see; train it unguided")
        s = replace(s, clusters=max(s.clusters, len(sources))) if s.clusters else \
            replace(s, prior="mixture", prior_components=len(sources))
    if s.local and not labels.has_target(items):  # no culture is asked about: nothing to tell the decoder
        s = replace(s, local=False)
    sample = items.iloc[snapshot_rows(len(items), s.snapshot_size, s.seed)][["path", "culture", "site"]]
    note = ""
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
                          "versions": versions(), **({"sources": sources} if s.guided else {})})
        run.snapshots_dir.mkdir(exist_ok=True)
        atomic_write(run.snapshots_dir / "sample.csv", sample.to_csv(index=False).encode())
        run.clear_stop()
        run.remove_partial_files()
        run.set_status("running", epoch=0, epochs=s.epochs, message="starting", device=device_name(dev), note=note)
    except OSError as e:
        raise UserError(f"cannot write to the run folder {run.dir}: {e.strerror or e}") from None
    try:
        result = train(s, ds.images, codes, run, resume, on_batch, on_epoch, guide, labels.is_target(items))
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
