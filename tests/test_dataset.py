import shutil
import time

import numpy as np
import pandas as pd
import pytest

from core import dataset
from core.dataset import load, scan
from core.errors import UserError
from tests.corpus import READABLE, UNREADABLE, figure


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FIGURINES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_messy_collection_uses_every_readable_image_and_lists_the_rest(messy, fresh_cache):
    ds = load(messy, 32, workers=2)
    assert sorted(ds.items["path"]) == sorted(READABLE)
    assert ds.images.shape == (len(READABLE), 32, 32, 3)
    bad = dict(zip(ds.unreadable["path"], ds.unreadable["reason"]))
    assert set(bad) == set(UNREADABLE)
    assert all(reason in bad[p] and bad[p] for p, reason in UNREADABLE.items())
    # junk is ignored silently; the symlink loop did not repeat files
    assert not any(n in p for p in ds.manifest["path"] for n in (".DS_Store", "._plain", "Thumbs.db"))
    assert ds.manifest["path"].is_unique


def test_labels_from_folders(messy):
    m = scan(messy).set_index("path")
    assert m.at["Babylonian/Nippur/figurine ä 1.jpg", "site"] == "Nippur"
    assert m.at["Babylonian/Nippur/deep/nested/fig.jpg", "site"] == "Nippur"
    assert m.at["Greek/plain.jpg", "culture"] == "Greek" and m.at["Greek/plain.jpg", "site"] == ""


def test_rows_of_images_match_items(tmp_path, fresh_cache):
    for i, c in enumerate(["A", "B"]):
        (tmp_path / "d" / c).mkdir(parents=True)
        img = figure(seed=i)
        img.putpixel((0, 0), (i * 200, 0, 0))
        img.save(tmp_path / "d" / c / "x.png")
    ds = load(tmp_path / "d", 16)
    for row in ds.items.itertuples():
        assert np.array_equal(ds.images[row.Index], dataset.decode(str(tmp_path / "d" / row.path), 16, "flatten"))


def test_metadata_csv_overrides_folder_labels(tmp_path, fresh_cache):
    root = tmp_path / "d"
    (root / "unsorted").mkdir(parents=True)
    figure().save(root / "unsorted" / "a.jpg")
    figure(seed=1).save(root / "loose.jpg")
    (root / "metadata.csv").write_text("path,culture,site\nunsorted/a.jpg,Achaemenid,\nloose.jpg,Hellenistic Babylonian,Uruk\n")
    ds = load(root, 16)
    got = ds.items.set_index("path")
    assert got.at["unsorted/a.jpg", "culture"] == "Achaemenid"
    assert got.at["loose.jpg", "site"] == "Uruk"


def test_bad_metadata_is_a_user_error(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "metadata.csv").write_text("file,label\n")
    with pytest.raises(UserError, match="path,culture"):
        scan(tmp_path)


def test_image_outside_a_culture_folder_is_listed(tmp_path, fresh_cache):
    (tmp_path / "A").mkdir()
    figure().save(tmp_path / "A" / "ok.png")
    figure().save(tmp_path / "stray.png")
    ds = load(tmp_path, 16)
    assert list(ds.unreadable["path"]) == ["stray.png"] and "culture folder" in ds.unreadable["reason"][0]


def test_missing_and_empty_and_unreadable_only_folders(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "nope", 32)
    (tmp_path / "notes.txt").write_text("a file chosen by mistake")
    with pytest.raises(UserError, match="is a file, not a folder"):
        load(tmp_path / "notes.txt", 32)
    (tmp_path / "empty" / "Greek").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        load(tmp_path / "empty", 32)
    (tmp_path / "bad" / "Greek").mkdir(parents=True)
    (tmp_path / "bad" / "Greek" / "x.jpg").write_text("not a photo")
    with pytest.raises(UserError, match="none readable"):
        load(tmp_path / "bad", 32)


def test_second_load_decodes_nothing(small_demo, fresh_cache, monkeypatch):
    first = load(small_demo, 32)
    monkeypatch.setattr(dataset, "decode", lambda *a: pytest.fail("decoded again"))
    calls = []
    second = load(small_demo, 32, progress=lambda d, t: calls.append(d))
    assert calls == [] and np.array_equal(first.images, second.images)
    assert isinstance(second.images, np.memmap)


def test_cache_notices_added_removed_changed_and_decodes_only_those(tmp_path, fresh_cache, monkeypatch):
    root = tmp_path / "d"
    shutil.copytree(_source_folder(tmp_path), root)
    before = load(root, 16)
    decoded = []
    real = dataset.decode
    monkeypatch.setattr(dataset, "decode", lambda p, *rest: decoded.append(p) or real(p, *rest))
    (root / "A" / "0.png").unlink()                       # removed
    figure(seed=50).save(root / "B" / "new.png")           # added
    time.sleep(0.01)
    figure(seed=51).save(root / "B" / "1.png")             # changed
    after = load(root, 16, workers=1)
    assert after.fingerprint != before.fingerprint
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in decoded) == ["B/1.png", "B/new.png"]
    assert set(after.items["path"]) == {"A/2.png", "B/1.png", "B/3.png", "B/new.png"}
    assert len(list(fresh_cache.glob("*-16-flatten"))) == 1  # the stale cache is gone
    for row in after.items.itertuples():
        assert np.array_equal(after.images[row.Index], real(str(root / row.path), 16, "flatten"))


def _source_folder(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        d = src / ("A" if i % 2 == 0 else "B")
        d.mkdir(parents=True, exist_ok=True)
        figure(seed=i).save(d / f"{i}.png")
    return src


def test_image_size_out_of_range(messy):
    with pytest.raises(UserError, match="image size"):
        load(messy, 4)


def test_background_handling_is_part_of_the_cache_key(small_demo):
    flat, kept = load(small_demo, 32), load(small_demo, 32, "keep")
    assert flat.key != kept.key and not np.array_equal(flat.images, kept.images)
    assert tuple(flat.images[0, 0, 0]) == (128, 128, 128)
    with pytest.raises(UserError, match="background"):
        load(small_demo, 32, "remove")


def test_doubts_about_a_folders_labels_are_said():
    """A folder laid out as DESIGN says raises none; a folder one level up (its cultures a project's own folders),
    several cultures with find-sites, or none asked about, each get a sentence."""
    from core.labels import doubts, roles

    def items(spec):
        return pd.DataFrame([(c, s) for c, s, n in spec for _ in range(n)], columns=["culture", "site"])

    good = items([("Greek", "", 40), ("Achaemenid", "", 30), ("Seleucid Babylonia", "Uruk", 20)])
    assert roles(good) == ("Seleucid Babylonia", ["Achaemenid", "Greek"], "sites") and doubts(good) == []
    up = items([("mine", "Greek", 40), ("mine", "Uruk", 20), ("shots", "", 1)])
    said = doubts(up)
    assert len(said) == 1 and said[0].startswith("shots (1) has fewer than 10 photographs")
    several = items([("Greek", "Myrina", 40), ("Greek", "", 5), ("Babylonian", "Uruk", 20), ("Egyptian", "", 30)])
    assert roles(several)[0] == "Greek" and doubts(several) == [
        "Greek and Babylonian both have find-site folders: Greek, with the most photographs in them, is taken as the "
        "culture asked about. If another is meant, keep find-site folders for that culture alone (move the others' "
        "photographs up into their culture's folder, or leave their site empty in metadata.csv), or name its folder "
        "Hellenistic Babylonian."]
    named = items([("Greek", "Myrina", 40), ("Hellenistic Babylonian", "Uruk", 20)])
    assert roles(named)[2] == "named" and doubts(named) == []
    none = items([("Greek", "", 40), ("Egyptian", "", 30)])
    assert roles(none) == ("Greek", ["Egyptian"], "largest") and "the largest, Greek, is taken" in doubts(none)[0]
    assert doubts(none)[0].endswith("If these subfolders are one culture's find-sites, choose the folder one level up.")
