"""A run's encodings and the UMAP baseline of the same figurines, both cached.

`encodings.parquet` (path, culture, site, aae_x, aae_y, umap_x, umap_y, recon_error, and the engine's own
`_`-columns: file sizes and times, the PCA baseline) is recomputed only when the checkpoint or the dataset
changed: its key is stored in the file's own metadata. Encodings are never dropped silently: when the
dataset folder is gone or lost files, the stored ones are kept (and say why); `relink` points a run at its
moved folder. The baseline (PCA to 50 dimensions, then UMAP to 2) sees the pixels the run's model sees (its
`style`; `reads="descriptors"`: HOG descriptors, measured in bench/baselines.py) and is cached per (dataset
fingerprint, image size, parameters) under the decoded-image cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock

from .dataset import Dataset, cache_root, load, scan
from .errors import UserError
from .labels import is_target
from .devices import pick_device
from .model import AAEModel, encode_images, form, load_model, normalised_batches
from .runs import CAPS, checked_file, Run, atomic_write

_META_KEY = b"figurines"
BASELINES_KEPT = 16  # cached baselines (least recently used dropped first); a few MB each at the demo's size


def _umap():
    """The umap module with every numba function it compiles cached on disk (umap-learn caches almost
    none itself), so a fresh process does not compile them again: about 25 s saved per process."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))
    import umap
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("umap", "pynndescent") and module is not None:
            for f in list(vars(module).values()):
                if isinstance(f, CPUDispatcher) and isinstance(f._cache, NullCache):
                    f.enable_caching()
    return umap


@dataclass
class UMAPBaseline:
    """PCA to `n_pca` dimensions, then UMAP to `n_components`: the estimator the AAE is compared with.

    It `reads` the pixels the run's model sees, or the images' HOG descriptors (the Influence page's default
    descriptor, 8 x 8 cells whatever the size). The descriptors keep the cultures apart better (sources'
    balanced 10-NN 1.00 against 0.99 on the demo, 0.997 against 0.90 on the second collection), but a map of
    them fitted to every figurine reads the demo's local making as influence (off by up to 0.33 while its checks
    pass), and the Influence page's agreement check then withholds the descriptor space's right reading: the
    pixels stay the default (bench/RESULTS.md, "The UMAP baseline: descriptors or pixels").

    The neighbours UMAP starts from are exact (scikit-learn), not approximate: as fast at these sizes and
    without pynndescent's compilation, which cannot be cached.
    """

    n_components: int = 2
    n_pca: int = 50
    n_neighbors: int = 15
    min_dist: float = 0.1
    random_state: int = 0
    neighbours: str = "exact"  # in the cache key: baselines made with approximate neighbours are redone
    style: str = "colour"      # reads="pixels": what is seen of each image, as the AAE's setting of that name
    reads: str = "pixels"      # or "descriptors"

    @property
    def made_from(self) -> str:
        """What the map is made from, in words, for its chart."""
        return "HOG descriptors" if self.reads == "descriptors" else f"pixels, {self.style}"

    def features(self, images: np.ndarray) -> np.ndarray:
        """Float32 (n, features) the baseline reads of uint8 images (n, H, W, 3)."""
        if self.reads == "descriptors":
            from .descriptors import Descriptor, hog

            return hog(images, Descriptor("hog", images.shape[1]))
        return self.pixels(images)

    def pixels(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Float32 (n, features) of uint8 images (n, H, W, 3): as the AAE with this `style` sees them."""
        if self.style == "colour":
            x = np.array(images, dtype=np.float32).reshape(len(images), -1)
            x /= 255.0  # in place: at 16x the demo's size this matrix alone is 3.4 GB
            return x
        x = np.empty((len(images), int(np.prod(images.shape[1:3]))), np.float32)
        for i in range(0, len(images), batch_size):  # one grey channel: `form` repeats it three times
            b = torch.from_numpy(np.array(images[i:i + batch_size]))
            x[i:i + len(b)] = form(AAEModel.to_unit(b))[:, 0].reshape(len(b), -1).numpy()
        return x

    def fit_transform(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(PCA coordinates, UMAP coordinates) of uint8 images (n, H, W, 3)."""
        from sklearn.decomposition import PCA
        from sklearn.neighbors import NearestNeighbors

        x = self.features(images)
        k = min(self.n_pca, len(x) - 1, x.shape[1])
        pcs = PCA(k, random_state=self.random_state).fit_transform(x).astype(np.float32)
        nn = min(self.n_neighbors, len(x) - 1)
        if len(x) <= self.n_components + 2:  # too few points for UMAP's spectral start
            return pcs, np.pad(pcs[:, :self.n_components], ((0, 0), (0, max(0, self.n_components - k))))
        dist, idx = NearestNeighbors(n_neighbors=nn).fit(pcs).kneighbors(pcs)
        umap = _umap()
        from numba.core.errors import NumbaWarning

        with warnings.catch_warnings():  # a few pynndescent functions cannot be cached; numba says so
            warnings.simplefilter("ignore", category=NumbaWarning)
            warnings.filterwarnings("ignore", message="precomputed_knn")  # we never transform new data
            emb = umap.UMAP(n_components=self.n_components, n_neighbors=nn, min_dist=self.min_dist,
                            random_state=self.random_state, n_jobs=1, precomputed_knn=(idx, dist),
                            init="spectral" if len(x) > 30 else "random")
            return pcs, emb.fit_transform(pcs).astype(np.float32)


def baseline(ds: Dataset, params: UMAPBaseline | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cached (PCA, UMAP) baseline of a decoded dataset."""
    params = params or UMAPBaseline()
    key = hashlib.sha1(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:10]
    f = cache_root() / "umap" / f"{ds.key}-{key}.npz"
    f.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f.with_suffix(".lock")):
        if f.is_file():
            os.utime(f)
            try:
                with np.load(f) as z:
                    pcs, emb = z["pca"], z["umap"]
                if len(pcs) == len(emb) == len(ds.images) and np.isfinite(pcs).all() and np.isfinite(emb).all():
                    return pcs, emb
            except (OSError, ValueError, KeyError, EOFError):
                pass  # damaged: made again below
        pcs, emb = params.fit_transform(ds.images)
        buf = io.BytesIO()
        np.savez(buf, pca=pcs, umap=emb)
        atomic_write(f, buf.getvalue())
    for old in sorted(f.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)[BASELINES_KEPT:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".lock").unlink(missing_ok=True)
    return pcs, emb


def baseline_of(run: Run) -> UMAPBaseline:
    """The baseline a run is compared with: it sees what the run's model sees."""
    return UMAPBaseline(style=run.config()["effective"].get("style", "colour"))


def encodings_key(run: Run, ds: Dataset) -> dict:
    """What a run's encodings depend on: its checkpoint, the decoded pixels and the baseline's settings."""
    st = os.stat(run.model_path)
    return {"checkpoint": [st.st_size, st.st_mtime_ns], "dataset": ds.key, "baseline": asdict(baseline_of(run))}


def umap_made_from(key: dict) -> str:
    """What the UMAP map of encodings stored with `key` was made from, in words (before 2026-12-04: pixels)."""
    b = key.get("baseline") if isinstance(key.get("baseline"), dict) else {}
    return UMAPBaseline(style=str(b.get("style", "colour")), reads=str(b.get("reads", "pixels"))).made_from


def stored_key(path) -> dict | None:
    """The key a run's encodings were computed for; None if there are none, or the file is not a regular file
    of the run's folder within its size cap."""
    try:
        checked_file(path, CAPS["encodings.parquet"])
        meta = pq.read_schema(path).metadata or {}
        key = json.loads(meta[_META_KEY])
        return key if isinstance(key, dict) else None
    except (OSError, KeyError, ValueError, RecursionError, pa.ArrowInvalid):
        return None


@torch.no_grad()
def reconstruction_errors(model, images, local: np.ndarray | None = None, batch_size: int = 500) -> np.ndarray:
    """Per-image mean squared reconstruction error, in the model's [-1, 1] pixel units; `local`: which images are
    of the target culture (what a `local` run's decoder is told)."""
    flags = torch.from_numpy(np.zeros(len(images), bool) if local is None else np.array(local, dtype=bool))
    out = []
    for i, x in enumerate(normalised_batches(model, images, batch_size)):
        made = flags[i * batch_size:i * batch_size + len(x)].to(x.device)
        out.append(((model.decode(model.encode(x), made) - x) ** 2).mean(dim=(1, 2, 3)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def encode_run(run_dir, progress=None, device: str = "auto", replace: bool = False) -> pd.DataFrame:
    """Encode every readable image of a run's dataset; return (and cache) its encodings table.

    When the dataset folder is gone, or files were removed from it since the encodings were made, the
    stored encodings are returned unchanged, with the reason in `attrs["kept"]` (`replace` re-encodes
    what the folder holds now). What changed since is in `attrs["changes"]`."""
    return _public(_encoded(run_dir, progress, device, replace)[0])


def _public(df: pd.DataFrame) -> pd.DataFrame:
    """The table without the engine's own columns (file sizes and times, the PCA baseline: `_...`)."""
    out = df.loc[:, [c for c in df.columns if not c.startswith("_")]]
    out.attrs = dict(df.attrs)
    return out


TEXT_COLUMNS, CODE_COLUMNS = ("path", "culture", "site"), ("aae_x", "aae_y", "umap_x", "umap_y", "recon_error")


def _stored(run: Run) -> tuple[pd.DataFrame, dict] | None:
    """The stored encodings and their key, if the file holds what the engine writes: the columns, text labels
    and finite codes; else None (they are computed again)."""
    key = stored_key(run.encodings_path)
    if key is None:
        return None
    try:
        df = pd.read_parquet(run.encodings_path)
    except (OSError, ValueError, pa.ArrowInvalid):
        return None
    numbers = [*CODE_COLUMNS, *(c for c in df.columns if c.startswith(("_pca_", "_offset_", "_style_")))]
    try:
        sound = (all(c in df for c in (*TEXT_COLUMNS, *CODE_COLUMNS)) and len(df)
                 and all(df[c].map(type).eq(str).all() for c in TEXT_COLUMNS)
                 and np.isfinite(df[numbers].to_numpy(np.float64)).all())
    except (TypeError, ValueError):
        sound = False
    if sound:
        df.attrs["umap_from"] = umap_made_from(key)
    return (df, key) if sound else None


def _files(ds: Dataset) -> pd.DataFrame:
    items = ds.items
    return pd.DataFrame({"path": items["path"], "culture": items["culture"], "site": items["site"],
                         "_bytes": items["bytes"], "_mtime_ns": items["mtime_ns"]})


def changes(before: pd.DataFrame, now: pd.DataFrame) -> dict[str, list[str]]:
    """Paths added, removed, changed (size or time) and relabelled between two tables of files."""
    old, new = before.set_index("path"), now.set_index("path")
    both = old.index.intersection(new.index)
    stats = [c for c in ("_bytes", "_mtime_ns") if c in old and c in new]
    differs = lambda cols: list(both[(old.loc[both, cols].to_numpy() != new.loc[both, cols].to_numpy()).any(axis=1)])
    return {"removed": list(old.index.difference(new.index)), "added": list(new.index.difference(old.index)),
            "changed": differs(stats) if stats else [], "relabelled": differs(["culture", "site"])}


def describe(change: dict[str, list[str]]) -> str:
    """'2 files removed (a.jpg, b.jpg), 1 added (c.jpg)', or '' when nothing changed."""
    parts = []
    for what, paths in change.items():
        if paths:
            shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
            parts.append(f"{len(paths)} {'file' if len(paths) == 1 else 'files'} {what} ({shown})")
    return "; ".join(parts)


def _kept(run: Run, stored: tuple[pd.DataFrame, dict], why: str) -> pd.DataFrame:
    df, key = stored
    st = os.stat(run.model_path)
    older = " (made with an earlier checkpoint)" if key.get("checkpoint") != [st.st_size, st.st_mtime_ns] else ""
    df.attrs["kept"] = f"{why}; the run's {len(df)} existing encodings{older} are kept"
    return df


def _encoded(run_dir, progress=None, device: str = "auto", replace: bool = False) -> tuple[pd.DataFrame, Dataset | None]:
    """A run's full encodings table and the decoded dataset behind it (None when the stored table is kept
    because the folder is gone or lost files: see `encode_run`)."""
    run = Run(run_dir).require()
    config = run.config()
    if not run.model_path.is_file():
        raise UserError(f"run {run.name} has no checkpoint yet (model.pt)")
    s, root = config["effective"], Path(config["data"])
    relink = f"if it moved, point the run at it: python -m core relink --run-dir {run.dir} --data NEW-FOLDER"
    if not root.is_dir():
        stored = _stored(run)
        if stored is None:
            raise UserError(f"dataset folder not found: {root}; {relink}")
        return _kept(run, stored, f"dataset folder not found: {root} ({relink})"), None
    ds = load(root, s["image_size"], s["background"], progress=progress)
    key = encodings_key(run, ds)
    with FileLock(run.dir / ".encodings.lock"):  # many sessions at once: one encodes, the others read its file
        stored = _stored(run)
        if stored is not None and stored[1] == key:
            stored[0].attrs["dataset"] = ds.key
            return stored[0], ds
        change = changes(stored[0], _files(ds)) if stored is not None else {}
        if change.get("removed") and not replace:
            return _kept(run, stored, f"since the encodings were made, {describe(change)} in {root} (to encode "
                                      f"the folder as it is now: python -m core encode --run-dir {run.dir} --replace)"), None
        df = _encode(run, ds, key, device)
        df.attrs.update(changes=describe(change), dataset=ds.key)
        return df, ds


def relink(run_dir, data) -> str:
    """Point a run at its dataset folder's new place; return what differs there from its encodings."""
    run = Run(run_dir).require()
    config = run.config()
    new = Path(data).expanduser().resolve()
    m = scan(new)
    now = m[m["readable"]].rename(columns={"bytes": "_bytes", "mtime_ns": "_mtime_ns"})
    stored = _stored(run)
    known = stored[0] if stored is not None else run.snapshot_sample()
    if len(known) and not now["path"].isin(known["path"]).any():
        raise UserError(f"{new} holds none of the figurines of run {run.name}: is it the right folder?")
    run.write_config({**config, "data": str(new)})
    return describe(changes(known, now)) if stored is not None else ""


def _encode(run: Run, ds: Dataset, key: dict, device: str) -> pd.DataFrame:
    model = load_model(run.load_checkpoint("cpu"), pick_device(device))
    codes, offsets = encode_images(model, ds.images, offsets=True)
    pcs, emb = baseline(ds, baseline_of(run))
    files = _files(ds)
    df = files[["path", "culture", "site"]].copy()
    names = ["aae_x", "aae_y"] + [f"aae_{i}" for i in range(2, codes.shape[1])]
    for i, name in enumerate(names[:codes.shape[1]]):
        df[name] = codes[:, i]
    if codes.shape[1] == 1:
        df["aae_y"] = 0.0
    df["umap_x"], df["umap_y"] = emb[:, 0], emb[:, 1]
    df["recon_error"] = reconstruction_errors(model, ds.images, is_target(ds.items))
    # file sizes and times (to tell what changed later) and the PCA baseline (to open the run without its folder)
    df = pd.concat([df, files[["_bytes", "_mtime_ns"]],
                    pd.DataFrame(pcs, columns=[f"_pca_{i}" for i in range(pcs.shape[1])])], axis=1)
    if model.settings.clusters:  # the offsets from the cluster heads, which the prior is matched to
        df["_offset_x"], df["_offset_y"] = offsets[:, 0], offsets[:, 1] if offsets.shape[1] > 1 else 0.0
    write_encodings(run, df, key)
    df.attrs["umap_from"] = umap_made_from(key)
    return df


def write_encodings(run: Run, df: pd.DataFrame, key: dict) -> None:
    """Store a run's encodings table with the key it was computed for, atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(key).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    atomic_write(run.encodings_path, buf.getvalue().to_pybytes())


def spaces(run_dir) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A run's encodings table and its three spaces (AAE codes, UMAP, 50-D PCA), all from the caches; for a
    cluster-head run also its codes' offsets from their heads (`offset`)."""
    enc, ds = _encoded(run_dir)
    pca = enc[[c for c in enc.columns if c.startswith("_pca_")]].to_numpy()
    if not pca.shape[1]:  # encodings written before the PCA was stored with them
        if ds is None:
            raise UserError(f"{enc.attrs.get('kept')}, but they predate this version and lack the PCA baseline: "
                            "encode the run again once its folder is found")
        pca, _ = baseline(ds, baseline_of(Run(run_dir)))
    out = {"pca": pca}
    offset = next((p for p in ("_offset", "_style") if f"{p}_x" in enc), None)  # _style: written before 2026-12-04
    if offset:
        out["offset"] = enc[[f"{offset}_x", f"{offset}_y"]].to_numpy()
    enc = _public(enc)
    return enc, {"aae": enc[["aae_x", "aae_y"]].to_numpy(), "umap": enc[["umap_x", "umap_y"]].to_numpy(), **out}
