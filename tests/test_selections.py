"""Saved selections (kept with the run, colouring the maps), contact sheets, and the lasso chart's figure."""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import explore, lasso, selections
from core.errors import UserError
from core.runs import Run


def _enc(n=60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"path": [f"c{i % 3}/f{i}.jpg" for i in range(n)], "culture": [f"C{i % 3}" for i in range(n)],
                         "site": ["" if i % 3 else "Uruk" for i in range(n)], "id": np.arange(n),
                         "aae_x": rng.normal(size=n), "aae_y": rng.normal(size=n)})


def test_a_selection_is_saved_replaced_and_deleted_with_its_run(tmp_path):
    run = Run(tmp_path / "run")
    run.dir.mkdir()
    assert selections.load(run) == {}
    assert selections.save(run, "  oval-base   group ", ["a.jpg", "b.jpg", "a.jpg"]) == "oval-base group"
    selections.save(run, "Ἀθηνᾶ heads", ["c.jpg"])
    assert selections.load(run) == {"oval-base group": ["a.jpg", "b.jpg"], "Ἀθηνᾶ heads": ["c.jpg"]}
    selections.save(run, "oval-base group", ["d.jpg"])  # the same name replaces, in its place
    assert list(selections.load(run)) == ["oval-base group", "Ἀθηνᾶ heads"]
    assert selections.load(run)["oval-base group"] == ["d.jpg"]
    selections.delete(run, "oval-base group")
    assert list(selections.load(run)) == ["Ἀθηνᾶ heads"]
    (run.dir / selections.FILE).write_text("{not json")
    assert selections.load(run) == {}  # damaged: read as none, replaced on the next save
    selections.save(run, "again", ["e.jpg"])
    assert selections.load(run) == {"again": ["e.jpg"]}


@pytest.mark.parametrize("name, paths, says", [("", ["a.jpg"], "give the selection a name"),
                                               ("x" * 81, ["a.jpg"], "at most 80"),
                                               ("empty", [], "select some figurines")])
def test_a_selection_without_a_name_or_figurines_is_refused_with_a_reason(tmp_path, name, paths, says):
    run = Run(tmp_path)
    with pytest.raises(UserError, match=says):
        selections.save(run, name, paths)
    assert selections.load(run) == {}


def test_groups_colour_each_figurine_by_the_first_selection_that_holds_it():
    enc = _enc()
    saved = {"first": ["c0/f0.jpg", "c1/f1.jpg"], "second": ["c1/f1.jpg", "c2/f2.jpg", "gone.jpg"]}
    g = selections.groups(enc, saved)
    assert list(g.iloc[:4]) == ["first", "first", "second", selections.NONE]
    assert (g.iloc[3:] == selections.NONE).all()
    assert list(selections.rows(enc, saved["second"])) == [1, 2]  # a file no longer in the run is left out
    colours = selections.colours(saved)
    assert list(colours) == ["first", "second", selections.NONE]
    assert len(set(colours.values())) == 3 and explore.CONTEXT_GREY not in colours.values()
    cells = explore.cells(enc.assign(saved_selection=g), np.ones(len(enc), bool), "aae", by="saved_selection",
                          bins=2)
    assert set(cells["saved_selection"]) <= set(colours) and cells["n"].sum() == len(enc)


def test_a_contact_sheet_shows_every_figurine_with_its_labels_and_says_which_cannot_be_read(tmp_path):
    for i in range(30):
        (tmp_path / f"c{i % 3}").mkdir(exist_ok=True)
        Image.new("RGB", (40 + i, 90), (200, 30 * (i % 8), 40)).save(tmp_path / f"c{i % 3}/f{i}.jpg")
    (tmp_path / "c0/f0.jpg").write_bytes(b"not an image")
    table = _enc(30)[["path", "culture", "site"]]
    pages = selections.contact_sheet(table, tmp_path, "oval-base group (30 figurines)")
    assert len(pages) == 2 and pages[0].size == (1240, 1754)  # A4 at 150 dpi, 25 a page
    first = np.asarray(pages[0])
    assert (first < 250).any(axis=2).mean() > 0.05  # photographs and labels drawn, not blank pages
    pdf = selections.sheet_pdf(pages)
    assert pdf.startswith(b"%PDF") and b"/Count 2" in pdf  # both pages
    png = Image.open(io.BytesIO(selections.sheet_png(pages)))
    assert png.format == "PNG" and png.size == (1240, 2 * 1754)
    many = selections.contact_sheet(_enc(selections.SHEET_LIMIT + 30)[["path", "culture", "site"]], tmp_path, "t")
    assert len(many) == -(-selections.SHEET_LIMIT // 25)  # at most SHEET_LIMIT figurines
    assert Image.open(io.BytesIO(selections.sheet_png(many))).size[1] == selections.PNG_PAGES * 1754


def test_the_lasso_chart_carries_each_figurines_id_and_reads_a_selection_back():
    enc = _enc().assign(selected=lambda d: d["id"] < 5)
    colours = explore.culture_colours(enc["culture"])
    view = explore.square_view(enc["aae_x"], enc["aae_y"], 1.0)
    fig = lasso.scatter(enc, enc.iloc[:0], "aae", "AAE latent", colours, True, 1.0, view)
    traces = [t for t in fig.data if t.customdata is not None]
    assert sorted(int(i) for t in traces for i in t.customdata[:, 0]) == list(range(len(enc)))
    assert sum(len(t.selectedpoints) for t in traces) == 5  # drawn as selected
    assert fig.layout.dragmode == "lasso" and len(fig.layout.shapes) == 3  # the prior's 1, 2 and 3 sd circles
    assert fig.layout.yaxis.scaleanchor == "x"
    event = {"points": [{"customdata": [7, "C1", "—", "c1/f7.jpg"]}, {"customdata": [3, "C0", "Uruk", "x"]},
                        {"customdata": [7, "C1", "—", "c1/f7.jpg"]}, {"x": 1}]}
    assert list(lasso.selected_ids(event)) == [3, 7]
    assert lasso.selected_ids({"points": []}) is None and lasso.selected_ids({}) is None


def test_contact_sheet_labels_break_between_a_paths_parts_and_fit_their_cell():
    """A new user's trial: "Babylonia, Seleucid per / iod/Larsa/seleucid_0052 / 0.png", and a culture line that
    spilt past its cell."""
    from PIL import ImageDraw

    draw, font = ImageDraw.Draw(Image.new("RGB", (10, 10))), selections._font(13)
    path = "Babylonia, Seleucid period/Larsa/seleucid_00520.png"
    lines = selections._wrap(draw, path, font, 196, 3)
    assert all(draw.textlength(s, font=font) <= 196 for s in lines) and "".join(lines).replace(" ", "") == \
        path.replace(" ", "")
    assert lines[-1] in ("seleucid_00520.png", "Larsa/seleucid_00520.png") and not any(
        s.endswith(("per", "seleucid_0052")) for s in lines)
    word = "x" * 200  # a name with no place to break: broken where it must, its end kept
    long = selections._wrap(draw, word, font, 196, 3)
    assert len(long) == 3 and long[-1].startswith("…") and all(draw.textlength(s, font=font) <= 196 for s in long)
