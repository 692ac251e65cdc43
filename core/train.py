"""Training: the reference study's three steps per batch, made to converge, resumable and stoppable.

Per batch: 1) encoder + decoder on the reconstruction MSE; 2) the discriminator learns prior samples
(real) from codes (fake); 3) the encoder, as generator, learns to fool the frozen discriminator.
Each option (varied views, the look-alike term, the prior's shape, cluster heads, guided labels) is a cost or a
view that is nothing when it is off (see core.model, core.augment, core.neighbours, core.shape), so the loop reads
as the paper.
Everything stays on the device within an epoch; metrics are read once at its end (core.runlog).
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .augment import Augment
from .diagnostics import within_sd
from .devices import pick_device
from .errors import UserError
from .model import AAEModel, encode_images, normalised_batches
from .descriptors import Descriptor, hog
from .neighbours import Neighbours, descriptor_looks
from .runlog import Log, RunLog, Tally, snapshot_rows
from .runs import Run
from .settings import Settings
from .shape import PriorShape

OnBatch = Callable[[int, int, int], None]   # (epoch, batch, n_batches)
OnEpoch = Callable[[dict], None]            # the epoch's metric row
AMP_DEVICES = ("cuda",)  # bf16 autocast where it pays; on CPUs without bf16 units it is slower
SEEN_BYTES = 2 << 30  # the most memory that the normalised images may take to be computed once (see Photographs)


@dataclass
class Trained:
    model: AAEModel
    history: pd.DataFrame
    state: str  # done or stopped


class Photographs:
    """The training images where the device reads them fastest, what the model sees of each, and their labels.

    The whole uint8 set goes on the GPU when it fits (a quarter of free memory), else it is pinned. What the
    model sees of each image does not change (the varied views come after it): on a CPU it is computed once,
    when it fits in SEEN_BYTES, rather than in every step."""

    def __init__(self, model: AAEModel, images: np.ndarray, dev: torch.device, guide: np.ndarray | None,
                 local: np.ndarray | None):
        data = torch.from_numpy(np.array(images))  # a copy in memory, off the memory map
        if dev.type == "cuda" and data.nbytes < torch.cuda.mem_get_info(dev)[0] // 4:
            data = data.to(dev)
        elif dev.type == "cuda":
            data = data.pin_memory()
        self.data, self.model, self.dev = data, model, dev
        self.guide = None if guide is None else torch.as_tensor(np.asarray(guide), dtype=torch.long).to(data.device)
        self.local = None if local is None else torch.from_numpy(np.array(local, dtype=bool)).to(data.device)
        fits = dev.type == "cpu" and data.numel() * 4 <= SEEN_BYTES
        self.seen = torch.cat(list(normalised_batches(model, data))) if fits else None

    def view(self, rows: torch.Tensor) -> torch.Tensor:
        """What the model sees of the images at `rows`."""
        if self.seen is not None:
            return self.seen[rows]
        return self.model.normalise(self.data[rows].to(self.dev, non_blocking=True))

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(what the model sees, each one's guide label, whether each is local) of the images at `rows`."""
        def on_device(t):
            return None if t is None else t[rows].to(self.dev, non_blocking=True)
        return self.view(rows), on_device(self.guide), on_device(self.local)


def _order(n: int, cultures: np.ndarray | None, g: torch.Generator) -> torch.Tensor:
    """One epoch's image order: a permutation, or with cultures a class-balanced draw (with replacement)."""
    if cultures is None:
        return torch.randperm(n, generator=g)
    cultures = np.asarray(cultures)
    counts = np.bincount(cultures)
    w = torch.as_tensor(1.0 / counts[cultures], dtype=torch.float64)
    return torch.multinomial(w, n, replacement=True, generator=g)


def _optimisers(model: AAEModel, s: Settings, fused: bool) -> dict[str, torch.optim.Adam]:
    """One Adam per step: the reconstruction's (encoder, decoder, heads), the critics', the generator's (encoder)."""
    def adam(params, lr, beta1):
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), fused=fused)
    return {"ae": adam(model.autoencoder_parameters(), s.lr, s.beta1),
            "disc": adam([p for c in model.critics for p in c.parameters()], s.disc_lr, s.adv_beta1),
            "gen": adam(model.encoder.parameters(), s.gen_lr, s.adv_beta1)}


def _step(opt: torch.optim.Optimizer, cost: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    cost.backward()
    opt.step()


@contextmanager
def _frozen(modules):
    """The modules' weights left out of the gradient within the block."""
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m in modules:
            m.requires_grad_(True)


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


def _check(s: Settings, n: int, images: np.ndarray, cultures, guide, local) -> None:
    """A user error for inputs the settings cannot train on."""
    if n < 2:
        raise UserError(f"training needs at least 2 readable images, got {n}")
    if images.shape[1:] != (s.image_size, s.image_size, 3):
        raise UserError(f"images are {images.shape[1]} px but the settings say {s.image_size} px")
    if s.balanced and cultures is None:
        raise UserError("balanced sampling needs the images' culture labels")
    if s.local and (local is None or len(local) != n):
        raise UserError("a local run needs to know which images are of the target culture (Settings.resolve)")
    slots = s.clusters or (s.prior_components if s.prior == "mixture" else 0)
    if s.guided and (not slots or guide is None or len(guide) != n or guide.max() >= slots):
        raise UserError("a guided run needs clusters or the mixture prior, and each image's source index below "
                        "their number (Settings.resolve sets both from the dataset)")


def train(settings: Settings, images: np.ndarray, cultures: np.ndarray | None = None, run: Run | None = None,
          resume: bool = False, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
          guide: np.ndarray | None = None, local: np.ndarray | None = None, looks: np.ndarray | None = None) -> Trained:
    """Train an AAE on uint8 images (n, H, W, 3). With `run`, write metrics, snapshots and checkpoints.

    `cultures` (integer culture codes) are needed for `balanced` sampling; `guide` (each image's prior
    component, -1 where its label is not to be seen) for a `guided` run; `local` (whether each image is of the
    target culture) for a `local` run: `Settings.resolve` gives all three. `looks` (n, features): where a run
    with `looks="descriptors"` finds each image's look-alikes (core.fit gives them from the flattened photographs;
    without them, the HOG descriptors of `images` themselves, their axes fitted to the images not `local`).
    """
    s, n = settings.effective(), len(images)
    _check(s, n, images, cultures, guide, local)
    dev = pick_device(s.device)
    torch.manual_seed(s.seed)
    model = AAEModel(s).to(dev)
    opt = _optimisers(model, s, fused=dev.type == "cuda")
    photos = Photographs(model, images, dev, guide if s.guided else None, local if s.local else None)
    sample = torch.as_tensor(snapshot_rows(n, s.snapshot_size, s.seed)).to(photos.data.device)
    log = RunLog(s, run) if run is not None else Log(s)
    start = log.begin(model, opt, resume)
    if s.neighbours and s.looks == "descriptors" and (looks is None or len(looks) != n):
        looks = descriptor_looks(hog(images, Descriptor("hog", images.shape[1])), None if local is None else ~local)
    augment = Augment(s)
    near = Neighbours(s, photos.view, n, photos.data.device, looks if s.looks == "descriptors" else None)
    shape = PriorShape(s, model, n, photos.view)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type in AMP_DEVICES and s.amp)
    noise, n_batches, state = s.disc_noise * s.prior_std, math.ceil(n / s.batch_size), "done"
    with _StopFlag(run) as stop:
        for epoch in range(start, s.epochs + 1):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(s.seed * 1_000_003 + epoch)  # the same order after a resume
            g_dev = torch.Generator(dev).manual_seed(s.seed * 1_000_003 + epoch)
            order = _order(n, cultures if s.balanced else None, g).to(photos.data.device)
            tally = Tally(dev)
            for b in range(n_batches):
                rows = order[b * s.batch_size:(b + 1) * s.batch_size]
                x, label, local = photos.batch(rows)
                x_in = augment(x, g_dev)  # what the encoder sees; the decoder draws x as photographed
                x_matched = x if s.matched == "photographs" else x_in  # whose codes the critic matches to the prior
                # 1) reconstruction: encoder + decoder on the MSE, with the costs on the map beside it
                with amp:
                    logits, z = model.parts(x_in)
                    codes = model.place(logits, z)
                    recon = F.mse_loss(model.decode(codes, local), x)
                    cost = (recon + near.cost(model, codes, rows, epoch, lambda r: augment(photos.view(r), g_dev), g)
                            + model.head_cost() + model.label_cost(logits, label)
                            + shape.cost(lambda: z if x_in is x else model.parts(x)[1], rows, epoch, g_dev))
                _step(opt["ae"], cost)
                # 2) discriminator: prior samples are real, the (detached) codes are fake
                with amp:
                    logits, z = model.parts(x_matched)
                    critic, judged = model.critic_cost(logits, z, label, noise, g_dev)
                _step(opt["disc"], critic)
                # 3) generator: the encoder learns to make the frozen discriminators call its codes real
                with _frozen(model.critics):
                    with amp:
                        fool = model.generator_cost(judged, label)
                    _step(opt["gen"], fool)

                tally.add(recon_loss=recon, map_loss=cost - recon, disc_loss=critic, gen_loss=fool,
                          disc_acc=judged.accuracy())
                if on_batch:
                    on_batch(epoch, b + 1, n_batches)
                if stop:
                    state = "stopped"
                    break
            if state == "stopped":
                log.stopped(epoch, model, opt)
                break
            places, codes = encode_images(model, photos.data[sample], offsets=True)  # the photographs as taken
            row = {**tally.means(), "within_3sd": within_sd(codes, s.prior_std, ks=(3,))[3], "epoch": epoch,
                   "seconds": time.perf_counter() - t0}
            log.epoch(row, model, opt, places)
            if on_epoch:
                on_epoch(row)
    model.eval()
    return Trained(model, pd.DataFrame(log.history), state)
