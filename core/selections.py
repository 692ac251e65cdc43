"""Named selections of figurines kept with their run (`selections.json`: name -> file paths, relative to the
run's dataset folder), the groups they colour the maps by, and contact sheets to print them."""
from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from .errors import UserError
from .images import UnreadableImage, decode
from .runs import CAPS, Run, read_json, write_json

FILE = "selections.json"
NAME_LIMIT = 80  # characters
NONE = "in no saved selection"
COLOURS = ["#e6550d", "#3182bd", "#31a354", "#d6616b", "#756bb1", "#e7ba52", "#17becf", "#843c39"]
NONE_COLOUR = "#c9b99a"  # sand: quieter than any selection, yet not the grey of filtered-out figurines
SHEET_LIMIT = 1000  # figurines on one contact sheet (PDF); the PNG holds its first pages
PNG_PAGES = 4
_DPI, _PAGE = 150, (1240, 1754)  # A4 portrait at 150 dpi
_COLS, _ROWS, _MARGIN, _CELL_IMAGE = 5, 5, 60, 196


def load(run: Run) -> dict[str, list[str]]:
    """The run's saved selections, in the order saved; a damaged file reads as none (and is replaced on save)."""
    try:
        data = read_json(run.dir / FILE, CAPS["selections.json"])
    except (FileNotFoundError, OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(p) for p in v] for k, v in data.items() if isinstance(v, list)}


def check_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise UserError("give the selection a name, such as “oval-base group”")
    if len(name) > NAME_LIMIT:
        raise UserError(f"a selection's name may be at most {NAME_LIMIT} characters ({len(name)} given)")
    return name


def save(run: Run, name: str, paths) -> str:
    """Keep `paths` under `name` with the run (a selection of that name is replaced); the name as kept."""
    name = check_name(name)
    paths = list(dict.fromkeys(str(p) for p in paths))
    if not paths:
        raise UserError("select some figurines in either chart before saving a selection")
    write_json(run.dir / FILE, {**load(run), name: paths})
    return name


def delete(run: Run, name: str) -> None:
    kept = load(run)
    kept.pop(name, None)
    write_json(run.dir / FILE, kept)


def rows(enc: pd.DataFrame, paths) -> np.ndarray:
    """Row positions of `enc` whose path is one of `paths` (files no longer in the run are left out)."""
    return np.flatnonzero(enc["path"].isin(set(paths)).to_numpy())


def groups(enc: pd.DataFrame, saved: dict[str, list[str]]) -> pd.Series:
    """Each figurine's saved selection (the first saved that holds it), or NONE."""
    out = pd.Series(NONE, index=enc.index, dtype=object)
    for name, paths in reversed(saved.items()):
        out.iloc[rows(enc, paths)] = name
    return out


def colours(saved: dict[str, list[str]]) -> dict[str, str]:
    return {**{n: COLOURS[i % len(COLOURS)] for i, n in enumerate(saved)}, NONE: NONE_COLOUR}


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans where the system has it (it covers Greek and accents), Pillow's own font otherwise."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """`text` broken into at most `lines` lines of at most `width` px: after a space, `/`, `_` or `-` where it
    can, inside a word only where the word alone is wider than a line; a longer text keeps its end ("…" first),
    where a file's name is."""
    def fits(s: str) -> bool:
        return draw.textlength(s.rstrip(), font=font) <= width

    out, line = [], ""
    for piece in re.findall(r"[^\s/_-]*[\s/_-]|[^\s/_-]+", text):  # each piece with the separator after it
        if fits(line + piece):
            line += piece
            continue
        if line:
            out.append(line.rstrip())
        while not fits(piece):  # wider than a line on its own: broken where it must
            k = 1
            while k < len(piece) and fits(piece[:k + 1]):
                k += 1
            out.append(piece[:k])
            piece = piece[k:]
        line = piece
    out.append(line.rstrip())
    if len(out) <= lines:
        return out
    tail = text[-1:]
    while len(tail) < len(text) and fits("…" + text[-len(tail) - 1:]):
        tail = text[-len(tail) - 1:]
    return out[:lines - 1] + ["…" + tail]


def contact_sheet(table: pd.DataFrame, root: str | Path, title: str) -> list[Image.Image]:
    """A4 pages (150 dpi) of the figurines in `table` (path, culture, site): each photograph as photographed,
    with its culture, find-site and full file name under it; a file that cannot be read says so in its place."""
    if len(table) > SHEET_LIMIT:
        title = f"{title} · the first {SHEET_LIMIT:,}"
        table = table.iloc[:SHEET_LIMIT]
    per_page = _COLS * _ROWS
    n_pages = max(1, -(-len(table) // per_page))
    head, small = _font(22), _font(13)
    cell_w = (_PAGE[0] - 2 * _MARGIN) // _COLS
    cell_h = (_PAGE[1] - 2 * _MARGIN - 60) // _ROWS
    pages = []
    for p in range(n_pages):
        page = Image.new("RGB", _PAGE, "white")
        draw = ImageDraw.Draw(page)
        draw.text((_MARGIN, _MARGIN - 10), f"{title} · page {p + 1} of {n_pages} · {date.today():%d %B %Y}",
                  fill="black", font=head)
        for k, (_, r) in enumerate(table.iloc[p * per_page:(p + 1) * per_page].iterrows()):
            x = _MARGIN + (k % _COLS) * cell_w + (cell_w - _CELL_IMAGE) // 2
            y = _MARGIN + 50 + (k // _COLS) * cell_h
            try:
                page.paste(Image.fromarray(decode(str(Path(root) / r["path"]), _CELL_IMAGE)), (x, y))
            except (UnreadableImage, OSError) as e:
                draw.rectangle((x, y, x + _CELL_IMAGE, y + _CELL_IMAGE), outline="#999999")
                for i, line in enumerate(_wrap(draw, f"cannot be read: {e}", small, _CELL_IMAGE - 10, 4)):
                    draw.text((x + 5, y + 5 + 16 * i), line, fill="#666666", font=small)
            label = _wrap(draw, f"{r['culture']} · {r['site'] or '—'}", small, _CELL_IMAGE, 2) + \
                _wrap(draw, str(r["path"]), small, _CELL_IMAGE, 3)
            for i, line in enumerate(label):
                draw.text((x, y + _CELL_IMAGE + 4 + 16 * i), line, fill="black", font=small)
        pages.append(page)
    return pages


def sheet(table: pd.DataFrame, root: str | Path, title: str, fmt: str) -> bytes:
    """The contact sheet of `table` as a file: "pdf" (every page) or "png" (`sheet_png`)."""
    pages = contact_sheet(table, root, title)
    return sheet_pdf(pages) if fmt == "pdf" else sheet_png(pages)


def sheet_pdf(pages: list[Image.Image]) -> bytes:
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", save_all=True, append_images=pages[1:], resolution=_DPI)
    return buf.getvalue()


def sheet_png(pages: list[Image.Image]) -> bytes:
    """The first PNG_PAGES pages, one under the other, as one PNG."""
    pages = pages[:PNG_PAGES]
    out = Image.new("RGB", (_PAGE[0], _PAGE[1] * len(pages)), "white")
    for i, p in enumerate(pages):
        out.paste(p, (0, i * _PAGE[1]))
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=True, dpi=(_DPI, _DPI))
    return buf.getvalue()
