import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from core import embed
from core.dataset import load
from core.embed import UMAPBaseline, baseline, encode_run, stored_key
from core.model import AAEModel, form
from core.fit import fit_run


@pytest.fixture(scope="module")
def trained(small_demo, tmp_path_factory):
    from core.settings import Settings

    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=2, device="cpu")
    return fit_run(tmp_path_factory.mktemp("runs") / "run", s, str(small_demo))


def test_encodings_table(trained, small_demo):
    df = encode_run(trained.dir)
    ds = load(small_demo, 32)
    assert list(df.columns[:7]) == ["path", "culture", "site", "aae_x", "aae_y", "umap_x", "umap_y"]
    assert len(df) == len(ds.items) and df[["aae_x", "aae_y", "umap_x", "umap_y"]].notna().all().all()
    assert (df["recon_error"] > 0).all()
    stored = pd.read_parquet(trained.encodings_path)
    assert df.equals(stored[df.columns]) and stored.filter(like="_pca_").shape == (len(df), 50)


def test_encodings_are_cached_until_the_checkpoint_changes(trained, monkeypatch):
    encode_run(trained.dir)
    key = stored_key(trained.encodings_path)
    monkeypatch.setattr(embed, "encode_images", lambda *a: pytest.fail("encoded again"))
    monkeypatch.setattr(UMAPBaseline, "fit_transform", lambda *a: pytest.fail("UMAP again"))
    encode_run(trained.dir)
    monkeypatch.undo()
    # a new checkpoint (say, after resuming) makes the encodings stale; UMAP stays cached
    os.utime(trained.model_path, ns=(1, 1))
    monkeypatch.setattr(UMAPBaseline, "fit_transform", lambda *a: pytest.fail("UMAP again"))
    encode_run(trained.dir)
    assert stored_key(trained.encodings_path) != key


def test_umap_baseline_is_cached_per_dataset(small_demo):
    ds = load(small_demo, 32)
    pcs, u = baseline(ds)
    assert pcs.shape == (len(ds.items), 50) and u.shape == (len(ds.items), 2)
    pcs2, u2 = baseline(ds)
    assert np.array_equal(u, u2)


def test_baseline_on_tiny_sets():
    rng = np.random.default_rng(0)
    for n in (3, 12):
        pcs, u = UMAPBaseline().fit_transform(rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8))
        assert u.shape == (n, 2) and np.isfinite(u).all()


def test_ten_sessions_reading_one_runs_encodings_at_once(trained, monkeypatch):
    """One of them encodes, the nine others wait and read its file; nobody reads a half-written one."""
    calls, real = [], embed._encode
    monkeypatch.setattr(embed, "_encode", lambda *a: calls.append(1) or real(*a))
    reads, stop = [], threading.Event()

    def reader():  # reads the file over and over while it is being replaced
        while not stop.is_set():
            if trained.encodings_path.exists():
                reads.append(len(pd.read_parquet(trained.encodings_path)))

    for round_ in range(2):
        os.utime(trained.model_path)  # a new checkpoint: the stored encodings are stale
        watcher = threading.Thread(target=reader)
        watcher.start()
        with ThreadPoolExecutor(10) as pool:
            tables = list(pool.map(lambda _: encode_run(trained.dir), range(10)))
        stop.set()
        watcher.join()
        stop.clear()
        assert len(calls) == round_ + 1
        assert all(t.equals(tables[0]) for t in tables)
    assert reads and set(reads) == {len(tables[0])}


def test_concurrent_first_loads_decode_once(small_demo, tmp_path, monkeypatch):
    from core import dataset

    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))
    builds, real = [], dataset._build
    monkeypatch.setattr(dataset, "_build", lambda *a: builds.append(1) or real(*a))
    with ThreadPoolExecutor(4) as pool:
        sets = list(pool.map(lambda _: load(small_demo, 16, workers=1), range(4)))
    assert len(builds) == 1 and all(np.array_equal(s.images, sets[0].images) for s in sets)


def test_the_baseline_reads_pixels_or_hog_descriptors_and_says_which(trained):
    """Issue 25: each map says what it was made from; the baseline can be made from HOG descriptors."""
    from core.descriptors import Descriptor, hog

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(UMAPBaseline(reads="descriptors").features(images), hog(images, Descriptor("hog", 16)))
    assert UMAPBaseline(style="form").features(images).shape == (5, 256)
    assert UMAPBaseline(reads="descriptors").made_from == "HOG descriptors"
    enc = encode_run(trained.dir)
    assert enc.attrs["umap_from"] == f"pixels, {trained.config()['effective']['style']}"
    assert stored_key(trained.encodings_path)["baseline"]["reads"] == "pixels"
    assert embed.umap_made_from({"baseline": {"style": "form"}}) == "pixels, form"  # stored before `reads`
    assert embed.umap_made_from({"baseline": {"reads": "descriptors"}}) == "HOG descriptors"


def test_the_baseline_sees_what_a_form_model_sees():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    x = UMAPBaseline(style="form").pixels(images, batch_size=4)
    assert x.shape == (6, 64) and UMAPBaseline(style="colour").pixels(images).shape == (6, 192)
    assert np.allclose(x, form(AAEModel.to_unit(torch.from_numpy(images)))[:, 0].reshape(6, -1).numpy())
