"""The benchmark's measurements. bench/run.py runs each in a fresh process, so that its peak memory is its
own and nothing is warm that should not be:

    python bench/tasks.py NAME '{"arg": value, ...}'    # prints one JSON line

Every task returns wall times in seconds and `peak_rss_mb` (and `peak_gpu_mb` on CUDA).
"""
from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core import labels  # noqa: E402
from core.dataset import load  # noqa: E402
from core.model import AAEModel  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.devices import pick_device  # noqa: E402
from core.model import encode_images  # noqa: E402

TASKS = {}


def task(f):
    TASKS[f.__name__] = f
    return f


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _settings(preset: str, size: int, device: str, **kw) -> Settings:
    return Settings.from_preset(preset, image_size=size, device=device, snapshot_every=10_000,
                                checkpoint_every=10_000, **kw)


@task
def decode(root: str, size: int) -> dict:
    """Decode a folder into the (empty) cache, then open it again as every later epoch, run and page does."""
    t0 = time.perf_counter()
    ds = load(root, size)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    load(root, size)
    return {"images": len(ds.images), "cold_s": cold, "warm_s": time.perf_counter() - t0,
            "cache_mb": ds.images.nbytes / 2**20}


def naive_loader(root: str, size: int, batch_size: int, limit: int | None = None):
    """The study's way: torchvision ImageFolder + DataLoader, decoding and resizing every file every epoch."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize([0.5] * 3, [0.5] * 3)])
    ds = datasets.ImageFolder(root, transform=tf)
    if limit:
        ds = Subset(ds, np.random.default_rng(0).permutation(len(ds))[:limit].tolist())
    return DataLoader(ds, batch_size=batch_size, shuffle=True)


@task
def data_epoch(root: str, size: int, device: str, batch_size: int = 100) -> dict:
    """One epoch's data time alone: our batches from the decoded cache vs the naive loader."""
    dev = pick_device(device)
    ds = load(root, size)
    t0 = time.perf_counter()
    data = torch.from_numpy(np.array(ds.images))
    data = data.to(dev) if dev.type == "cuda" else data
    order = torch.randperm(len(data), device=data.device)
    for i in range(0, len(data), batch_size):
        x = AAEModel.to_unit(data[order[i:i + batch_size]].to(dev, non_blocking=True))
    _sync(dev)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, _ in naive_loader(root, size, batch_size):
        x = x.to(dev)
    _sync(dev)
    naive = time.perf_counter() - t0
    return {"images": len(ds.images), "ours_s": ours, "naive_s": naive, "speedup": naive / ours}


@task
def train(root: str, preset: str, size: int, epochs: int, device: str, limit: int | None = None,
          run_dir: str | None = None) -> dict:
    """Our trainer (`fit_run` into a run folder, or `train` on the first `limit` images)."""
    from core.fit import fit_run
    from core.train import train as train_images

    t_start = time.perf_counter()
    ends = []
    s = _settings(preset, size, device, epochs=epochs)
    if run_dir:
        fit_run(run_dir, s, root, on_epoch=lambda row: ends.append(time.perf_counter()))
        n = json.loads((Path(run_dir) / "config.json").read_text())["images"]
    else:
        ds = load(root, size)
        images, items = (ds.images[:limit], ds.items.iloc[:limit]) if limit else (ds.images, ds.items)
        n = len(images)
        train_images(s, images, on_epoch=lambda row: ends.append(time.perf_counter()), local=labels.is_target(items))
    return _rates(n, t_start, ends, pick_device(device))


def _rates(n: int, t_start: float, ends: list[float], dev: torch.device) -> dict:
    per_epoch = float(np.median(np.diff(ends))) if len(ends) > 1 else ends[0] - t_start
    return {"images": n, "epochs": len(ends), "first_epoch_s": ends[0] - t_start, "s_per_epoch": per_epoch,
            "last_epoch_s": ends[-1] - ends[-2] if len(ends) > 1 else per_epoch,
            "images_per_s": n / per_epoch, "total_s": ends[-1] - t_start, **_gpu(dev)}


def _gpu(dev: torch.device) -> dict:
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated(dev) / 2**20} if dev.type == "cuda" else {}


@task
def naive_train(root: str, preset: str, size: int, epochs: int, device: str, limit: int | None = None) -> dict:
    """The baseline trainer: the naive loader, fp32, three plain Adam optimisers, losses read every batch; the
    preset's network as the study trained it (its decoder not told which figurines are targets)."""
    import torch.nn.functional as F

    t_start = time.perf_counter()
    s = _settings(preset, size, device, epochs=epochs, local=False).effective()
    dev = pick_device(device)
    torch.manual_seed(0)
    model = AAEModel(s).to(dev)
    enc, dec, disc = model.encoder, model.decoder, model.discriminator
    opt_ae = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=s.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=s.disc_lr)
    opt_g = torch.optim.Adam(enc.parameters(), lr=s.gen_lr)
    loader = naive_loader(root, size, s.batch_size, limit)
    bce = F.binary_cross_entropy_with_logits
    ends, log = [], []
    for _ in range(epochs):
        for x, _ in loader:
            x = x.to(dev)
            loss_r = F.mse_loss(dec(enc(x)), x)
            opt_ae.zero_grad()
            loss_r.backward()
            opt_ae.step()
            z = enc(x)
            real, fake = disc(s.prior_std * torch.randn_like(z)), disc(z.detach())
            loss_d = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            gen = disc(z)
            loss_g = bce(gen, torch.ones_like(gen))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            log.append((loss_r.item(), loss_d.item(), loss_g.item()))
        ends.append(time.perf_counter())
    return _rates(len(loader.dataset), t_start, ends, dev)


@task
def encode_rate(root: str, preset: str, size: int, device: str, limit: int | None = None) -> dict:
    """Encoding throughput of a model of the preset (weights do not change the cost)."""
    dev = pick_device(device)
    ds = load(root, size)
    images = ds.images[:limit] if limit else ds.images
    model = AAEModel(_settings(preset, size, device)).to(dev)
    encode_images(model, images[:200])  # warm-up
    t0 = time.perf_counter()
    encode_images(model, images)
    _sync(dev)
    took = time.perf_counter() - t0
    return {"images": len(images), "seconds": took, "images_per_s": len(images) / took, **_gpu(dev)}


@task
def umap(root: str, size: int) -> dict:
    """The UMAP baseline in this (fresh) process: computed, unless its cache file already exists."""
    from core.embed import baseline

    t0 = time.perf_counter()
    ds = load(root, size)
    t1 = time.perf_counter()
    baseline(ds)
    return {"images": len(ds.images), "seconds": time.perf_counter() - t1, "with_load_s": time.perf_counter() - t0}


@task
def synthetic_run(root: str, size: int, run_dir: str, seed: int = 0) -> dict:
    """A run folder over a real (decoded) folder with a small untrained model and synthetic encodings:
    clusters per culture in both spaces. What the Explore page draws at sizes no demo run reaches."""
    from core.embed import encodings_key, write_encodings
    from core.runs import Run

    s = _settings("fast", size, "cpu", width=4, disc_width=8)
    ds = load(root, size, s.background)  # decoded as a training would have: the encodings then match the run
    run = Run(run_dir)
    run.write_config({"settings": s.to_dict(), "effective": s.effective().to_dict(), "data": ds.root,
                      "fingerprint": ds.fingerprint, "images": len(ds.items), "device": "cpu"})
    run.save_checkpoint({"model": AAEModel(s).state_dict(), "epoch": 1, "history": [], "settings": s.to_dict()})
    run.set_status("done", epoch=1, message="synthetic run for the benchmark")
    items = ds.items
    rng = np.random.default_rng(seed)
    codes = pd.Categorical(items["culture"]).codes
    df = items[["path", "culture", "site"]].copy()
    for space, spread in (("aae", 5.0), ("umap", 3.0)):
        centres = rng.normal(0, spread, (codes.max() + 1, 2))
        xy = centres[codes] + rng.normal(0, spread / 3, (len(df), 2))
        df[f"{space}_x"], df[f"{space}_y"] = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
    df = df[["path", "culture", "site", "aae_x", "aae_y", "umap_x", "umap_y"]].assign(
        recon_error=rng.random(len(df)).astype(np.float32))
    write_encodings(run, df, encodings_key(run, ds))
    return {"images": len(df)}


@task
def redraw(run_name: str, repeats: int = 6) -> dict:
    """The Explore page in Streamlit's AppTest: first open, then filter changes (server-side script time,
    which includes building the charts and serialising them), and the bytes the charts send."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    at.session_state["run"] = run_name
    at.switch_page("pages/explore.py")
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    key = f"f_sites:{run_name}"
    sites = at.pills(key=key).options
    times, sizes = [], []
    for i in range(repeats):
        at.pills(key=key).set_value(sites[:1 + i % 2] if i % 3 < 2 else [])
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        sizes.append(sum(e.proto.ByteSize() for e in at.main if getattr(e, "type", "") == "vega_lite_chart"))
    shown = next(c.value for c in at.caption if "figurines shown" in c.value)
    return {"first_open_s": first, "redraw_median_s": float(np.median(times)), "redraw_max_s": max(times),
            "chart_kb": float(np.median(sizes)) / 1024, "mode": "cells" if "density cells" in shown else "points"}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    out = TASKS[name](**args)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
