"""Each page of the app in Streamlit's AppTest, on the demo."""
import ast
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.dataset import load
from core.paths import DATA, RUNS
from core.runs import Run
from core.settings import Settings
from core.fit import fit_run

APP = "../streamlit_app.py"


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    for k, v in state.items():
        at.session_state[k] = v
    if name != "home":
        at.switch_page(f"pages/{name}.py")
    return at.run()


def charts(at: AppTest) -> list:
    return [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]


def points_in(chart) -> int:
    """Rows behind a chart's figurine layer (the dataset with an id column; grey context has none)."""
    tables = [pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets]
    return next(t.num_rows for t in tables if "id" in t.column_names)


@pytest.fixture(scope="module")
def trained_run(small_demo):
    data = DATA / "small-demo"  # the app opens runs whose data lies inside its data roots
    shutil.copytree(small_demo, data, dirs_exist_ok=True)
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=2, device="cpu")
    return fit_run(RUNS / "explore-test", s, str(data))


def test_home_opens_on_the_demo():
    at = page("home")
    assert not at.exception
    assert at.title[0].value == "Figurine latent-space explorer"
    assert any("431" in m.value and "4" in m.value for m in at.markdown)


def test_home_says_when_the_active_run_was_trained_on_another_dataset(trained_run):
    from pages.shared import plain

    at = page("home", run=trained_run.name)  # the active dataset is the demo; the run was trained on another
    assert not at.exception
    said = " ".join(m.value for m in at.markdown)
    assert plain(trained_run.name) in said and plain("small-demo, not on the active dataset") in said


def test_data_page_counts_thumbnails_and_filters():
    at = page("data")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["images"].sum() == 431 and set(table["culture"]) >= {"Hellenistic Babylonian", "Achaemenid"}
    said = " ".join(m.value.replace("\\", "") for m in at.markdown)  # which culture is asked about, and why
    assert "**Asked about:** Hellenistic Babylonian (" in said and "**compared with:** Achaemenid, " in said
    n_all = len(at.get("image"))
    at.multiselect(key="data_cultures").set_value(["Achaemenid"]).run()
    assert 0 < len(at.get("image")) < n_all
    assert any("8 photographs match" in c.value for c in at.caption)


def test_data_page_shows_which_photographs_kept_their_backdrop():
    """Where no figure stands out from a backdrop, the photograph keeps it: the Data page counts those and
    shows them alone on request."""
    from PIL import Image

    from core.demo import photograph

    root = DATA / "backdrops"
    for culture in ("Achaemenid", "Neo-Babylonian"):
        (root / culture).mkdir(parents=True, exist_ok=True)
        for j in range(3):
            photograph(culture, np.random.default_rng(j), 96)[0].save(root / culture / f"{j}.jpg")
    Image.new("RGB", (96, 96), (60, 120, 60)).save(root / "Achaemenid" / "green cloth.jpg")
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    at.text_input[0].set_value(str(root))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("cut away to neutral grey for 6 of 7; kept as photographed for 1" in c.value for c in at.caption)
    said = " ".join(m.value.replace("\\", "") for m in at.markdown)
    assert "**Asked about:** Achaemenid (4 figurines); **compared with:** Neo-Babylonian." in said
    warned = [w.value.replace("\\", "") for w in at.warning]  # no target named, no find-sites; few photographs
    assert any("so the largest, Achaemenid, is taken as the culture asked about" in w for w in warned), warned
    assert any(w.startswith("Achaemenid (4), Neo-Babylonian (3) have fewer than 10 photographs") for w in warned)
    at.toggle(key="data_kept").set_value(True).run()
    assert len(at.get("image")) == 1 and any("1 photograph matches" in c.value for c in at.caption)


def test_data_page_says_which_culture_is_asked_about_when_two_have_find_sites():
    """A source sorted by find-site, as a museum export may be: the culture with most photographs in find-site
    folders is asked about, and the page says so, without calling it the culture with find-sites."""
    from core.demo import photograph

    root = DATA / "sited"
    for culture, site, n in [("Babylonia", "Uruk", 12), ("Greek", "Myrina", 10), ("Achaemenid", "", 10)]:
        (root / culture / site).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            photograph("Achaemenid", np.random.default_rng(j), 64)[0].save(root / culture / site / f"{j}.jpg")
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    at.text_input[0].set_value(str(root))
    at.button[0].click().run()
    assert not at.exception and not at.error
    said = " ".join(m.value.replace("\\", "") for m in at.markdown)
    assert "**Asked about:** Babylonia (12 figurines, from 1 find-site); **compared with:** Achaemenid, Greek." in said
    assert "It is the culture with find-sites" not in said
    assert [w.value.replace("\\", "").split(":")[0] for w in at.warning] == [
        "Babylonia and Greek both have find-site folders"]


def test_data_page_refuses_bad_folders(tmp_path):
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    (DATA / "a file.txt").write_text("not a folder")
    for path, message in [(str(tmp_path), "in FIGURINES_DATA_ROOTS"), ("/etc/../etc", "outside the folders"),
                          (str(DATA / "a file.txt"), "is a file, not a folder"),
                          (str(DATA / "nope"), "not found")]:
        at.text_input[0].set_value(path)
        at.button[0].click().run()
        assert not at.exception and any(message in e.value.replace("\\", "") for e in at.error), path
    (DATA / "empty" / "Greek").mkdir(parents=True)
    at.text_input[0].set_value(str(DATA / "empty"))
    at.button[0].click().run()
    assert any("no image files" in e.value for e in at.error)


def test_explore_site_filter_changes_both_charts(trained_run, monkeypatch):
    from core import embed
    from core.embed import UMAPBaseline, encode_run

    encode_run(trained_run.dir)  # an encoded run: opening Explore and filtering recompute nothing
    monkeypatch.setattr(embed, "encode_images", lambda *a: pytest.fail("encoded again"))
    monkeypatch.setattr(UMAPBaseline, "fit_transform", lambda *a: pytest.fail("UMAP again"))
    at = page("explore", run=trained_run.name)
    assert not at.exception and not at.error
    aae, umap = charts(at)
    n = points_in(aae)
    assert n == points_in(umap) == trained_run.config()["images"]
    # each map says what it was made from (issue 25)
    assert "UMAP baseline (from the pixels, form)" in umap.proto.spec
    assert "AAE latent (from the pixels, form)" in aae.proto.spec and "UMAP baseline 2" in umap.proto.spec
    at.pills(key=f"f_sites:{trained_run.name}").set_value(["Babylon", "Seleucia on the Tigris"]).run()
    aae, umap = charts(at)
    assert points_in(aae) == points_in(umap) < n
    assert not at.exception


def test_explore_finds_a_figurine_by_name_and_selects_it_in_both_charts(trained_run):
    """Issue 27, item 14: part of a file name selects the figurines that hold it, in both charts and the gallery."""
    import pandas as pd

    at = page("explore", run=trained_run.name)  # encodes the run: its encodings name the files
    paths = pd.read_parquet(trained_run.encodings_path, columns=["path"])["path"]
    name = paths.iloc[3].rsplit("/", 1)[-1]
    at.text_input(key=f"find:{trained_run.name}").set_value(name.upper()).run()
    assert not at.exception
    assert at.subheader[0].value == "Selected figurines (1)"
    assert any(c.value.startswith("1 figurine found, selected in both charts") for c in at.caption)
    for chart in charts(at):  # highlighted in both: one point marked selected
        tables = [pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets]
        points = next(t for t in tables if "id" in t.column_names)
        assert sum(points.column("selected").to_pylist()) == 1
    like = next(h for h in at.subheader if h.value == "Figurines like this one")  # issue 27, item 15
    assert like and any(c.value.startswith("The 8 nearest to ") and "descriptor space" in c.value for c in at.caption)
    at.text_input(key=f"find:{trained_run.name}").set_value("no such figurine").run()
    assert any("No figurine shown has" in i.value for i in at.info)


def test_explore_saves_a_selection_colours_the_maps_by_it_and_selects_it_again(trained_run):
    """Issue 27, items 12 and 13: a selection named and kept with the run, the maps coloured by it, its files and
    contact sheet offered, the lasso charts drawn with Plotly; deleting it leaves the run as it was."""
    from core import selections

    at = page("explore", run=trained_run.name)
    at.text_input(key=f"find:{trained_run.name}").set_value(".").run()  # every figurine: a dot in each name
    n = int(at.subheader[0].value.split("(")[1].rstrip(")").replace(",", ""))
    at.text_input(key=f"find:{trained_run.name}").set_value("").run()
    at.text_input(key=f"find:{trained_run.name}").set_value("_000").run()
    chosen = int(at.subheader[0].value.split("(")[1].rstrip(")").replace(",", ""))
    assert 0 < chosen < n
    next(t for t in at.text_input if t.label.startswith("Name this selection")).set_value("  oval-base group ")
    next(b for b in at.button if b.label == "Save selection").click().run()
    assert not at.exception and not at.error
    assert list(selections.load(trained_run)) == ["oval-base group"]
    said = [s.value.replace("\\", "") for s in at.success]  # shown where it stays, not in a passing toast
    assert any(v.startswith(f"Saved “oval-base group”: {chosen:,} figurines") for v in said), said
    assert len(selections.load(trained_run)["oval-base group"]) == chosen
    assert at.segmented_control(key=f"colour_by:{trained_run.name}").value == "saved selections"
    for chart in charts(at):  # coloured by the saved selection, every figurine in one of two groups
        tables = [pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets]
        groups = next(t for t in tables if "id" in t.column_names).column("saved_selection").to_pylist()
        assert groups.count("oval-base group") == chosen and len(set(groups)) == 2
    assert any(m.value.replace("\\", "").startswith(f"**oval-base group**: {chosen:,} figurines") for m in at.markdown)
    labels = {e.proto.label for e in at.main if getattr(e, "type", "") == "download_button"}
    assert {"Files (CSV)", "Contact sheet (PDF)", "Contact sheet (PNG)"} <= labels
    next(b for b in at.button if b.label == "Clear the selection").click().run()
    assert not any(h.value.startswith("Selected figurines") for h in at.subheader)
    next(b for b in at.button if b.label == "Select").click().run()  # the saved selection, selected again
    assert any(h.value == f"Selected figurines ({chosen:,})" for h in at.subheader)
    at.segmented_control(key=f"select_with:{trained_run.name}").set_value("lasso").run()
    plotted = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"]
    assert len(plotted) == 2 and not charts(at) and not at.exception
    next(b for b in at.button if b.label == "Delete").click().run()
    assert selections.load(trained_run) == {} and at.segmented_control(key=f"colour_by:{trained_run.name}").value \
        == "culture"
    at.segmented_control(key=f"select_with:{trained_run.name}").set_value("box or click").run()


def test_explore_one_culture_filter_is_kept_across_pages_and_the_legend_follows_it(trained_run):
    at = page("explore", run=trained_run.name)
    key = f"f_cultures:{trained_run.name}"
    at.pills(key=key).set_value(["Achaemenid"]).run()  # one click: only this culture
    aae, umap = charts(at)
    assert '"domain": ["Achaemenid"]' in aae.proto.spec.replace('":[', '": [').replace('","', '", "')
    shown = next(c.value for c in at.caption if "figurines shown" in c.value)
    at.switch_page("pages/influence.py").run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception and at.pills(key=key).value == ["Achaemenid"]
    assert next(c.value for c in at.caption if "figurines shown" in c.value) == shown
    at.pills(key=key).set_value([]).run()  # nothing picked: every culture again
    assert points_in(charts(at)[0]) == trained_run.config()["images"]


def test_explore_charts_are_square_with_equal_scales(trained_run):
    import json

    at = page("explore", run=trained_run.name)
    for chart in charts(at):
        spec = json.loads(chart.proto.spec)
        assert spec["width"] == spec["height"] and spec["autosize"]["type"] == "pad"  # the plot itself square
        scales = [(layer["encoding"]["x"]["scale"]["domain"], layer["encoding"]["y"]["scale"]["domain"])
                  for layer in spec["layer"]]
        (x0, x1), (y0, y1) = scales[0]
        assert all(s == scales[0] for s in scales) and abs((x1 - x0) - (y1 - y0)) < 1e-9
    names = [layer.get("name") for layer in json.loads(charts(at)[0].proto.spec)["layer"]]
    assert names[-1] == "prior"  # the prior's circles above the points


def test_explore_gallery_pages_through_the_whole_selection(trained_run):
    at = page("explore", run=trained_run.name)
    at.session_state["picks"] = {trained_run.name: {"ids": list(range(100)), "gen": {}, "seen": {}}}
    at.run()
    assert not at.exception
    assert any(h.value == "Selected figurines (100)" for h in at.subheader)
    assert any(c.value.startswith("In this selection:") for c in at.caption)
    first = [c.value for c in at.caption if "·" in c.value and "\n" in c.value]
    assert any("Figurines 1 to 48 of 100" in c.value for c in at.caption)
    at.number_input(key=f"g_page:{trained_run.name}").set_value(3).run()
    assert any("Figurines 97 to 100 of 100" in c.value for c in at.caption)
    assert [c.value for c in at.caption if "·" in c.value and "\n" in c.value] != first


def test_explore_hover_thumbnails_are_static_files(trained_run):
    from core.paths import THUMBNAILS

    at = page("explore", run=trained_run.name)
    spec = charts(at)[0].proto.spec
    url = re.search(r"'(app/static/thumbnails/[^']+)/'", spec).group(1)
    folder = THUMBNAILS / url.rsplit("/", 1)[1]
    assert len(list(folder.glob("*.jpg"))) == trained_run.config()["images"]
    # the photographs as taken, whatever the run's backgrounds: cut out at 128 px they took minutes to make
    assert folder.name == load(trained_run.config()["data"], 128, "keep").key
    assert max(len(d.data.data) for d in charts(at)[0].proto.datasets) < 200 * trained_run.config()["images"]


def test_explore_says_when_the_map_has_collapsed(trained_run, monkeypatch):
    from core import diagnostics

    monkeypatch.setattr(diagnostics, "COLLAPSED", 0.0)  # nothing counts as collapsed
    assert not any("has collapsed" in w.value for w in page("explore", run=trained_run.name).warning)
    monkeypatch.setattr(diagnostics, "COLLAPSED", 1e9)  # everything does
    warned = [w.value for w in page("explore", run=trained_run.name).warning if "has collapsed" in w.value]
    assert len(warned) == 1 and "Train it longer" in warned[0]


def test_explore_draws_density_cells_above_the_point_limit(trained_run, monkeypatch):
    from core import explore

    monkeypatch.setattr(explore, "POINTS_UP_TO", 50)
    at = page("explore", run=trained_run.name)
    assert not at.exception and not at.error
    assert any("density cells" in c.value for c in at.caption)

    def figurines(chart) -> int:
        tables = [pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets]
        return sum(t.column("n").to_pylist()[i] for t in tables if "selected" in t.column_names
                   for i in range(t.num_rows))

    aae, umap = charts(at)
    assert '"rect"' in aae.proto.spec and figurines(aae) == figurines(umap) == trained_run.config()["images"]
    at.pills(key=f"f_sites:{trained_run.name}").set_value(["Babylon"]).run()
    aae, umap = charts(at)
    assert figurines(aae) == figurines(umap) < trained_run.config()["images"]


def test_explore_opens_a_run_whose_folder_moved_and_relinks_it(trained_run):
    import json

    data, moved = DATA / "to-move", DATA / "moved-here"
    shutil.copytree(trained_run.config()["data"], data)
    shutil.copytree(trained_run.dir, RUNS / "moved-data")
    run = Run(RUNS / "moved-data")
    run.config_path.write_text(json.dumps({**run.config(), "data": str(data)}))
    from core.embed import encode_run

    encode_run(run.dir)
    data.rename(moved)
    at = page("explore", run="moved-data")
    assert not at.exception and not at.error and len(charts(at)) == 2  # the encodings, without the photographs
    assert any("dataset folder not found" in w.value for w in at.warning)
    at.text_input[0].set_value("/etc")
    at.button[0].click().run()
    assert any("outside the folders" in e.value for e in at.error)  # the app relinks only inside the data roots
    at.text_input[0].set_value(str(moved))
    at.button[0].click().run()
    assert not at.exception and not at.error and run.config()["data"] == str(moved)
    assert [w.value for w in at.warning if "has collapsed" not in w.value] == []  # a 2-epoch run's map may have


def test_a_failed_run_shows_its_message(trained_run):
    failed = Run(RUNS / "failed-run")
    failed.write_config(trained_run.config())
    failed.set_status("failed", epoch=1, message="recon_loss became nan in epoch 2: training diverged",
                      note="shots (1) has fewer than 10 photographs")
    at = page("train", watch="failed-run")
    assert not at.exception
    assert any("training diverged" in e.value for e in at.error)
    assert any(i.value.startswith("shots \\(1\\) has fewer than 10 photographs") for i in at.info)  # the doubts


def test_the_train_page_offers_every_setting_but_the_presets_own():
    """Its widgets are made from the settings' list: a new setting appears without touching the page."""
    from dataclasses import fields

    at = page("train")
    shown = {w.label for kind in (at.checkbox, at.selectbox, at.number_input, at.radio) for w in kind}
    for f in fields(Settings):
        assert (f.metadata["label"] in shown) == (f.metadata["group"] != "preset"), f.name


def test_a_short_training_from_the_train_page_completes(small_demo):
    at = page("train")
    assert not at.exception
    at.text_input[0].set_value("from-the-page")
    at.selectbox[0].set_value(32)           # image size
    at.number_input[0].set_value(2)         # epochs
    at.selectbox[1].set_value("cpu")
    local = next(c for c in at.checkbox if c.label == "Tell it which are local")
    look_alikes = next(c for c in at.checkbox if c.label == "Keep look-alikes together")
    assert local.value and look_alikes.value  # the fast preset's
    look_alikes.uncheck()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = Run(RUNS / "from-the-page")
    assert run.config()["effective"]["local"] and not run.config()["effective"]["neighbours"]  # what was ticked
    t0 = time.time()
    while run.status().get("state") == "running" and time.time() - t0 < 240:
        time.sleep(1)
    assert run.status()["state"] == "done"
    at.run()
    assert any("Finished 2 epochs" in s.value for s in at.success)
    assert charts(at)  # the loss curves
    assert list(run.metrics()["epoch"]) == [1, 2]


def _stop(run: Run) -> None:
    run.request_stop()
    t0 = time.time()
    while run.status().get("state") == "running" and time.time() - t0 < 60:
        time.sleep(0.3)


def test_a_restarted_server_finds_the_running_training(small_demo, tiny_settings):
    run = jobs.launch(RUNS / "survivor", replace(tiny_settings, epochs=2000), str(small_demo), encode=False)
    try:
        at = page("train")  # a new session of a new server process: it knows nothing but the folders
        assert not at.exception
        assert any("run **survivor**" in i.value for i in at.info)
        assert any(h.value == "Run survivor" for h in at.subheader)
        assert at.button(key="stop-survivor").click().run() and not at.exception
        assert run.stop_requested(), run.status()
    finally:
        _stop(run)
    assert run.status()["state"] == "stopped"


def test_train_and_influence_show_one_prior_measure(trained_run):
    """Issue 27, item 11: the Train page measures the photographs' own codes against the prior under each
    snapshot; at the end of a finished run, on all of them, with the same figures as the Influence page."""
    def prior(at: AppTest) -> dict:
        return {m.label: m.value for m in at.metric if m.label.startswith("Codes ")}

    influence = prior(page("influence", run=trained_run.name))  # encodes the run, as a launch from the app does
    train = page("train", watch=trained_run.name)
    assert not train.exception
    n = trained_run.config()["images"]
    assert any(f"measured on all {n} photographs, as on the Influence page" in c.value for c in train.caption)
    shown = prior(train)
    assert set(shown) == {"Codes within 1 sd", "Codes within 2 sd", "Codes within 3 sd", "Codes told from prior draws"}
    assert not any("this epoch's codes" in c.value for c in train.caption)  # the varied views' measure is gone
    assert influence == shown
    # the prior's own figures sit under each as a reference, with no arrow: they are not a change
    from streamlit.proto.Metric_pb2 import Metric

    assert {m.proto.direction for m in train.metric if m.label.startswith("Codes ")} == {Metric.MetricDirection.NONE}


def test_influence_page():
    """Issue 27: the answer first in words, one picture, which representation and why, what to cite; the checks
    in a section for methods readers, each figure with what it means."""
    from tests.corpus import answerable

    data = answerable(DATA / "answerable")
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu")
    run = fit_run(RUNS / "answerable", s, str(data))
    at = page("influence", run=run.name)
    assert not at.exception
    question = next(c for c in (c.value.replace("\\", "") for c in at.caption) if c.startswith("What share"))
    assert question.startswith("What share of each group of Hellenistic Babylonian figurines follows each source "
                               "culture (Achaemenid, Classical Greek and Hellenistic or Neo-Babylonian)? Read on the "
                               "demo's photographs: 300 source figurines and 200 ")
    alerts = list(at.success) + list(at.warning) + list(at.error)
    lead = next(a.value for a in alerts if a.value.startswith(("These shares", "Read these", "Cannot tell yet")))
    assert not lead.startswith("Cannot tell"), lead  # a collection of plain mixtures is answered
    headers = [h.value for h in at.header] + [h.value for h in at.subheader]
    tables = {d.value.columns[0]: d.value for d in at.table}
    checks = tables["AAE latent"]
    assert list(checks.columns) == ["AAE latent", "UMAP baseline", "descriptor space", "what it means for the reading"]
    assert "None" not in checks.to_string() and "how clearly the sources are told apart (0 to 1)" in checks.index
    bullets = [m.value for m in at.markdown if m.value.startswith("- **")]
    assert bullets[0].startswith("- **Hellenistic Babylonian** (") and "%" in bullets[0]
    picture, *maps = charts(at)
    assert len(maps) == 3 and "Hellenistic Babylonian figurines: shares of each source culture" in str(picture.proto.spec)
    which = next(i.value for i in at.info if i.value.startswith("These numbers are read in "))
    assert "passes its checks best" in which  # which, and why
    paragraph = next(c.value for c in at.code if c.value.startswith("We analysed photographs of "))
    assert "Saerens" in paragraph and "run answerable" in paragraph
    assert len([c for c in at.code if c.value.startswith("Of ")]) == len(bullets)  # one sentence to quote per group
    subheaders = [h.value for h in at.subheader]  # the reading first, what to cite, then the methods section
    assert subheaders.index("For a paper") < subheaders.index("How far the method can be trusted")
    shown = next(m.value for m in at.markdown if m.value.startswith("The ranges shown above"))
    assert re.search(r"are \d\.\d\d wide on average", shown)  # the ranges shown, beside the self-check's own
    assert "For methods readers" in headers
    table = next(d.value for d in at.dataframe if "embedding" in d.value)
    assert set(table["embedding"]) == {"AAE latent", "UMAP baseline", "descriptor space"}
    assert any(i.value.startswith("Verdict: ") for i in list(at.info) + list(at.warning) + list(at.error))


def test_influence_page_offers_what_could_help_and_reads_two_sources_as_one(tmp_path):
    """Issue 27, item 3: where two sources cannot be told apart, the page says so first, offers the measured
    options, and reads the two as one at a click."""
    from tests.corpus import answerable

    data = answerable(DATA / "split-sources")
    greek, other = data / "Classical Greek and Hellenistic", data / "Hellenistic"
    other.mkdir()
    for f in sorted(greek.iterdir())[::2]:
        f.rename(other / f.name)
    greek.rename(data / "Classical Greek")
    (data / "truth.json").unlink()
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu")
    run = fit_run(RUNS / "split-sources", s, str(data))
    at = page("influence", run=run.name)
    assert not at.exception, at.exception
    assert at.error[0].value.replace("\\", "").startswith("Cannot tell yet: ")  # the headline says so first
    assert "What could help" in [h.value for h in at.subheader]
    merge = next(b for b in at.button if b.label.startswith("Read ") and "as one source" in b.label)
    assert merge.label.replace("\\", "") in ("Read Classical Greek + Hellenistic as one source",
                           "Read Hellenistic + Classical Greek as one source")
    at = merge.click().run()
    assert not at.exception, at.exception
    assert any("are read as one source here" in i.value for i in at.info)
    table = next(d.value for d in at.dataframe if "embedding" in d.value)
    assert "Classical Greek + Hellenistic" in set(table["source"]) and "Hellenistic" not in set(table["source"])
    assert not any(e.value.replace("\\", "").startswith("Cannot tell") for e in at.error), [e.value for e in at.error]
    assert len(charts(at)) == 4  # answered: the picture, then a heatmap per representation


def test_influence_page_names_the_datasets_own_target_culture(tmp_path):
    """A collection whose target culture is not Hellenistic Babylonian: the page says its own name."""
    from core.demo import SECOND, generate

    data = DATA / "second"
    generate(data, size=32, scale=0.3, seed=1, collection=SECOND)
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu")
    run = fit_run(RUNS / "second-test", s, str(data))
    at = page("influence", run=run.name)
    assert not at.exception, at.exception
    text = " ".join(e.value for e in list(at.caption) + list(at.markdown) + list(at.info))
    assert "Seleucid Mesopotamian figurines follows each source culture" in text
    assert "Hellenistic Babylonian" not in text
    assert not any("find-site folders" in w.value or "fewer than" in w.value for w in at.warning)  # nothing in doubt


def test_names_from_a_folder_are_shown_as_text():
    from pages.shared import file_name, plain

    for name in ["**bold**", "<b>x</b>", "$x$.jpg", "[link](http://e.x)", "a_b_c.tif"]:
        escaped = plain(name)
        assert escaped.replace("\\", "").replace("\u2060", "") == name  # the word joiner is invisible
        assert all(escaped[i - 1] == "\\" for i, ch in enumerate(escaped) if ch in "*<>$[]()_" and i > 0)
    # a file name under a thumbnail: the same text, breaking after _ and - or before its extension, never inside it
    assert file_name("Greek/seleucid_00401-b.tif") == "seleucid\\_<wbr>00401\\-<wbr>b<wbr>\\.tif"
    for name in ["<img src=x>.jpg", "&amp; *y*.png", "plain"]:
        shown = file_name(f"a/{name}").replace("<wbr>", "")
        assert shown == plain(name.replace("&", "&amp;")) and "<" not in shown.replace("\\<", "")


def test_every_cache_of_the_app_is_bounded():
    """A long-running server's memory stays flat: every st.cache_* has max_entries."""
    found = 0
    for f in (Path(__file__).parents[1] / "pages").glob("*.py"):
        for fn in ast.walk(ast.parse(f.read_text())):
            for d in getattr(fn, "decorator_list", []):
                target = d.func if isinstance(d, ast.Call) else d
                if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                    found += 1
                    assert isinstance(d, ast.Call) and "max_entries" in {k.arg for k in d.keywords}, \
                        f"{f.name}:{d.lineno} has an unbounded cache"
    assert found >= 5


def test_data_page_lists_every_unreadable_file_of_a_messy_folder(messy):
    from pages.shared import plain
    from tests.corpus import READABLE, UNREADABLE

    name = "messy **bold** [x](y) _z_"
    shutil.copytree(messy, DATA / name, symlinks=True)
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    at.text_input[0].set_value(str(DATA / name))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.subheader[0].value == f"{plain(name)}: {len(READABLE)} images in 2 cultures"  # shown as typed
    unreadable = at.dataframe[-1].value
    assert dict(zip(unreadable["path"], unreadable["reason"])).keys() == UNREADABLE.keys()
    assert all(reason in dict(zip(unreadable["path"], unreadable["reason"]))[p] for p, reason in UNREADABLE.items())


def test_data_page_lists_the_problems_of_metadata_csv(messy):
    shutil.copytree(messy, DATA / "relabelled", symlinks=True)
    (DATA / "relabelled" / "metadata.csv").write_text("path, culture, site\nGreek/plain.jpg, Hellenistic, Babylonian, "
                                                      "Uruk\nGreek/one.png, Roman,\nGreek/none.png,Roman,\n")
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    at.text_input[0].set_value(str(DATA / "relabelled"))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("metadata.csv: 2 row(s) not used" in w.value for w in at.warning)
    listed = at.dataframe[-1].value.set_index("path")["reason"]
    assert listed["Greek/plain.jpg"].startswith("metadata.csv line 2: 4 fields")
    assert listed["Greek/none.png"] == "metadata.csv line 4: names this file, but it is not in the folder"
    assert at.dataframe[0].value.set_index("culture").loc["Roman", "images"] == 1  # line 3 applied


def test_damaged_runs_are_listed_with_the_reason_and_every_page_works(trained_run):
    """Issue 12, item 7: one damaged run (or lock file) must not break Home, Train, Explore or Influence."""
    import json

    from pages.shared import plain

    damage = {"status-list": lambda r: r.status_path.write_text("[]"),
              "pid-text": lambda r: r.status_path.write_text('{"state": "running", "epoch": 1, "pid": "x"}'),
              "config": lambda r: r.config_path.write_text("{"),
              "metrics-bytes": lambda r: r.metrics_path.write_bytes(np.random.default_rng(1).bytes(300)),
              "metrics-column": lambda r: r.metrics_path.write_text("epoch\n1\n"),
              "snapshot": lambda r: next(r.snapshots_dir.glob("epoch_*.npy")).write_bytes(b"junk"),
              "outside": lambda r: r.config_path.write_text(json.dumps({**r.config(), "data": "/usr/share"}))}
    copies = []
    try:
        for name, spoil in damage.items():
            shutil.copytree(trained_run.dir, RUNS / f"damaged-{name}")
            copies.append(RUNS / f"damaged-{name}")
            spoil(Run(copies[-1]))
        (RUNS / ".training-cpu.lock").write_text('{"run": 3, "pid": "abc"}')
        at = page("home", run=trained_run.name)
        assert not at.exception
        warned = " ".join(w.value for w in at.warning)
        assert all(plain(f"damaged-{name}") in warned for name in damage), warned
        assert all(plain(f) in warned for f in ("status.json", "metrics.csv", "config.json", "snapshot(s)"))
        assert "outside the folders" in warned
        assert not page("train").exception
        for name in ("explore", "influence"):
            at = page(name, run=trained_run.name)
            assert not at.exception and any("Not listed:" in c.value for c in at.caption), name
    finally:
        for c in copies:
            shutil.rmtree(c)
        (RUNS / ".training-cpu.lock").unlink(missing_ok=True)


def test_data_page_lists_links_out_of_the_roots_and_refuses_odd_paths(tmp_path):
    from tests.corpus import figure

    (tmp_path / "outside").mkdir()
    figure().save(tmp_path / "outside" / "system.png")
    folder = DATA / "linked" / "Greek"
    folder.mkdir(parents=True)
    figure().save(folder / "a.png")
    figure(seed=1).save(folder / "b.png")
    (DATA / "linked" / "Roman").symlink_to(tmp_path / "outside")
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    for bad in ["x\x00y", "a" * 5000]:
        at.text_input[0].set_value(bad)
        at.button[0].click().run()
        assert not at.exception and any("not a usable path" in e.value for e in at.error), bad
    at.text_input[0].set_value(str(DATA / "linked"))
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert len(at.get("image")) == 2
    unreadable = at.dataframe[-1].value
    assert list(unreadable["path"]) == ["Roman"] and "outside this folder" in unreadable["reason"][0]


def test_influence_page_with_a_culture_of_one_image(small_demo):
    """Issue 12, item 13: a source culture of a single photograph."""
    from tests.corpus import figure

    data = DATA / "one-lonely"
    shutil.copytree(small_demo, data)
    (data / "Lonely culture").mkdir()
    figure().resize((32, 32)).save(data / "Lonely culture" / "only.png")
    s = Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1, device="cpu")
    run = fit_run(RUNS / "one-lonely", s, str(data))
    at = page("influence", run=run.name)
    assert not at.exception, at.exception
    assert any(i.value.startswith("Verdict: ") for i in list(at.info) + list(at.warning) + list(at.error))
    assert any("Lonely culture \\(1\\) have fewer than 10 photographs" in w.value for w in at.warning)


def test_explore_says_which_run_trains_before_its_first_checkpoint(trained_run, tmp_path, monkeypatch):
    import pages.shared

    monkeypatch.setattr(pages.shared, "RUNS", tmp_path)  # no finished run anywhere
    run = Run(tmp_path / "warming")
    cfg = trained_run.config()
    run.write_config({**cfg, "settings": {**cfg["settings"], "checkpoint_every": 5}})
    run.set_status("running", epoch=3, epochs=30)
    for name in ("explore", "influence"):
        at = page(name)
        assert not at.exception
        assert any("Run **warming** is training: epoch 3 of 30" in i.value and "every 5 epochs" in i.value
                   for i in at.info), [i.value for i in at.info]


def test_the_chosen_folder_is_kept_across_a_reload_and_names_the_runs(small_demo):
    """Issue 27, item 7: after a reload the Train page still trains on the folder chosen, not the demo."""
    shutil.copytree(small_demo, DATA / "Museum photos", dirs_exist_ok=True)
    at = page("data")
    at.radio[0].set_value("A folder on this server").run()
    at.text_input[0].set_value(str(DATA / "Museum photos"))
    at.button[0].click().run()
    assert not at.exception and not at.error
    at = page("train")  # a new session: a reload, or another tab
    assert not at.exception
    assert any(c.value.startswith("Dataset: ") and "Museum photos" in c.value for c in at.caption)
    assert at.text_input(key="run_name").value.startswith("Museum-photos-fast-")
    at.number_input[0].set_value(5).run()  # a number typed launches nothing (Enter: tests/test_e2e.py)
    assert not at.exception and not list(RUNS.glob("Museum*"))


def test_a_training_over_an_hour_asks_first():
    """Issue 27, item 9: the paper preset on a CPU says how long it would take, and launches only when confirmed."""
    at = page("train")
    at.segmented_control(key="preset").set_value("paper").run()
    assert any("about 1" in c.value and " h of training on this machine" in c.value for c in at.caption)
    at.text_input(key="run_name").set_value("too-long")
    next(b for b in at.button if b.label == "Launch training").click().run()
    assert not at.exception and any("Launch it anyway?" in w.value for w in at.warning)
    assert not (RUNS / "too-long").exists()
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert not at.exception and not any("Launch it anyway?" in w.value for w in at.warning)
    assert not (RUNS / "too-long").exists()
