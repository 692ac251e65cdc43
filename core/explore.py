"""What the Explore page shows, computed without any UI: filtered points, selections, thumbnails,
the prior's circles and the decoder's view of the latent space."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .demo import ACHAEMENID, GREEK, HB, NEOBAB

_FIXED = {GREEK: "#2f6fb0", NEOBAB: "#c23b2a", ACHAEMENID: "#3d8f4a", HB: "#c8962e"}
_SPARE = ["#7b4fa0", "#d17fb5", "#6b6b6b", "#17a2b8", "#8c564b", "#bcbd22", "#e377c2", "#1f3b5c"]
CONTEXT_GREY = "#d4d0ca"


def culture_colours(cultures) -> dict[str, str]:
    """The same colour for the same culture on every page: the demo's four fixed, others in name order."""
    others = sorted(c for c in set(cultures) if c not in _FIXED)
    return {**{c: _FIXED[c] for c in _FIXED if c in set(cultures)},
            **{c: _SPARE[i % len(_SPARE)] for i, c in enumerate(others)}}


def filtered(enc: pd.DataFrame, cultures: list[str], sites: list[str]) -> np.ndarray:
    """Rows kept by the filters: chosen cultures, and for figurines with a site, chosen sites."""
    keep = enc["culture"].isin(cultures).to_numpy()
    has_site = (enc["site"] != "").to_numpy()
    return keep & (~has_site | enc["site"].isin(sites).to_numpy())


def selected_rows(selection: dict, enc: pd.DataFrame, prefix: str) -> np.ndarray | None:
    """Row ids picked in a chart: a box over `<prefix>_x/_y`, or clicked points; None if nothing is selected."""
    ids = None
    box = selection.get(f"box_{prefix}") or {}
    if box.get(f"{prefix}_x") and box.get(f"{prefix}_y"):
        (x0, x1), (y0, y1) = sorted(box[f"{prefix}_x"]), sorted(box[f"{prefix}_y"])
        x, y = enc[f"{prefix}_x"].to_numpy(), enc[f"{prefix}_y"].to_numpy()
        ids = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    clicked = selection.get(f"pick_{prefix}") or []
    picked = [p["id"] for p in clicked if isinstance(p, dict) and "id" in p]
    if picked:
        ids = np.union1d(ids if ids is not None else [], picked).astype(int)
    return ids


def thumbnail_uri(image: np.ndarray, size: int = 48) -> str:
    """A small JPEG data URI of a uint8 image (about 1 kB), for tooltips."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).resize((size, size), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def prior_circles(std: float, ks=(1, 2, 3), n: int = 120) -> pd.DataFrame:
    """Points along the prior's 1, 2 and 3 sd circles, in drawing order."""
    t = np.linspace(0, 2 * np.pi, n)
    return pd.concat([pd.DataFrame({"x": k * std * np.cos(t), "y": k * std * np.sin(t), "order": np.arange(n),
                                    "circle": f"{k} sd"}) for k in ks], ignore_index=True)


@torch.no_grad()
def manifold(model, n: int = 9, extent: float = 2.5) -> np.ndarray:
    """What the decoder draws on an n x n grid over +-extent prior sds (first two latent dims), one image."""
    s = model.settings
    ticks = np.linspace(extent, -extent, n) * s.prior_std
    z = np.zeros((n * n, s.latent_dim), np.float32)
    z[:, 0] = np.tile(-ticks, n)
    if s.latent_dim > 1:
        z[:, 1] = np.repeat(ticks, n)
    dev = next(model.parameters()).device
    tiles = model.denormalise(model.decode(torch.as_tensor(z, device=dev)))
    size = s.image_size
    return tiles.reshape(n, n, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, n * size, 3)


@torch.no_grad()
def reconstructions(model, images: np.ndarray) -> np.ndarray:
    """The model's reconstructions of uint8 images."""
    dev = next(model.parameters()).device
    x = model.normalise(torch.from_numpy(np.array(images)).to(dev))
    return model.denormalise(model.decode(model.encode(x)))
