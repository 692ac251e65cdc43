"""Decoded images -> one descriptor vector per image: what the influence numbers are read in.

A 2-D map loses what tells related cultures apart; a descriptor keeps it. Three kinds:

- `hog`: histograms of oriented gradients (scikit-image) on the grey image, 8 x 8 cells over the image
  whatever its size, 9 orientations, 2 x 2 blocks: shape and relief, blind to clay colour and light;
- `pixels`: the colour pixels themselves, in [0, 1];
- `backbone`: the pooled features of a pretrained torchvision network (ResNet-50 or ConvNeXt-Tiny), loaded
  from a weights file the user gives (inside the data roots, read with `weights_only=True`, its SHA-256
  recorded), or through torchvision's own weights API when the user asks for it and the machine is online.

Descriptors are cached per (decoded dataset, descriptor) under the decoded-image cache, computed once in
parallel like the decoder, and reused by every run, the app and the CLI.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from filelock import FileLock

from .dataset import Dataset, Progress, cache_root, reserve_array
from .errors import UserError
from .parallel import map_chunks

KINDS = ("hog", "pixels", "backbone")
ARCHITECTURES = {"resnet50": 2048, "convnext_tiny": 768}  # pooled feature width
ONLINE = "torchvision"  # `weights` value: torchvision's own pretrained weights, downloaded if not cached
CHUNK = 64
KEPT = 16  # cached descriptor files (least recently used dropped first); 30 MB for HOG of the demo


@dataclass(frozen=True)
class Descriptor:
    """What each figurine is described by: `kind`, at `image_size` px (the decoded images' size)."""

    kind: str = "hog"
    image_size: int = 64
    cells: int = 8          # hog: cells across the image (8 px each at 64 px)
    orientations: int = 9   # hog
    block: int = 2          # hog: cells per block side
    arch: str = "resnet50"  # backbone
    weights: str = ""       # backbone: a weights file, or "torchvision"
    weights_sha256: str = ""  # backbone: filled in by `resolved`

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"descriptor must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "backbone" and self.arch not in ARCHITECTURES:
            raise UserError(f"backbone must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")

    @property
    def name(self) -> str:
        """In words, for the page, the CLI and the run's record."""
        if self.kind == "hog":
            return (f"HOG descriptors (scikit-image; {self.cells} x {self.cells} cells, {self.orientations} "
                    f"orientations, {self.block} x {self.block} blocks) of the grey {self.image_size} px image")
        if self.kind == "pixels":
            return f"the colour pixels of the {self.image_size} px image"
        source = ("torchvision's pretrained weights" if self.weights == ONLINE
                  else f"weights file {Path(self.weights).name} (SHA-256 {self.weights_sha256[:12]}…)")
        return f"pooled {self.arch} features ({source}) of the {self.image_size} px image"

    @property
    def short(self) -> str:
        return {"hog": f"HOG, {self.image_size} px", "pixels": f"pixels, {self.image_size} px",
                "backbone": f"{self.arch}, {self.image_size} px"}[self.kind]

    def key(self) -> str:
        fields = asdict(self)
        if self.kind != "backbone":
            fields.update(arch="", weights="", weights_sha256="")
        else:
            fields["weights"] = ONLINE if self.weights == ONLINE else ""  # the file is known by its hash
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def resolved(d: Descriptor) -> Descriptor:
    """`d` with its weights file checked (inside the data roots, readable) and hashed; a UserError otherwise."""
    if d.kind != "backbone" or d.weights == ONLINE:
        return d
    from .paths import inside_roots

    if not d.weights:
        raise UserError(f"the {d.arch} backbone needs a weights file (or '{ONLINE}' to download torchvision's)")
    path = inside_roots(d.weights)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return replace(d, weights=str(path), weights_sha256=h.hexdigest())


def hog(images: np.ndarray, d: Descriptor) -> np.ndarray:
    """HOG descriptors (n, features) of uint8 images (n, H, W, 3)."""
    from skimage.color import rgb2gray
    from skimage.feature import hog as _hog

    cell = max(1, images.shape[1] // d.cells)
    return np.stack([_hog(rgb2gray(im), orientations=d.orientations, pixels_per_cell=(cell, cell),
                          cells_per_block=(d.block, d.block), feature_vector=True) for im in images]
                    ).astype(np.float32)


def _hog_chunk(args: tuple[str, str, int, int, Descriptor]) -> None:
    """Worker: HOG of rows [start, stop) of the decoded images, written into the output array."""
    images_path, out_path, start, stop, d = args
    out = np.load(out_path, mmap_mode="r+")
    out[start:stop] = hog(np.load(images_path, mmap_mode="r")[start:stop], d)
    out.flush()


def _network(d: Descriptor):
    """The backbone without its classifier: images -> pooled features."""
    import torch
    import torchvision

    build = getattr(torchvision.models, d.arch)
    if d.weights == ONLINE:
        weights = torchvision.models.get_model_weights(d.arch).DEFAULT
        try:
            net = build(weights=weights)
        except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
            raise UserError(f"could not download torchvision's {d.arch} weights (no network?): {e}; give a weights "
                            f"file instead (the README says how to get one)") from None
    else:
        net = build(weights=None)
        try:
            state = torch.load(d.weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickle that is not plain tensors, a truncated file, not a torch file
            raise UserError(f"{Path(d.weights).name} is not a PyTorch weights file this app can read safely "
                            f"({type(e).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{Path(d.weights).name} does not fit the {d.arch} architecture ({first[:200]})") from None
    if d.arch.startswith("resnet"):
        net.fc = torch.nn.Identity()
    else:
        net.classifier[-1] = torch.nn.Identity()
    return net.eval()


def backbone(images: np.ndarray, d: Descriptor, device: str = "cpu", batch_size: int = 64,
             progress: Progress | None = None) -> np.ndarray:
    """Pooled backbone features (n, features) of uint8 images, ImageNet-normalised at 224 px."""
    import torch

    net = _network(d).to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    sd = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    out = np.empty((len(images), ARCHITECTURES[d.arch]), np.float32)
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[i:i + batch_size])).to(device).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(x, size=224, mode="bilinear", antialias=True, align_corners=False)
            out[i:i + len(x)] = net((x - mean) / sd).float().cpu().numpy()
            if progress:
                progress(i + len(x), len(images))
    return out


def compute(ds: Dataset, d: Descriptor, progress: Progress | None = None, workers: int | None = None,
            device: str = "cpu") -> np.ndarray:
    """The descriptors of a decoded dataset, uncached (see `describe`)."""
    if d.kind == "pixels":
        x = np.array(ds.images, dtype=np.float32).reshape(len(ds.images), -1)
        x /= 255.0
        return x
    if d.kind == "backbone":
        return backbone(ds.images, d, device, progress=progress)
    images_path = Path(ds.images.filename)
    tmp = cache_root() / "descriptors" / f".building-{os.getpid()}-{d.key()}.npy"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    width = hog(np.zeros((1, *ds.images.shape[1:]), np.uint8), d).shape[1]
    try:
        reserve_array(tmp, (len(ds.images), width), np.float32)
        chunks = [(str(images_path), str(tmp), i, min(i + CHUNK, len(ds.images)), d)
                  for i in range(0, len(ds.images), CHUNK)]
        for _ in map_chunks(_hog_chunk, chunks, [c[3] - c[2] for c in chunks], workers, progress):
            pass
        return np.array(np.load(tmp, mmap_mode="r"))
    finally:
        tmp.unlink(missing_ok=True)


def describe(ds: Dataset, d: Descriptor, progress: Progress | None = None, workers: int | None = None,
             device: str = "cpu") -> np.ndarray:
    """The cached descriptors (n, features) of a decoded dataset, rows as `ds.items`; computed on first use.

    The pixels are not cached: they are the decoded images themselves."""
    d = resolved(d)
    if d.kind == "pixels":
        return compute(ds, d)
    f = cache_root() / "descriptors" / f"{ds.key}-{d.key()}-{d.weights_sha256[:16]}.npy"
    f.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{f}.lock"):
        if f.is_file():
            os.utime(f)
            try:
                x = np.load(f)
                if x.ndim == 2 and len(x) == len(ds.images) and np.isfinite(x).all():
                    return x
            except (OSError, ValueError, EOFError):
                pass  # damaged: computed again below
        x = compute(ds, d, progress, workers, device)
        part = f.with_name(f".{f.name}.{os.getpid()}.npy")
        try:
            np.save(part, x)
            os.replace(part, f)
        except OSError as e:  # a full cache disk: the descriptors are still returned, only not kept
            part.unlink(missing_ok=True)
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
    done = [p for p in f.parent.glob("*.npy") if not p.name.startswith(".")]  # not files being written
    for old in sorted(done, key=lambda p: p.stat().st_mtime, reverse=True)[KEPT:]:
        old.unlink(missing_ok=True)
        Path(f"{old}.lock").unlink(missing_ok=True)
    return x
