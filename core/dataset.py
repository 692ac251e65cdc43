"""A folder of figurine photographs -> a manifest -> a decoded, memory-mapped uint8 cache.

Layout: `<root>/<culture>/[<site>/...]/<image>`, with an optional `<root>/metadata.csv`
(`path,culture,site`, path relative to root) that overrides the folder labels. Every image is decoded
once per (dataset fingerprint, image size, background handling), in parallel (large files within a memory
budget), into `<cache>/<fingerprint>-<size>-<background>/`; later epochs, runs and the app only map that
file. When files are added, removed or changed, the fingerprint changes and only the new or changed files
are decoded again.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from filelock import FileLock

from .errors import UserError
from . import images
from .images import BACKGROUNDS, decode, is_image_name, unsupported_format, UnreadableImage
from .parallel import MemorySlots, available_memory, map_chunks, process_start
from .paths import data_roots, not_a_folder

Progress = Callable[[int, int], None]
MANIFEST_COLUMNS = ["path", "culture", "site", "bytes", "mtime_ns", "readable", "reason"]
_SKIP_DIRS = {"__MACOSX", "$RECYCLE.BIN", "System Volume Information"}
UNLABELLED = "not inside a culture folder (and not in metadata.csv)"


def cache_root() -> Path:
    """Where decoded images live: $FIGURINES_CACHE, else ~/.cache/figurines."""
    return Path(os.environ.get("FIGURINES_CACHE") or Path.home() / ".cache" / "figurines")


def cache_secret() -> bytes:
    """This installation's key for sealing the results it caches in run folders: a results file that it did
    not write itself (copied from elsewhere, or forged with the right key) is computed again, never shown."""
    f = cache_root() / "secret.key"
    if not f.is_file():
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".secret-")
        try:
            os.write(fd, os.urandom(32))
            os.close(fd)
            os.link(tmp, f)  # atomic, and never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return f.read_bytes()


@dataclass
class Dataset:
    """The readable images of a folder, decoded to `image_size`, with their labels.

    `items` (path, culture, site, ...) and `images` (n, size, size, 3 uint8, memory-mapped) share rows;
    `manifest` lists every image file found, readable or not, with the reason.
    """

    root: str
    image_size: int
    background: str
    fingerprint: str
    manifest: pd.DataFrame
    images: np.ndarray

    @property
    def key(self) -> str:
        """Identifies the decoded pixels: what every cache downstream is keyed by."""
        return f"{self.fingerprint}-{self.image_size}-{self.background}"

    @property
    def items(self) -> pd.DataFrame:
        return self.manifest.loc[self.manifest["readable"]].reset_index(drop=True)

    @property
    def unreadable(self) -> pd.DataFrame:
        return self.manifest.loc[~self.manifest["readable"], ["path", "reason"]].reset_index(drop=True)

    @property
    def metadata_problems(self) -> int:
        """Rows of metadata.csv not used or not matched (each listed among `unreadable`, with its line)."""
        u = self.unreadable
        return int((u["path"].str.startswith("metadata.csv line") | u["reason"].str.startswith("metadata.csv")).sum())

    def counts(self) -> pd.DataFrame:
        """Readable images per culture and site."""
        return self.items.groupby(["culture", "site"], dropna=False).size().rename("images").reset_index()


def _refusal(top: str, name: str, allowed: list[Path]) -> str | None:
    """Why a file or folder found while walking is not read: a name that is not valid UTF-8, or a link
    that leads outside the dataset folder and the data roots."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (an old Windows or Mac archive?): rename it"
    path = os.path.join(top, name)
    if os.path.islink(path):
        real = Path(os.path.realpath(path))
        if not any(real == r or real.is_relative_to(r) for r in allowed):
            return "a link to a place outside this folder and the data roots: not followed"
    return None


def _walk(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under root, and the files and folders refused with the reason. Links are followed
    only into the folder itself and the data roots, and no folder is entered twice (no loops)."""
    allowed = [root.resolve(), *data_roots()]
    seen, found, refused = set(), [], []

    def unreadable(e: OSError) -> None:  # a folder the server may not open, a path too long for the system
        refused.append((Path(e.filename), f"this folder cannot be read ({e.strerror}): its files are not counted"))

    for top, dirs, files in os.walk(root, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(top)
        except OSError as e:
            unreadable(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS):
            why = _refusal(top, d, allowed)
            if why:
                refused.append((Path(top) / d, why))
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(f for f in files if is_image_name(f) or unsupported_format(f)):
            why = _refusal(top, f, allowed) or unsupported_format(f)
            if why:
                refused.append((Path(top) / f, why))
            else:
                found.append(Path(top) / f)
    return found, refused


def _shown(rel: str) -> str:
    """A path as text that can be shown and stored: bytes that are not UTF-8 written as \\xNN."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def _metadata(root: Path) -> tuple[list[dict], list[tuple[int, list[str], int]]] | None:
    """metadata.csv parsed strictly: its rows (path, culture, site, line; values stripped) and the rows
    with the wrong number of fields (line, fields, expected). A file that is not CSV text is a UserError."""
    f = root / "metadata.csv"
    if os.path.lexists(f) and (f.is_symlink() or not f.is_file()):
        raise UserError(f"{f} is a link, pipe or device, not a CSV file: replace it with the file itself")
    if not f.is_file():
        return None
    try:
        reader = csv.reader(io.StringIO(f.read_text(encoding="utf-8-sig")), skipinitialspace=True, strict=True)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = {"path", "culture"} - set(header)
        if missing:
            raise UserError(f"{f} needs the columns path,culture[,site]; missing: {', '.join(sorted(missing))}")
        rows, bad = [], []
        for fields in reader:
            if not any(v.strip() for v in fields):
                continue
            if len(fields) != len(header):
                bad.append((reader.line_num, fields, len(header)))
                continue
            row = dict(zip(header, (v.strip() for v in fields)))
            rows.append({"path": nfc(_relative(row["path"])), "culture": nfc(row["culture"]),
                         "site": nfc(row.get("site", "")), "line": reader.line_num})
        return rows, bad
    except UnicodeDecodeError as e:
        raise UserError(f"{f} is not UTF-8 text (byte {e.start}): save it as CSV UTF-8") from None
    except csv.Error as e:
        raise UserError(f"{f} line {reader.line_num} cannot be read as CSV: {e}") from None
    except OSError as e:
        raise UserError(f"{f} cannot be read: {e.strerror or e}") from None


def _relative(path: str) -> str:
    return re.sub(r"^(\./)+", "", path.replace("\\", "/"))


def nfc(text: str) -> str:
    """A name in Unicode's composed form (NFC): names typed on one system match files named on another
    (a Mac writes file names decomposed, NFD)."""
    return unicodedata.normalize("NFC", text)


def _relabel(m: pd.DataFrame, meta: tuple[list[dict], list[tuple[int, list[str], int]]]) -> pd.DataFrame:
    """Apply metadata.csv's labels to the manifest. A file whose row is malformed, gives no culture or
    contradicts another row is left out with the reason; rows naming no file found and repeated rows are
    listed too (as `metadata.csv line N`): nothing in the file is ignored silently."""
    rows, bad = meta
    m = m.set_index(m["path"].map(nfc).where(m["readable"], m["path"]))  # matched in NFC; twins keep their own
    extra, out = [], "metadata.csv line {}: "

    def leave_out(path: str, reason: str) -> None:
        m.loc[path, ["readable", "reason"]] = [False, reason]

    for line, fields, expected in bad:
        why = (f"{len(fields)} fields where the header has {expected} (an unquoted comma? put values holding "
               "commas in double quotes); not used until fixed")
        path = nfc(_relative(fields[0].strip())) if fields else ""
        if path in m.index:
            leave_out(path, out.format(line) + why)
        else:
            extra.append((f"metadata.csv line {line}", why))
    for path, group in pd.DataFrame(rows, columns=["path", "culture", "site", "line"]).groupby("path", sort=False):
        first, lines = group.iloc[0], ", ".join(map(str, group["line"]))
        if path not in m.index:
            extra.append((path, out.format(lines) + "names this file, but it is not in the folder"))
        elif len(group[["culture", "site"]].drop_duplicates()) > 1:
            leave_out(path, f"metadata.csv lines {lines}: give it different labels; keep one")
        elif not first["culture"]:
            leave_out(path, out.format(first["line"]) + "gives it no culture")
        else:
            m.loc[path, ["culture", "site"]] = [first["culture"], first["site"]]
        if len(group) > 1 and path in m.index and m.at[path, "readable"]:
            extra.append((f"metadata.csv line {group['line'].iloc[1]}", f"repeats line {first['line']} ({path})"))
    listed = pd.DataFrame([(p, "", "", 0, 0, False, why) for p, why in extra], columns=MANIFEST_COLUMNS)
    return pd.concat([m.reset_index(drop=True), listed], ignore_index=True).astype(m.dtypes.to_dict())


def scan(root: str | os.PathLike) -> pd.DataFrame:
    """List every image file under root with its culture and site (labels only, nothing decoded)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise not_a_folder(root)
    found, refused = _walk(root)
    rows = [(_shown(f.relative_to(root).as_posix()), "", "", 0, 0, False, why) for f, why in refused]
    for f in found:
        rel = f.relative_to(root).as_posix()
        parts = rel.split("/")
        try:
            st = f.stat()
        except OSError as e:  # a dangling symlink, a file removed while scanning
            rows.append((rel, "", "", 0, 0, False, f"cannot open ({e.strerror})"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a pipe or a device under an image's name: never opened
            rows.append((rel, "", "", 0, 0, False, "not a regular file (a pipe or a device?)"))
            continue
        culture = nfc(parts[0]) if len(parts) > 1 else ""
        site = nfc(parts[1]) if len(parts) > 2 else ""
        rows.append((rel, culture, site, st.st_size, st.st_mtime_ns, True, ""))
    m = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype({"bytes": "int64", "mtime_ns": "int64", "readable": bool})
    key = m["path"].map(nfc)
    twin = m["readable"] & key.duplicated()  # names that differ only in their Unicode form
    if twin.any():
        first = m["path"].groupby(key).first()
        m.loc[twin, "reason"] = [f"the same name as {first[k]} written in another Unicode form (a copy from a "
                                 "Mac?): a duplicate, or rename one of the two" for k in key[twin]]
        m.loc[twin, "readable"] = False
    meta = _metadata(root)
    if meta is not None:
        m = _relabel(m, meta)
    no_label = m["readable"] & (m["culture"] == "")
    m.loc[no_label, ["readable", "reason"]] = [False, UNLABELLED]
    return m


def fingerprint(manifest: pd.DataFrame, root: Path) -> str:
    """Changes whenever a file is added, removed, changed or relabelled."""
    h = hashlib.sha1()
    cols = manifest[["path", "culture", "site", "bytes", "mtime_ns"]].astype(str)
    h.update("\n".join("\t".join(r) for r in cols.itertuples(index=False)).encode())
    meta = root / "metadata.csv"
    if meta.is_file():
        h.update(meta.read_bytes())
    return h.hexdigest()[:16]


def folder_fingerprint(root: str | os.PathLike) -> str:
    """The fingerprint a folder has now (a scan: nothing decoded)."""
    root = Path(root).expanduser().resolve()
    return fingerprint(scan(root), root)


def _decode_chunk(args: tuple[str, str, int, str, list[tuple[int, str]], tuple[str, int]]) -> list[tuple[int, str]]:
    """Worker: decode (row, path) pairs straight into the memory-mapped array; return the failures. Large
    files wait for one of the memory slots shared by all workers (and all sessions)."""
    array_path, root, size, background, jobs, slots = args
    out = np.load(array_path, mmap_mode="r+")
    reserve = MemorySlots(*slots).hold
    failed = []
    for row, rel in jobs:
        try:
            out[row] = decode(os.path.join(root, rel), size, background, reserve)
        except UnreadableImage as e:
            failed.append((row, str(e)))
        except OSError as e:
            failed.append((row, f"cannot open ({e.strerror or e})"))
    out.flush()
    return failed


def memory_slots() -> int:
    """How many large decodes (up to MAX_DECODE_BYTES each) may run at once: half the free memory's worth."""
    return max(1, available_memory() // 2 // images.MAX_DECODE_BYTES)


def _caches_of(root: Path, suffix: str) -> list[Path]:
    """Decoded caches of the same folder and decoding settings (older versions of it), newest first."""
    found = []
    for d in cache_root().glob(f"*-{suffix}"):
        try:
            if json.loads((d / "info.json").read_text()).get("root") == str(root):
                found.append((d.stat().st_mtime, d))
        except (OSError, ValueError, RecursionError):
            continue
    return [d for _, d in sorted(found, reverse=True)]


def _reuse_previous(root: Path, suffix: str, m: pd.DataFrame, out: np.ndarray) -> np.ndarray:
    """Copy rows of unchanged files from the newest older cache of the same folder; return the rows still to decode."""
    todo = np.ones(len(m), bool)
    key = ["path", "bytes", "mtime_ns"]
    older = _caches_of(root, suffix)
    if not older:
        return todo
    old_dir = older[0]
    old = pd.read_parquet(old_dir / "manifest.parquet")
    old_images = np.load(old_dir / "images.npy", mmap_mode="r")
    old = old[old["row"] >= 0]
    both = m.reset_index().merge(old[key + ["row"]], on=key)
    both = both[both["readable"]]
    if len(both):
        new_rows = both["index"].to_numpy()
        out[new_rows] = old_images[both["row"].to_numpy()]
        todo[new_rows] = False
    return todo


def no_space(folder: Path, need: int | None, free: int) -> UserError:
    needs = f"needs {need / 1e6:,.0f} MB, has" if need else "it filled while writing; has"
    return UserError(f"not enough space in the cache folder {folder} ({needs} {free / 1e6:,.0f} MB): free some "
                     "space there, or set FIGURINES_CACHE to a folder on a disk with more room")


def reserve_array(path: Path, shape: tuple[int, ...], dtype) -> None:
    """Create an empty .npy file of this shape with every block allocated on disk, so that filling it through
    a memory map cannot fail half-way (a full disk there kills the process with SIGBUS). Without the room for
    it, a UserError says how much is needed, and nothing is left behind."""
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize + 4096
    free = shutil.disk_usage(path.parent).free
    if need + (16 << 20) > free:  # and some room for the manifest and the other small files
        raise no_space(path.parent, need, free)
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            Path(path).unlink(missing_ok=True)
            raise no_space(path.parent, need, shutil.disk_usage(path.parent).free) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot allocate ahead
            raise
    finally:
        os.close(fd)


def _remove_abandoned_builds(folder: Path) -> None:
    """Half-built caches of processes that died while building (killed, or out of memory)."""
    for d in folder.glob(".building-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and process_start(int(pid)) is None:
            shutil.rmtree(d, ignore_errors=True)


def _build(root: Path, size: int, background: str, m: pd.DataFrame, target: Path, progress: Progress | None,
           workers: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{os.getpid()}-", dir=target.parent))
    try:
        array_path = tmp / "images.npy"
        reserve_array(array_path, (len(m), size, size, 3), np.uint8)
        out = np.load(array_path, mmap_mode="r+")
        todo = _reuse_previous(root, f"{size}-{background}", m, out) & m["readable"].to_numpy()
        out.flush()
        del out
        jobs = [(int(i), m.at[i, "path"]) for i in np.flatnonzero(todo)]
        step = max(1, min(64, len(jobs) // (4 * workers) or 1))
        slots = (str(cache_root() / ".decode-slots"), memory_slots())
        chunks = [(str(array_path), str(root), size, background, jobs[i:i + step], slots)
                  for i in range(0, len(jobs), step)]
        failed = [f for part in map_chunks(_decode_chunk, chunks, [len(c[4]) for c in chunks], workers, progress)
                  for f in part]
        for row, reason in failed:
            m.loc[row, ["readable", "reason"]] = [False, reason]
        keep = np.flatnonzero(m["readable"].to_numpy())
        if len(keep) < len(m):  # compact to the readable rows, so `images` and `items` share row numbers
            full = np.load(array_path, mmap_mode="r")
            reserve_array(tmp / "images.tmp.npy", (len(keep), size, size, 3), np.uint8)
            final = np.load(tmp / "images.tmp.npy", mmap_mode="r+")
            for i in range(0, len(keep), 1024):
                final[i:i + 1024] = full[keep[i:i + 1024]]
            final.flush()
            del final, full
            os.replace(tmp / "images.tmp.npy", array_path)
        m = m.assign(row=-1)
        m.loc[m["readable"], "row"] = np.arange(len(keep))
        m.to_parquet(tmp / "manifest.parquet", index=False)
        (tmp / "info.json").write_text(json.dumps({"root": str(root), "image_size": size, "background": background}))
        try:
            os.replace(tmp, target)  # atomic: a cache folder is either complete or absent
        except OSError:
            if not (target / "manifest.parquet").is_file():  # nobody else finished it first
                raise
        for old in _caches_of(root, f"{size}-{background}"):  # one cache per folder: the disk stays bounded
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
                Path(f"{old}.lock").unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(root: str | os.PathLike, image_size: int, background: str = "flatten", progress: Progress | None = None,
         workers: int | None = None, require_images: bool = True) -> Dataset:
    """Scan `root` and return its decoded images, decoding only what no cache holds yet."""
    if not 8 <= int(image_size) <= 1024:
        raise UserError(f"image size must be between 8 and 1024 pixels, got {image_size}")
    if background not in BACKGROUNDS:
        raise UserError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")
    root = Path(root).expanduser().resolve()
    m = scan(root)
    fp = fingerprint(m, root)
    target = cache_root() / f"{fp}-{image_size}-{background}"
    if not (target / "manifest.parquet").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):  # two sessions opening a new folder at once: one decodes it
            if not (target / "manifest.parquet").is_file():
                try:
                    _build(root, int(image_size), background, m, target, progress, workers or os.cpu_count() or 1)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise no_space(target.parent, None, shutil.disk_usage(target.parent).free) from None
                    raise
    manifest = pd.read_parquet(target / "manifest.parquet")
    images = np.load(target / "images.npy", mmap_mode="r")
    ds = Dataset(str(root), int(image_size), background, fp, manifest.drop(columns="row"), images)
    if require_images and len(images) == 0:
        raise no_images(ds)
    return ds


def no_images(ds: Dataset) -> UserError:
    """Why a folder gives no readable image, in one line; the likeliest mistake (a culture's own folder chosen
    instead of the one above it) said as such."""
    m = ds.manifest
    if len(m) and (m["reason"] == UNLABELLED).all():
        return UserError(f"the images in {ds.root} are not inside culture folders: choose the folder above it, whose "
                         "subfolders are the cultures (<root>/<culture>/[<site>/]<image>)")
    found = f"{len(m)} image files, none readable" if len(m) else "no image files"
    return UserError(f"no readable image in {ds.root} ({found}); expected <root>/<culture>/[<site>/]<image>")
