"""A messy collection, generated: every kind of file real museum folders hold."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

# file (relative path) -> the reason it must be listed as unreadable (a substring), for the bad ones
UNREADABLE = {
    "Greek/empty.jpg": "empty file",
    "Greek/truncated.jpg": "truncated",
    "Greek/truncated.tif": "",
    "Greek/notes.tif": "not an image",
    "Greek/bomb.png": "decompression bomb",
}
READABLE = [
    "Greek/plain.jpg", "Greek/UPPER.JPG", "Greek/gray16.tif", "Greek/float.TIFF", "Greek/cmyk.jpg",
    "Greek/palette.png", "Greek/rgba.png", "Greek/la.png", "Greek/one.png", "Greek/tall.png",
    "Greek/rotated.jpg", "Greek/photo.webp",
    "Babylonian/Nippur/figurine ä 1.jpg", "Babylonian/Nippur/deep/nested/fig.jpg", "Babylonian/Uruk/fig.png",
]


def figure(w: int = 60, h: int = 80, seed: int = 0) -> Image.Image:
    """A light background with a dark-red 'figurine' block in the middle."""
    rng = np.random.default_rng(seed)
    a = np.full((h, w, 3), 220, np.uint8)
    a[h // 4:3 * h // 4, w // 3:2 * w // 3] = (150, 60, 40)
    a = np.clip(a.astype(int) + rng.integers(-5, 5, a.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def make(root: Path) -> Path:
    g, b = root / "Greek", root / "Babylonian"
    for d in (g, b / "Nippur" / "deep" / "nested", b / "Uruk", root / "Empty culture"):
        d.mkdir(parents=True, exist_ok=True)
    figure().save(g / "plain.jpg")
    figure(seed=1).save(g / "UPPER.JPG")
    ramp = (np.linspace(1000, 3000, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(g / "gray16.tif")
    Image.fromarray(np.linspace(-1, 1, 64 * 48, dtype=np.float32).reshape(48, 64)).save(g / "float.TIFF")
    figure(seed=2).convert("CMYK").save(g / "cmyk.jpg")
    p = figure(seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p.info["transparency"] = 0
    p.save(g / "palette.png", transparency=0)
    rgba = figure(seed=4).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    rgba.save(g / "rgba.png")
    figure(seed=5).convert("LA").save(g / "la.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(g / "one.png")
    figure(20, 300, seed=6).save(g / "tall.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    figure(80, 40, seed=7).save(g / "rotated.jpg", exif=exif)
    figure(seed=8).save(g / "photo.webp")
    (g / "empty.jpg").write_bytes(b"")
    good = jpeg_bytes(figure(200, 200, seed=9))
    (g / "truncated.jpg").write_bytes(good[: len(good) // 2])
    tif = io.BytesIO()
    figure(200, 200, seed=10).save(tif, "TIFF")
    (g / "truncated.tif").write_bytes(tif.getvalue()[: len(tif.getvalue()) // 2])
    (g / "notes.tif").write_text("These are my notes about the figurines, saved with the wrong extension.\n")
    Image.new("1", (16_000, 16_000)).save(g / "bomb.png")  # 256 M pixels in 31 kB
    (g / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (g / "._plain.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (g / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    figure(seed=11).save(b / "Nippur" / "figurine ä 1.jpg")
    figure(seed=12).save(b / "Nippur" / "deep" / "nested" / "fig.jpg")
    figure(seed=13).save(b / "Uruk" / "fig.png")
    os.symlink("..", b / "Uruk" / "loop")  # a symlink loop
    return root


# Names a user's folders or metadata.csv may give, each trying what a name must never do in the app or the CLI:
# fetch a URL, become a link, colour or format text, run in a spreadsheet, or drive a terminal.
HOSTILE = {
    "Classical Greek and Hellenistic": "![p](http://evil.invalid/pixel.png)",
    "Neo-Babylonian": "[Session expired: log in again](http://evil.invalid/login)",
    "Achaemenid": ":red[Achaemenid] <img src='http://evil.invalid/i.png'> $x^2$ \x1b]0;owned\x07\x1b[2J",
}
HOSTILE_SITES = {"Uruk": "=HYPERLINK(\"http://evil.invalid/u\")", "Kish": "Kish\n**[s](http://evil.invalid/s)**"}
EVIL = "evil.invalid"


def hostile(demo: Path, root: Path) -> Path:
    """A copy of a demo collection whose source cultures and find-sites carry hostile names (metadata.csv)."""
    import csv
    import shutil

    shutil.copytree(demo, root, dirs_exist_ok=True)
    (root / "truth.json").unlink(missing_ok=True)
    rows = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = f.relative_to(root).parts
        culture = HOSTILE.get(parts[0], parts[0])
        site = HOSTILE_SITES.get(parts[1], parts[1]) if len(parts) > 2 else ""
        rows.append((f.relative_to(root).as_posix(), culture, site))
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(["path", "culture", "site"])
        w.writerows(rows)
    return root


def answerable(root: Path) -> Path:
    """A collection the tool answers in every representation: the demo's three source styles, 100 of each, and
    two find-sites of 100 figurines that are plain mixtures of them (no local making), at 64 px."""
    from core.demo import SOURCES, Collection, generate

    generate(root, size=64, scale=0.1, seed=0, collection=Collection(
        sources={s: 1000 for s in SOURCES}, local="none",
        sites={"Uruk": (1000, (0.3, 0.55, 0.15)), "Nippur": (1000, (0.12, 0.78, 0.1))}))
    return root
