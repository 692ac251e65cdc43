"""Decode one museum photograph into a square uint8 RGB array, or say why it cannot be read.

Real collections hold 16-bit and float TIFFs, CMYK and palette files, alpha channels, EXIF-rotated
camera JPEGs, very tall figurines and the odd 100-megapixel scan. Each is turned into the same thing:
the whole figurine fitted inside a square (aspect ratio kept, never stretched), padded with the
photograph's own background colour taken from its border.

Backgrounds come in every shade, and a 2-D latent space would spend one of its two axes on them. With
`background="flatten"` the studio background (a colour gradient fitted to the border) is replaced by
one neutral grey, keeping the figurine and a soft edge; where that fails (a busy border, a figurine
filling the frame) the photograph is kept as it is. `background="separate"` cuts the figure out of any
backdrop (dark velvet, spotlights, cloth) with OpenCV's GrabCut seeded from the border, and puts it on the same
grey, the old backdrop's rim included.
"""
from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from typing import Callable, ContextManager

import numpy as np
from PIL import ExifTags, Image, ImageFilter, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
# Photographs in formats we do not read: listed among the unreadable files, with the reason, never skipped.
OTHER_PHOTO_EXTENSIONS = (".heic", ".heif", ".avif", ".gif", ".bmp", ".jp2", ".jxl", ".psd", ".dng", ".cr2",
                          ".cr3", ".nef", ".arw", ".orf", ".raf", ".rw2")
MAX_PIXELS = 150_000_000  # a 12,000 x 12,500 scan; beyond that a file is refused as a decompression bomb
MAX_DECODE_BYTES = 4 * MAX_PIXELS  # the most one decode may hold: the file's pixels as Pillow stores them
LARGE_DECODE_BYTES = 64 * 2**20  # decodes above this take a memory slot (`reserve`) while they run
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
BACKGROUNDS = ("flatten", "keep", "separate")
NEUTRAL = np.array([128, 128, 128], np.uint8)  # 0 after the model's normalisation
MIN_ACROSS, CUT_ACROSS = 16, 32  # a strip under MIN_ACROSS px across is cut at CUT_ACROSS, the mask brought back


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # EXIF orientation -> what shows the photograph upright


class UnreadableImage(Exception):
    """The file cannot be used; the message is the reason shown to the user."""


def is_image_name(name: str) -> bool:
    """True for a supported image extension (any case); False for junk like `._x.jpg` or `.DS_Store`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def unsupported_format(name: str) -> str | None:
    """Why a photograph in another format (HEIC, AVIF, GIF, camera raw...) is not read; None for other files."""
    ext = os.path.splitext(name)[1].lower()
    if name.startswith(".") or ext not in OTHER_PHOTO_EXTENSIONS:
        return None
    return f"{ext[1:].upper()} files are not read: convert it to JPEG, PNG, TIFF or WebP"


def _open(path: str, size: int) -> Image.Image:
    if os.path.getsize(path) == 0:
        raise UnreadableImage("empty file (0 bytes)")
    try:
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
    if pixel_bytes(im) > MAX_DECODE_BYTES:
        raise UnreadableImage(f"too large to decode ({w} x {h} pixels of mode {im.mode} need "
                              f"{pixel_bytes(im) / 1e9:.1f} GB, limit {MAX_DECODE_BYTES / 1e9:.1f} GB)")
    return im


def pixel_bytes(im: Image.Image) -> int:
    """The memory an opened image's pixels take once loaded, as Pillow stores them (1, 2 or 4 bytes each)."""
    return im.width * im.height * (1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4)


def _reduced(im: Image.Image, size: int) -> Image.Image:
    """A loaded image box-averaged to at most 2 x size on its longer side, in its own mode: nothing the size
    of the original is made (no full-size conversion, no float copy)."""
    scale = 2 * size / max(im.size)
    if scale > 0.5:
        return im
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BOX)


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


def _ring(h: int, w: int) -> np.ndarray:
    ring = np.zeros((h, w), bool)
    r = max(1, min(h, w) // 32)
    ring[:r], ring[-r:], ring[:, :r], ring[:, -r:] = True, True, True, True
    return ring


def border_colour(a: np.ndarray) -> np.ndarray:
    """Median colour of the outermost ring of pixels: the studio background of a photograph."""
    return np.median(a[_ring(*a.shape[:2])], axis=0).astype(np.uint8)


def _off_backdrop(f: np.ndarray, quadratic: bool) -> tuple[np.ndarray, np.ndarray]:
    """How far each pixel's colour (float H x W x 3) strays from the backdrop's light, a linear (or quadratic)
    surface fitted to the outermost ring of pixels; and that ring."""
    h, w, _ = f.shape
    ring = _ring(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if quadratic:
        x, y = xx / w - 0.5, yy / h - 0.5
        basis = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], -1)
    else:
        basis = np.stack([np.ones_like(xx), xx / w, yy / h], -1)
    coef, *_ = np.linalg.lstsq(basis[ring], f[ring], rcond=None)
    return np.linalg.norm(f - basis @ coef, axis=2), ring


def flatten_background(a: np.ndarray) -> np.ndarray:
    """Replace the background (a linear colour gradient fitted to the border) with neutral grey."""
    if min(a.shape[:2]) < 8:
        return a
    f = a.astype(np.float32)
    dist, ring = _off_backdrop(f, quadratic=False)
    spread = float(np.percentile(dist[ring], 90))  # how far the border itself strays from the gradient
    t = max(10.0, 2.5 * spread)
    alpha = np.clip((dist - t) / t, 0, 1)
    if spread > 24 or not 0.02 < alpha.mean() < 0.95:  # a busy border, no figure, or no background
        return a
    alpha = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
    alpha = np.asarray(alpha.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] / 255
    return (f * alpha + NEUTRAL * (1 - alpha)).round().astype(np.uint8)


def figure_mask(a: np.ndarray) -> np.ndarray | None:
    """The figure's pixels (bool, H x W) in a photograph (uint8 H x W x 3), or None where no figure stands out.

    OpenCV's GrabCut, seeded with the border as certain backdrop and, as likely figure, the pixels that stand out
    from the backdrop's light (a quadratic surface fitted to the border, Otsu's threshold) and what strong edges
    enclose; specks are dropped and small holes filled."""
    import cv2
    from scipy import ndimage
    from skimage.feature import canny
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes

    h, w, _ = a.shape
    if min(h, w) < 4:
        return None
    if min(h, w) < MIN_ACROSS:  # a tall or wide photograph's strip: cut wider, the mask brought back
        up = CUT_ACROSS / min(h, w)
        wide = Image.fromarray(a).resize((round(w * up), round(h * up)), Image.Resampling.BILINEAR)
        fig = figure_mask(np.asarray(wide))
        return None if fig is None else np.asarray(
            Image.fromarray(fig.astype(np.uint8) * 255).resize((w, h), Image.Resampling.BILINEAR)) > 127
    dist, ring = _off_backdrop(a.astype(np.float32), quadratic=True)
    stands_out = dist > max(threshold_otsu(dist), 12.0)
    edges = canny(a.mean(2), sigma=1.0) & ~ring
    enclosed = ndimage.binary_fill_holes(ndimage.binary_closing(edges, iterations=2))
    seed = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    seed[stands_out | enclosed] = cv2.GC_PR_FGD
    if (seed == cv2.GC_PR_FGD).mean() < 0.01:  # nothing stands out: let GrabCut look everywhere
        seed[:] = cv2.GC_PR_FGD
    seed[ring] = cv2.GC_BGD
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's random state: the same photograph, the same cut
    cv2.grabCut(np.ascontiguousarray(a), seed, None, *models, 5, cv2.GC_INIT_WITH_MASK)
    fig = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
    labels, n = ndimage.label(fig)
    if n:
        sizes = ndimage.sum(fig, labels, range(1, n + 1))
        fig = np.isin(labels, 1 + np.flatnonzero(sizes >= max(4, 0.1 * sizes.max())))
    fig = remove_small_holes(fig, max_size=max(4, int(0.002 * h * w)))
    return fig if 0.02 < fig.mean() < 0.95 else None


def separate_background(a: np.ndarray) -> np.ndarray:
    """The figure (`figure_mask`) on neutral grey, its outermost pixels (half backdrop where the photograph
    blends them) coloured as the nearest pixel inside: no rim of the old backdrop. The photograph itself where
    no figure stands out."""
    from scipy import ndimage

    fig = figure_mask(a)
    if fig is None:
        return a
    inner = ndimage.binary_erosion(fig)
    if inner.any():
        iy, ix = ndimage.distance_transform_edt(~inner, return_distances=False, return_indices=True)
        a = a[iy, ix]
    return np.where(fig[..., None], a, NEUTRAL).astype(np.uint8)


def backdrop_kept(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For photographs decoded with their backdrops replaced (`flatten`, `separate`; n x s x s x 3 uint8): True
    where the backdrop was kept as photographed (no figure stood out from it), told by a border that is not
    neutral grey."""
    kept = np.zeros(len(images), bool)
    for i in range(0, len(images), chunk):
        a = np.asarray(images[i:i + chunk])
        ring = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1).astype(np.int16)
        grey = (np.abs(ring - NEUTRAL.astype(np.int16)).max(axis=2) <= 3).mean(axis=1)
        kept[i:i + chunk] = grey < 0.9
    return kept


def letterbox(im: Image.Image, size: int, background: str = "keep") -> np.ndarray:
    """Fit inside size x size keeping the aspect ratio; pad with the background colour."""
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new != (w, h):
        im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    a = np.asarray(im, dtype=np.uint8)
    out = np.empty((size, size, 3), np.uint8)
    if background in ("flatten", "separate"):
        flat = (flatten_background if background == "flatten" else separate_background)(a)
        out[:] = NEUTRAL if flat is not a else border_colour(a)
        a = flat
    else:
        out[:] = border_colour(a)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    out[top:top + new[1], left:left + new[0]] = a
    return out


def decode(path: str, size: int, background: str = "keep",
           reserve: Callable[[int], ContextManager] | None = None) -> np.ndarray:
    """Read `path` as a (size, size, 3) uint8 array; raise UnreadableImage with the reason otherwise.

    It holds at most the file's pixels (`pixel_bytes`, bounded by MAX_DECODE_BYTES) and small copies; a
    decode above LARGE_DECODE_BYTES runs inside `reserve(bytes)` (a memory budget shared by the workers)."""
    try:
        with warnings.catch_warnings():  # Pillow's warnings (odd EXIF, say) are not the user's business
            warnings.simplefilter("ignore")
            im = _open(path, size)
            need = pixel_bytes(im)
            with im, (reserve(need) if reserve and need > LARGE_DECODE_BYTES else nullcontext()):
                im.load()  # truncation shows up here
                turn = _TRANSPOSE.get(im.getexif().get(ExifTags.Base.Orientation))
                small = _reduced(im, size)
                return letterbox(_to_rgb(small.transpose(turn) if turn is not None else small), size, background)
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        text = str(e) or type(e).__name__
        if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
            raise UnreadableImage("truncated or damaged: the file ends early or breaks off (an interrupted copy or "
                                  "download?); copy it again from the original") from None
        raise UnreadableImage(f"cannot decode ({text})") from None
