"""The embedded demo: procedural photographs of clay figurines with a known answer.

Each source culture has its own distribution of silhouette, proportions, pose, headdress, drapery,
base, clay colour and surface texture:

- Classical Greek and Hellenistic: slender draped women in contrapposto (Tanagra style), small heads
  with a bun, veil or wreath, diagonal himation folds, buff-pink smooth clay, a rectangular plinth.
- Neo-Babylonian: stiff frontal nude women holding their breasts, large heads, wide hips, legs
  tapering to a point, necklace and girdle bands, red-brown coarse clay, no base.
- Achaemenid: frontal robed figures with a tall fluted crown, flaring pleated Persian robe and wide
  sleeves, hands clasped at the waist, grey-brown speckled clay, a low base.

A Hellenistic Babylonian figurine from a site takes its style (silhouette, pose, headdress, drapery)
from a source culture picked with that site's mixing weights (written to `truth.json`), so each site's
true influence shares are known; local making adds what no source has: a low oval base, clay tinted
towards the yellow-grey Babylonian alluvium, and patches of white gypsum coating.
All of it is deterministic in the seed, whatever the number of worker processes.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import UserError
from .parallel import map_chunks

HB, GREEK, NEOBAB, ACHAEMENID = ("Hellenistic Babylonian", "Classical Greek and Hellenistic",
                                 "Neo-Babylonian", "Achaemenid")
CULTURES = (HB, GREEK, NEOBAB, ACHAEMENID)
BACKDROPS = ("studio", "dark", "white", "spotlight", "cloth")  # a studio sweep, velvet, paper, a spotlight, cloth
SOURCES = (GREEK, NEOBAB, ACHAEMENID)
STUDY_COUNTS = {HB: 3144, GREEK: 887, NEOBAB: 204, ACHAEMENID: 80}
# Site: (share of the study's Hellenistic Babylonian figurines, mixing weights over SOURCES).
SITES = {
    "Babylon": (900, (0.50, 0.38, 0.12)),
    "Seleucia on the Tigris": (800, (0.75, 0.20, 0.05)),
    "Uruk": (420, (0.30, 0.55, 0.15)),
    "Nippur": (300, (0.12, 0.78, 0.10)),
    "Ctesiphon": (250, (0.62, 0.13, 0.25)),
    "Kish": (200, (0.20, 0.60, 0.20)),
    "Borsippa": (134, (0.05, 0.85, 0.10)),
    "Unprovenanced": (140, (0.40, 0.40, 0.20)),
}

# Per culture: clay colour mean (RGB) and spread, texture grain, and the silhouette's proportions
# (as fractions of the figure's height: head diameter, shoulder, hip and hem half-widths, base height).
STYLE = {
    GREEK: dict(clay=(214, 168, 138), clay_sd=12, grain=6, pits=0.0, head=0.125, shoulder=0.12,
                hip=0.125, hem=0.15, base=0.075, sway=0.045),
    NEOBAB: dict(clay=(168, 96, 62), clay_sd=14, grain=16, pits=0.004, head=0.2, shoulder=0.16,
                 hip=0.2, hem=0.06, base=0.0, sway=0.0),
    ACHAEMENID: dict(clay=(138, 128, 112), clay_sd=10, grain=10, pits=0.002, head=0.15, shoulder=0.15,
                     hip=0.17, hem=0.23, base=0.03, sway=0.0),
}


@dataclass(frozen=True)
class Collection:
    """How a collection is drawn: its cultures' folder names (by the source style each is drawn in), how many
    of each, its target culture's find-sites and their mixing weights over `SOURCES`, what local making
    adds to the target figurines (`local`: the demo's oval base, alluvial clay and gypsum; "slip": a dark red
    slip and nothing else; "none"), and `kinship`: how far the sources' proportions and clay are drawn
    towards one another (0: the demo's distinct styles; 1: one style); `borrowing`: the share of figures whose
    headdress and relief lines are drawn after another source's style, as related workshops share motifs (0:
    none); `backdrops`: the kinds of backdrop its photographs are taken on (`BACKDROPS`), one drawn at random for
    each photograph whatever its culture."""

    target: str = HB
    names: dict = field(default_factory=lambda: {s: s for s in SOURCES})
    sources: dict = field(default_factory=lambda: {s: STUDY_COUNTS[s] for s in SOURCES})
    sites: dict = field(default_factory=lambda: SITES)
    local: str = "demo"
    kinship: float = 0.0
    borrowing: float = 0.0
    backdrops: tuple = ("studio",)


# A collection drawn unlike the demo, to measure every default on more than one: three related source
# traditions of similar sizes, a target culture of four find-sites of 51 figurines each (like the real
# photographs the product is checked on), and a weaker local making of another kind.
SECOND = Collection(
    target="Seleucid Mesopotamian",
    names={GREEK: "Ionian", NEOBAB: "Late Assyrian", ACHAEMENID: "Median"},
    sources={GREEK: 130, NEOBAB: 120, ACHAEMENID: 110},
    sites={"Dura": (51, (0.6, 0.3, 0.1)), "Assur": (51, (0.2, 0.5, 0.3)), "Tell Umar": (51, (0.34, 0.33, 0.33)),
           "Larsa": (51, (0.1, 0.2, 0.7))},
    local="slip", kinship=0.5)
# The second collection photographed on every kind of backdrop (the same figures): does the map group by backdrop?
VARIED = replace(SECOND, backdrops=BACKDROPS)
# The varied collection's cultures drawn closer, as related traditions are: proportions and clay 80% of the way
# to their mean, and three figures in ten with another source's motifs. Its sources are about as hard to tell
# apart as the real photographs' (10-NN in the maps about 0.67; HOG on the real ones: 0.70-0.74).
RELATED = replace(VARIED, kinship=0.8, borrowing=0.3)
COLLECTIONS = {"demo": Collection(), "second": SECOND, "varied": VARIED, "related": RELATED}


def counts(scale: float = 1.0, collection: Collection = Collection()) -> dict[str, dict[str, int]]:
    """Images per culture and site (sites only for the target culture) at a scale of the collection."""
    if not 0 < scale <= 20:
        raise UserError(f"--scale must be in (0, 20], got {scale}")
    out = {collection.names[c]: {"": max(1, round(n * scale))} for c, n in collection.sources.items()}
    out[collection.target] = {s: max(1, round(n * scale)) for s, (n, _) in collection.sites.items()}
    return out


def _jitter(rng: np.random.Generator, v: float, rel: float = 0.08) -> float:
    return v * (1 + rel * rng.standard_normal())


def _background(rng: np.random.Generator, d: int) -> np.ndarray:
    """A studio sweep: a light paper background with a soft vertical gradient, any culture alike."""
    tone = rng.uniform(175, 235)
    tint = rng.normal(0, 2.5, 3)
    grad = np.linspace(1.04, 0.92, d)[:, None, None] * rng.uniform(0.9, 1.1)
    return np.clip((tone + tint)[None, None, :] * grad * np.ones((d, d, 3)), 0, 255)


def _backdrop(kind: str, rng: np.random.Generator, d: int) -> np.ndarray:
    """A museum backdrop of a kind (`BACKDROPS`), float (d, d, 3)."""
    if kind == "studio":
        return _background(rng, d)
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32) / d
    if kind == "dark":  # black velvet, vignetted, with a faint pile
        r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
        tone = rng.uniform(18, 45) * (1 - 0.8 * r2) + rng.normal(0, 2.0, (d, d))
        return np.clip(tone[..., None] + rng.normal(0, 1.5, 3), 0, 255) * np.ones((1, 1, 3))
    if kind == "white":  # near-white paper, a slight tilt of light
        tone = rng.uniform(232, 250) * (1 + 0.03 * rng.uniform(-1, 1) * (xx - 0.5))
        return np.clip(tone[..., None] + rng.normal(0, 1.0, 3), 0, 255) * np.ones((1, 1, 3))
    if kind == "spotlight":  # a pool of light high on the figure, falling off into a dark sweep
        cx, cy = 0.5 + rng.normal(0, 0.08), rng.uniform(0.25, 0.45)
        r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / rng.uniform(0.08, 0.15)
        tone = 25 + rng.uniform(150, 200) * np.exp(-r2)
        return np.clip(tone[..., None] * np.array([1.0, 0.97, 0.9]), 0, 255)
    if kind == "cloth":  # coloured cloth: a weave and a few soft folds
        colour = np.array([rng.uniform(40, 200) for _ in range(3)], np.float32)
        weave = 6 * np.sin(xx * d * 1.6) * np.sin(yy * d * 1.6)
        folds = 1 + 0.18 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(-1, 1) + rng.random()))
        return np.clip(colour * folds[..., None] + weave[..., None], 0, 255)
    raise ValueError(f"unknown backdrop {kind!r}")


def _kin(culture: str, kinship: float) -> dict:
    """A source style's numbers drawn `kinship` of the way towards the mean of all three."""
    s = STYLE[culture]
    if not kinship:
        return s
    mean = {k: np.mean([STYLE[c][k] for c in SOURCES], 0) for k in s}
    return {k: (1 - kinship) * np.asarray(v, float) + kinship * mean[k] if k != "grain" else v for k, v in s.items()}


def _figure(culture: str, rng: np.random.Generator, d: int, local: bool, kinship: float = 0.0,
            borrowing: float = 0.0) -> tuple[Image.Image, Image.Image]:
    """The figure's silhouette mask and a relief-line mask (folds, arms, pleats), both 'L' images: the
    proportions of `culture`'s style, its motifs (headdress, arms, folds) those of another source for a share
    `borrowing` of figures."""
    s = dict(_kin(culture, kinship), base=0.05) if local else _kin(culture, kinship)
    if borrowing and rng.random() < borrowing:
        culture = SOURCES[(SOURCES.index(culture) + rng.integers(1, 3)) % 3]
    mask, lines = Image.new("L", (d, d), 0), Image.new("L", (d, d), 0)
    m, ln = ImageDraw.Draw(mask), ImageDraw.Draw(lines)
    H = d * rng.uniform(0.66, 0.8)
    cx = d / 2 + rng.normal(0, 0.02 * d)
    ground = d * rng.uniform(0.9, 0.95)
    base = _jitter(rng, s["base"], 0.25) * H if s["base"] else 0.0
    feet = ground - base
    top = feet - H
    head_d = _jitter(rng, s["head"], 0.08) * H
    crown = 0.0
    if culture == ACHAEMENID:  # tall fluted crown sits on the head: the body shrinks under it
        crown = head_d * rng.uniform(0.55, 0.95)
        top += crown
    neck = top + head_d * 1.05
    shoulder_y = neck + 0.035 * H
    hip_y = shoulder_y + rng.uniform(0.3, 0.36) * H
    sway = s["sway"] * H * rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)
    sw, hw, mw = (_jitter(rng, s[k]) * H for k in ("shoulder", "hip", "hem"))
    hip_c = cx + sway
    body = [(cx - sw - sway * 0.4, shoulder_y), (hip_c - hw, hip_y), (cx - mw, feet),
            (cx + mw, feet), (hip_c + hw, hip_y), (cx + sw - sway * 0.4, shoulder_y)]
    if culture == NEOBAB:  # legs taper to a point; rounded belly
        body[2], body[3] = (cx - mw, feet), (cx + mw * 0.6, feet)
    m.polygon(body, fill=255)
    m.ellipse([cx - sw * 1.05, shoulder_y - 0.03 * H, cx + sw * 1.05, shoulder_y + 0.06 * H], fill=255)
    m.rectangle([cx - head_d * 0.18, neck - 2, cx + head_d * 0.18, shoulder_y + 2], fill=255)
    hx = cx - sway * 0.5
    m.ellipse([hx - head_d * 0.42, top, hx + head_d * 0.42, neck], fill=255)
    if base and local:
        bw = max(mw, hw) * rng.uniform(1.3, 1.6)
        m.ellipse([cx - bw, feet - base * 0.6, cx + bw, ground], fill=255)
    elif base:
        bw = max(mw, hw) * rng.uniform(1.05, 1.35)
        m.rectangle([cx - bw, feet - 1, cx + bw, ground], fill=255)
        ln.line([(cx - bw, feet + 1), (cx + bw, feet + 1)], fill=200, width=max(1, d // 96))
    w = max(1, d // 80)
    if culture == GREEK:
        kind = rng.choice(["bun", "veil", "wreath"], p=[0.5, 0.3, 0.2])
        if kind == "bun":
            bx = hx + rng.choice([-1, 1]) * head_d * 0.3
            m.ellipse([bx - head_d * 0.22, top - head_d * 0.12, bx + head_d * 0.22, top + head_d * 0.3], fill=255)
        elif kind == "veil":  # the himation drawn over the head: a hooded silhouette down to the elbows
            m.polygon([(hx - head_d * 0.5, top + head_d * 0.2), (hx + head_d * 0.5, top + head_d * 0.2),
                       (cx + sw * 1.25, hip_y - 0.12 * H), (cx - sw * 1.25, hip_y - 0.12 * H)], fill=255)
        else:
            for k in range(7):
                a = math.pi * (0.15 + 0.7 * k / 6)
                px, py = hx - math.cos(a) * head_d * 0.45, top + head_d * 0.45 - math.sin(a) * head_d * 0.5
                m.ellipse([px - head_d * 0.1, py - head_d * 0.1, px + head_d * 0.1, py + head_d * 0.1], fill=255)
        side = rng.choice([-1, 1])  # one arm akimbo, the other wrapped in the mantle
        ex = cx + side * (sw + 0.09 * H)
        m.polygon([(cx + side * sw * 0.9, shoulder_y + 0.02 * H), (ex, shoulder_y + 0.17 * H),
                   (hip_c + side * hw * 0.9, hip_y - 0.02 * H)], fill=255)
        for k in range(rng.integers(5, 9)):  # diagonal himation folds across the body
            y0 = shoulder_y + (0.05 + 0.07 * k) * H
            ln.arc([cx - sw * 1.6, y0 - 0.1 * H, cx + sw * 1.6, y0 + 0.12 * H],
                   start=20 + 15 * side, end=150 + 15 * side, fill=190, width=w)
        for k in range(rng.integers(3, 6)):  # vertical chiton folds below the mantle
            x = cx - mw * 0.7 + k * mw * 0.35
            ln.line([(x + sway * 0.3, hip_y + 0.12 * H), (x, feet - 2)], fill=150, width=w)
    elif culture == NEOBAB:
        kind = rng.choice(["cap", "none", "horns"], p=[0.5, 0.3, 0.2])
        if kind == "cap":
            m.chord([hx - head_d * 0.48, top - head_d * 0.25, hx + head_d * 0.48, top + head_d * 0.55],
                    180, 360, fill=255)
        elif kind == "horns":
            for sd in (-1, 1):
                m.polygon([(hx + sd * head_d * 0.2, top + head_d * 0.1), (hx + sd * head_d * 0.55, top - head_d * 0.3),
                           (hx + sd * head_d * 0.35, top + head_d * 0.2)], fill=255)
        by = shoulder_y + 0.1 * H  # breasts held by the hands, arms crossing the chest
        for sd in (-1, 1):
            ln.ellipse([cx + sd * sw * 0.45 - 0.035 * H, by - 0.035 * H, cx + sd * sw * 0.45 + 0.035 * H,
                        by + 0.035 * H], outline=230, width=w)
            ln.line([(cx + sd * sw, shoulder_y + 0.01 * H), (cx - sd * sw * 0.35, by + 0.05 * H)],
                    fill=230, width=2 * w)
        ln.line([(cx - sw * 0.6, neck + 0.02 * H), (cx + sw * 0.6, neck + 0.02 * H)], fill=200, width=w)
        for k in range(rng.integers(1, 3)):  # girdle bands
            y = hip_y + (0.04 + 0.05 * k) * H
            ln.line([(cx - hw * 0.8, y), (cx + hw * 0.8, y)], fill=210, width=w)
        ln.line([(cx, hip_y + 0.12 * H), (cx - mw * 0.2, feet - 2)], fill=200, width=w)
    else:
        flare = rng.uniform(1.0, 1.3)
        m.polygon([(hx - head_d * 0.42, top + head_d * 0.25), (hx + head_d * 0.42, top + head_d * 0.25),
                   (hx + head_d * 0.42 * flare, top - crown), (hx - head_d * 0.42 * flare, top - crown)], fill=255)
        for k in range(5):  # flutes of the crown
            x = hx - head_d * 0.3 + k * head_d * 0.15
            ln.line([(x, top - crown + 2), (x, top + head_d * 0.15)], fill=170, width=w)
        m.polygon([(cx - sw, shoulder_y), (cx - sw - 0.09 * H, hip_y + 0.05 * H), (cx - hw * 0.5, hip_y),
                   (cx + hw * 0.5, hip_y), (cx + sw + 0.09 * H, hip_y + 0.05 * H), (cx + sw, shoulder_y)], fill=255)
        for sd in (-1, 1):  # arms in the sleeves down to the clasped hands
            ln.line([(cx + sd * sw * 0.8, shoulder_y + 0.04 * H), (cx + sd * 0.03 * H, hip_y - 0.03 * H)],
                    fill=200, width=w)
        ln.ellipse([cx - 0.035 * H, hip_y - 0.06 * H, cx + 0.035 * H, hip_y], outline=220, width=w)
        n = rng.integers(8, 14)
        for k in range(n):  # dense vertical pleats of the robe
            t = k / (n - 1) - 0.5
            ln.line([(cx + t * hw * 1.4, hip_y + 0.04 * H), (cx + t * mw * 1.9, feet - 2)], fill=180, width=w)
        ln.line([(cx, shoulder_y + 0.05 * H), (cx, feet - 2)], fill=120, width=2 * w)
    angle = rng.normal(0, 2.0)
    return (mask.rotate(angle, Image.Resampling.BILINEAR, center=(cx, feet)),
            lines.rotate(angle, Image.Resampling.BILINEAR, center=(cx, feet)))


def figurine(culture: str, rng: np.random.Generator, size: int, local: bool | str = False,
             kinship: float = 0.0, backdrop: str = "studio", borrowing: float = 0.0) -> Image.Image:
    """One photograph of a figurine in a source culture's style, `size` x `size` RGB.

    `local` (True or "demo"): made in Hellenistic Babylonia in that style (oval base, alluvial clay, gypsum
    coating); "slip": made locally under a dark red slip, the figure's shape unchanged; False or "none": not.
    `backdrop`: one of `BACKDROPS`; `kinship` and `borrowing` as in `Collection`.
    """
    return photograph(culture, rng, size, local, kinship, backdrop, borrowing)[0]


def photograph(culture: str, rng: np.random.Generator, size: int, local: bool | str = False,
               kinship: float = 0.0, backdrop: str = "studio", borrowing: float = 0.0
               ) -> tuple[Image.Image, np.ndarray]:
    """`figurine`'s photograph and the figure's true silhouette (bool, size x size)."""
    kind = {True: "demo", False: "none"}.get(local, local)
    slip, local = kind == "slip", kind == "demo"
    s = _kin(culture, kinship)
    d = max(128, 2 * size)  # drawn at twice the size, then reduced: smooth edges
    mask, lines = _figure(culture, rng, d, local, kinship, borrowing)
    a = np.asarray(mask, np.float32) / 255
    rounded = np.asarray(mask.filter(ImageFilter.GaussianBlur(d * 0.025)), np.float32) / 255
    relief = np.asarray(lines.filter(ImageFilter.GaussianBlur(max(0.6, d / 200))), np.float32) / 255
    clay = np.array(s["clay"], np.float32) * (1 + s["clay_sd"] / 150 * rng.standard_normal())
    clay = (clay + rng.normal(0, 4, 3)).astype(np.float32)
    if local:
        clay = 0.55 * clay + 0.45 * np.array([178, 176, 140], np.float32)
    if slip:
        clay = 0.7 * clay + 0.3 * np.array([120, 52, 40], np.float32)
    light = rng.uniform(-1, 1)
    x = np.linspace(-1, 1, d, dtype=np.float32)[None, :]
    shade = (0.55 + 0.45 * rounded ** 0.6) * (1 + 0.12 * light * x) * (1 - 0.45 * relief)
    grain = rng.normal(0, s["grain"], (d, d)).astype(np.float32)
    if s["pits"]:
        grain -= 60 * (rng.random((d, d)) < s["pits"])
    fig = np.clip(clay[None, None, :] * shade[..., None] + grain[..., None], 0, 255)
    if local:  # patches of white gypsum coating
        blobs = rng.random((d // 16, d // 16)) < 0.3
        coat = np.asarray(Image.fromarray(blobs.astype(np.uint8) * 255).resize((d, d), Image.Resampling.BILINEAR)
                          .filter(ImageFilter.GaussianBlur(d / 40)), np.float32)[..., None] / 255
        fig = fig * (1 - 0.55 * coat) + 0.55 * coat * np.array([236, 232, 222], np.float32)
    bg = _backdrop(backdrop, rng, d)
    shadow = np.asarray(mask.transform(mask.size, Image.Transform.AFFINE, (1, 0, -0.04 * d * light, 0, 1, 0))
                        .filter(ImageFilter.GaussianBlur(d * 0.03)), np.float32) / 255
    bg = bg * (1 - 0.3 * shadow[..., None])
    out = fig * a[..., None] + bg * (1 - a[..., None])
    img = Image.fromarray(out.astype(np.uint8))
    if d != size:
        img, mask = img.resize((size, size), Image.Resampling.LANCZOS), mask.resize((size, size), Image.Resampling.BOX)
    return img, np.asarray(mask) >= 128


def _plan(scale: float, collection: Collection) -> list[tuple[str, str]]:
    """(culture, site) for every image, in a fixed order."""
    return [(c, site) for c, per_site in counts(scale, collection).items() for site, n in per_site.items()
            for _ in range(n)]


def _style(rng: np.random.Generator, site: str, collection: Collection = Collection()) -> str:
    """The source culture a site's figurine follows, drawn with the site's mixing weights (the rng's first draw)."""
    return SOURCES[rng.choice(3, p=collection.sites[site][1])]


def _file_stem(culture: str) -> str:
    return culture.split()[0].lower()


def drawn_style(path: str, site: str, seed: int, collection: Collection = Collection()) -> str | None:
    """The source whose style the generator drew one of its target figurines in, from the file's name
    (`hellenistic_00042.jpg`) and site; None for a file it did not draw so."""
    m = re.fullmatch(rf"{re.escape(_file_stem(collection.target))}_(\d+)\.(jpg|TIF)", os.path.basename(path))
    if not (m and site in collection.sites):
        return None
    return _style(np.random.default_rng([seed, int(m.group(1))]), site, collection)


def _backdrop_of(i: int, seed: int, backdrops: tuple | list) -> str:
    """The backdrop the `i`-th photograph is taken on (its own random draw: the figures do not change with it)."""
    if len(backdrops) == 1:
        return backdrops[0]
    return backdrops[np.random.default_rng([seed, i, 1]).integers(len(backdrops))]


def drawn_backdrop(path: str, seed: int, backdrops: tuple | list) -> str | None:
    """The backdrop the generator took one of its photographs on, from the file's name; None for another file."""
    m = re.fullmatch(r"[^_]+_(\d+)\.(jpg|TIF)", os.path.basename(path))
    return _backdrop_of(int(m.group(1)), seed, backdrops) if m else None


def _render_chunk(args: tuple[str, int, int, list[tuple[int, str, str]], Collection]) -> None:
    out, size, seed, jobs, collection = args
    drawn_as = {name: style for style, name in collection.names.items()}
    for i, culture, site in jobs:
        rng = np.random.default_rng([seed, i])
        local = culture == collection.target
        style = _style(rng, site, collection) if local else drawn_as[culture]
        backdrop = _backdrop_of(i, seed, collection.backdrops)
        img = figurine(style, rng, size, collection.local if local else "none", collection.kinship, backdrop,
                       collection.borrowing)
        tif = rng.random() < 0.1  # the study mixed .jpg and .TIF, independent of culture
        folder = Path(out, culture, site)
        name = f"{_file_stem(culture)}_{i:05d}"
        if tif:
            img.save(folder / f"{name}.TIF", compression="tiff_lzw")
        else:
            img.save(folder / f"{name}.jpg", quality=92)


def generate(out: str | os.PathLike, size: int = 64, scale: float = 1.0, seed: int = 0,
             progress: Callable[[int, int], None] | None = None, workers: int | None = None,
             collection: Collection = Collection()) -> dict:
    """Write the demo dataset (or another `collection`: culture/site folders and truth.json) to `out`; return
    the truth."""
    if not 16 <= size <= 1024:
        raise UserError(f"--size must be between 16 and 1024, got {size}")
    if not 0 <= seed < 2**32:
        raise UserError(f"--seed must be between 0 and {2**32 - 1}, got {seed}")
    out = Path(out).expanduser()
    plan = _plan(scale, collection)
    for c, site in set(plan):
        Path(out, c, site).mkdir(parents=True, exist_ok=True)
    jobs = [(i, c, s) for i, (c, s) in enumerate(plan)]
    chunks = [(str(out), size, seed, jobs[i:i + 64], collection) for i in range(0, len(jobs), 64)]
    for _ in map_chunks(_render_chunk, chunks, [len(c[3]) for c in chunks], workers, progress):
        pass
    drawn = {s: dict.fromkeys(SOURCES, 0) for s in collection.sites}
    for i, c, site in jobs:
        if c == collection.target:
            drawn[site][_style(np.random.default_rng([seed, i]), site, collection)] += 1
    drawn = {s: {collection.names[c]: n / max(1, sum(k.values())) for c, n in k.items()} for s, k in drawn.items()}
    weights = {s: {collection.names[c]: v for c, v in zip(SOURCES, w)} for s, (_, w) in collection.sites.items()}
    # the demo's known answer is its mixing weights (as DESIGN.md says); another collection's, whose sites are
    # small, is the share of each site's figurines actually drawn in each style
    truth = {"seed": seed, "size": size, "scale": scale, "collection": collection.target,
             "backdrops": list(collection.backdrops),
             "sites": weights if collection == Collection() else drawn, "weights": weights, "drawn": drawn,
             "counts": {c: sum(v.values()) for c, v in counts(scale, collection).items()}}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def ensure(out: str | os.PathLike, size: int = 64, progress: Callable[[int, int], None] | None = None,
           scale: float | None = None) -> Path:
    """The demo dataset at `out`, generated on first use (into a temporary folder, then renamed).

    `scale` defaults to $FIGURINES_DEMO_SCALE, else the study's full size.
    """
    out = Path(out)
    if (out / "truth.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, size=size, progress=progress, scale=scale or float(os.environ.get("FIGURINES_DEMO_SCALE") or 1))
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out
