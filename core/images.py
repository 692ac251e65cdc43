"""Decode one museum photograph into a square uint8 RGB array, or say why it cannot be read.

Real collections hold 16-bit and float TIFFs, CMYK and palette files, alpha channels, EXIF-rotated
camera JPEGs, very tall figurines and the odd 100-megapixel scan. Each is turned into the same thing:
the whole figurine fitted inside a square (aspect ratio kept, never stretched), padded with the
photograph's own background colour taken from its border.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
MAX_PIXELS = 150_000_000  # a 12,000 x 12,500 scan; beyond that a file is refused as a decompression bomb
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class UnreadableImage(Exception):
    """The file cannot be used; the message is the reason shown to the user."""


def is_image_name(name: str) -> bool:
    """True for a supported image extension (any case); False for junk like `._x.jpg` or `.DS_Store`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _open(path: str, size: int) -> Image.Image:
    if os.path.getsize(path) == 0:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise UnreadableImage("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        raise UnreadableImage(f"too large (over {MAX_PIXELS:,} pixels): refused as a decompression bomb") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise UnreadableImage(f"too large ({w} x {h} pixels, limit {MAX_PIXELS:,}): refused as a decompression bomb")
    if im.format == "JPEG":
        im.draft("RGB", (2 * size, 2 * size))  # let libjpeg decode big photos at 1/2..1/8 scale
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: high bit depths rescaled by their own range, alpha put on white."""
    if im.mode in _HIGH_DEPTH_MODES:
        a = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(a)
        lo, hi = (a[finite].min(), a[finite].max()) if finite.any() else (0.0, 0.0)
        scaled = np.where(finite, (a - lo) / (hi - lo) * 255.0 if hi > lo else 0.0, 0.0)
        return Image.fromarray(np.round(scaled).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def border_colour(a: np.ndarray) -> np.ndarray:
    """Median colour of the outermost ring of pixels: the studio background of a photograph."""
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return np.median(ring, axis=0).astype(np.uint8)


def letterbox(im: Image.Image, size: int) -> np.ndarray:
    """Fit inside size x size keeping the aspect ratio; pad with the image's border colour."""
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new != (w, h):
        im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    a = np.asarray(im, dtype=np.uint8)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = border_colour(a)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    out[top:top + new[1], left:left + new[0]] = a
    return out


def decode(path: str, size: int) -> np.ndarray:
    """Read `path` as a (size, size, 3) uint8 array; raise UnreadableImage with the reason otherwise."""
    try:
        im = _open(path, size)
        with im:
            im = ImageOps.exif_transpose(im)  # loads the pixels: truncation shows up here
            return letterbox(_to_rgb(im), size)
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        text = str(e) or type(e).__name__
        if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
            raise UnreadableImage(f"truncated or corrupt file ({text})") from None
        raise UnreadableImage(f"cannot decode ({text})") from None
