"""The Explore page's logic without a UI: filters, selections, density cells and static thumbnails."""
import numpy as np
import pandas as pd
from PIL import Image

from core import explore


def _enc(n=2000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    culture = rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1])
    site = np.where(culture == "A", rng.choice(["s1", "s2"], n), "")
    xy = rng.normal(size=(n, 2)) + (culture == "B")[:, None] * 3
    return pd.DataFrame({"path": [f"{i}.jpg" for i in range(n)], "culture": culture, "site": site,
                         "aae_x": xy[:, 0], "aae_y": xy[:, 1]})


def test_filters_keep_cultures_and_sites():
    enc = _enc()
    keep = explore.filtered(enc, ["A", "B"], ["s1"])
    assert not keep[(enc["culture"] == "C").to_numpy()].any()
    assert keep[(enc["culture"] == "B").to_numpy()].all()  # no site: kept whatever the site filter
    assert set(enc.loc[keep & (enc["culture"] == "A").to_numpy(), "site"]) == {"s1"}


def test_box_and_click_selections():
    enc = _enc()
    box = {"box_aae": {"aae_x": [1.0, -1.0], "aae_y": [-0.5, 0.5]}}
    ids = explore.selected_rows(box, enc, "aae")
    inside = enc["aae_x"].between(-1, 1) & enc["aae_y"].between(-0.5, 0.5)
    assert list(ids) == list(np.flatnonzero(inside))
    assert list(explore.selected_rows({"pick_aae": [{"id": 7}, {"id": 3}]}, enc, "aae")) == [3, 7]
    assert explore.selected_rows({}, enc, "aae") is None


def test_density_cells_count_every_kept_figurine_once():
    enc = _enc(20_000)
    keep = explore.filtered(enc, ["A", "B", "C"], ["s2"])
    cells = explore.cells(enc, keep, "aae", selected=[0, 1, 2], bins=40)
    assert cells["n"].sum() == keep.sum() and len(cells) <= 40 * 40
    assert (cells["aae_x2"] > cells["aae_x"]).all() and cells["share"].between(0, 1).all()
    assert cells["selected"].sum() >= 1 and cells["selected"].sum() <= 3
    # the grid is fixed by all figurines, so a filter change never moves the cells
    other = explore.cells(enc, ~keep, "aae", bins=40)
    everyone = explore.cells(enc, np.ones(len(enc), bool), "aae", bins=40)
    assert set(other["aae_x"]) | set(cells["aae_x"]) == set(everyone["aae_x"])
    # a cell's colour is its most frequent culture: where B's cluster lies (around 3, 3), B wins
    b_cells = cells[(cells["aae_x"] > 2.5) & (cells["aae_x"] < 3.5) & (cells["aae_y"] - 3).abs().lt(0.5)]
    assert (b_cells["culture"] == "B").mean() > 0.8
    assert explore.cells(enc, np.zeros(len(enc), bool), "aae").empty


def test_thumbnails_are_written_once_and_bounded(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    for k in range(6):
        folder = explore.write_thumbnails(images, tmp_path / f"set{k}", keep=4)
    assert sorted(p.name for p in folder.iterdir()) == [f"{i}.jpg" for i in range(5)]
    assert Image.open(folder / "4.jpg").size == (48, 48)
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 4  # older folders are pruned
    mtime = (folder / "0.jpg").stat().st_mtime_ns
    explore.write_thumbnails(images, folder)
    assert (folder / "0.jpg").stat().st_mtime_ns == mtime  # not written again


def test_chart_downloads_have_no_row_limit():
    from core import charts

    enc = _enc(6000).assign(id=lambda d: np.arange(len(d)), selected=False)
    svg = charts.svg(charts.scatter(enc, enc.iloc[:0], "aae", "AAE latent", explore.culture_colours(enc["culture"]),
                                    False, prior_std=1.0))
    assert svg.startswith("<svg") and svg.count("<path") > 100


def test_no_culture_or_site_is_drawn_in_a_grey_like_the_context():
    """Issue 27, item 16: a culture in grey looked like the filtered-out figurines."""
    import colorsys

    from core.charts import SITE_COLOURS
    from core.explore import culture_colours

    many = culture_colours([f"culture {i}" for i in range(20)] + ["Hellenistic Babylonian", "Achaemenid"])
    for colour in [*many.values(), *SITE_COLOURS]:
        r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        assert colorsys.rgb_to_hsv(r, g, b)[1] > 0.3, colour  # saturated: never mistaken for the context grey


def test_a_collection_of_its_own_names_gets_the_most_distinct_colours():
    """A new user's trial: four renamed cultures drew purple beside pink."""
    from core.explore import culture_colours

    own = culture_colours(["Greek (Attic)", "Median", "Neo-Assyrian", "Seleucid Babylonia"])
    assert sorted(own.values()) == sorted(explore._FIXED.values())
    mixed = culture_colours(["Achaemenid", "Greek (Attic)", "Median", "Seleucid Babylonia"])
    assert len(set(mixed.values())) == 4 and mixed["Achaemenid"] == explore._FIXED["Achaemenid"]


def test_find_by_file_name_ignores_case_accents_and_unicode_form():
    """Issue 27, item 14."""
    import unicodedata

    enc = pd.DataFrame({"path": ["Achaemenid/IMG_0042.JPG", "Uruk/ta" + unicodedata.normalize("NFD", "é") + "te.tif",
                                 "Kish/img_0420.jpg", "Kish/other.png"]})
    assert explore.find(enc, "img_0").tolist() == [0, 2]
    assert explore.find(enc, " IMG_0042 ").tolist() == [0]
    assert explore.find(enc, "taéte").tolist() == [1]  # typed in NFC, stored in NFD
    assert explore.find(enc, "TAETE").tolist() == [1] == explore.find(enc, "Taëte").tolist()  # accents ignored
    assert explore.find(enc, "img", np.array([False, True, True, True])).tolist() == [2]  # only among those shown
    assert explore.find(enc, "").tolist() == [] and explore.find(enc, "zzz").tolist() == []


def test_neighbours_are_the_nearest_others_nearest_first():
    space = np.array([[0.0, 0], [3, 0], [1, 0], [0, 2], [10, 10]])
    near, dist = explore.neighbours(space, 0, 3)
    assert near.tolist() == [2, 3, 1] and dist.tolist() == [1.0, 2.0, 3.0]
