"""What every page shares: the active dataset and run, cached loaders feeding each other, and common widgets.

It lives in a folder of its own: Streamlit takes every file directly in pages/ for a page of its own.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core import demo
from core.dataset import Dataset, folder_fingerprint, load
from core.embed import encode_run, relink
from core.errors import UserError
from core.paths import DEMO, RUNS, inside_roots, remember_folder, remembered_folder, within_roots
from core.runs import Run, checked_runs, list_runs
from core.settings import Settings

PREVIEW_SIZE = 64

if PagesManager.uses_pages_directory:
    # Until some session of this server has run streamlit_app.py, Streamlit runs a deep-linked file of pages/ on its
    # own (its legacy multipage mode, chosen once per server because pages/ exists). Leave that mode, as
    # st.navigation would, and run the page again through the app's navigation.
    PagesManager.uses_pages_directory = False
    st.rerun()


def plain(text: str) -> str:
    """A file name or label from a user's folder, escaped so Markdown shows it as typed. Streamlit also turns
    URLs and e-mail addresses in text into links, escaped or not: a word joiner (U+2060, invisible) after
    `http`, `www` and before `@` keeps them text."""
    text = re.sub(r"(?i)(https?|ftp|www)(?=[:.])|(?=@)", "\\g<0>\u2060", str(text))
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


def file_name(path: str) -> str:
    """A file's name from its path, whole (objects stay identifiable), escaped as `plain` does, for a caption
    drawn with `unsafe_allow_html`: a narrow caption breaks it after `_` and `-` or before the extension
    (`<wbr>`, not copied with the name), never mid-extension."""
    name = plain(str(path).rsplit("/", 1)[-1].replace("&", "&amp;"))  # "&amp;" in a name shown as typed
    return re.sub(r"(\\[_\-])(?=.)", r"\1<wbr>", re.sub(r"(?=\\\.[^.]*$)", "<wbr>", name))


def data_root() -> Path:
    """The dataset chosen in this session (on the Data page, or by picking a run trained on it), else the folder
    last chosen on this server, else the demo."""
    return Path(st.session_state.get("data_root") or remembered_folder() or DEMO)


def choose_dataset(root: str | Path) -> None:
    """Make a folder the active dataset, and the one the next session opens with."""
    st.session_state["data_root"] = str(root)
    remember_folder(root)


def is_demo(root: Path) -> bool:
    return Path(root) == DEMO


def _progress(text: str):
    bar = st.progress(0.0, text=text)

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{text} {done:,} of {total:,}")

    return bar, update


def dataset(root: str, size: int = PREVIEW_SIZE, background: str = Settings.background) -> Dataset:
    """A decoded dataset as its folder is now (the demo is drawn on first use); progress bars while the work
    happens."""
    return _dataset(root, size, background, fingerprint(root))


@st.cache_resource(max_entries=4, show_spinner=False)
def _dataset(root: str, size: int, background: str, dataset_fingerprint: str | None) -> Dataset:
    if Path(root) == DEMO and not (DEMO / "truth.json").is_file():
        bar, update = _progress("Drawing the demo figurines (first start only):")
        demo.ensure(DEMO, PREVIEW_SIZE, progress=update)
        bar.empty()
    bar, update = _progress("Decoding photographs:")
    try:
        return load(root, size, background, progress=update)
    finally:
        bar.empty()


def active_dataset() -> Dataset | None:
    """The active dataset, or None after showing why it cannot be used."""
    try:
        return dataset(str(data_root()))
    except UserError as e:
        st.error(plain(str(e)))
        return None


def runs() -> list[Run]:
    """The runs that are not damaged, newest first."""
    return list_runs(RUNS)


def openable_runs() -> tuple[list[Run], list[tuple[str, str]]]:
    """One look at every run: those the app may open (not damaged, data inside the data roots), newest first,
    and (name, reason) of each of the others."""
    ok, refused = [], []
    for r, why in checked_runs(RUNS):
        if why is None:
            try:
                inside_roots(r.config()["data"])
                ok.append(r)
                continue
            except UserError as e:
                why = f"its dataset folder: {e}"
        refused.append((r.name, why))
    return ok, refused


def active_run() -> Run | None:
    """The run chosen in this session, else the newest with a checkpoint on the active dataset, else the newest
    with one; never a damaged one."""
    healthy = runs()
    chosen = [r for r in healthy if r.name == st.session_state.get("run")]
    done = [r for r in healthy if r.model_path.is_file()]
    here = [r for r in done if Path(r.config()["data"]) == data_root().resolve()]
    return (chosen or here or done or [None])[0]


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def fingerprint(root: str) -> str | None:
    """A dataset folder's fingerprint as of the last half minute (None if it cannot be read): every cache of
    what it holds is keyed by it, so that files added or changed are never shown under old rows. A scan takes
    0.3 s for 4,315 files, so it is not repeated on every redraw; the Data page's Rescan takes one at once."""
    try:
        return folder_fingerprint(root)
    except (UserError, OSError):
        return None


@st.cache_resource(max_entries=8, show_spinner="Encoding the figurines with this run (first time only)…")
def encodings(run_dir: str, checkpoint_mtime: int, dataset_fingerprint: str | None) -> pd.DataFrame:
    """A run's encodings table, shared by all sessions without a copy (read-only: pages derive new frames);
    recomputed by the engine only when the checkpoint or the data changed."""
    return encode_run(run_dir)


def relink_form(run: Run) -> None:
    """Where a run's dataset folder is now, when it moved (inside the data roots)."""
    with st.form(f"relink-{run.name}"):
        path = st.text_input("The dataset folder moved? Where is it now?", placeholder="/path/to/figurines")
        if st.form_submit_button("Point the run at this folder"):
            try:
                relink(run.dir, within_roots(path))  # what changed there is said when the run is encoded
            except UserError as e:
                st.error(plain(str(e)))
                return
            encodings.clear()
            st.rerun()


def run_label(run: Run) -> str:
    st_ = run.status()
    return f"{run.name} ({st_.get('state', '?')}, epoch {st_.get('epoch', 0)})"


@st.fragment(run_every=3)
def waiting(name: str) -> None:
    """Which run is training and how far it is, until its first checkpoint opens the page."""
    run = Run(RUNS / name)
    st_ = run.status()
    if run.model_path.is_file() or st_.get("state") != "running":
        st.rerun(scope="app")
    try:
        every = run.config()["settings"]["checkpoint_every"]
    except (UserError, KeyError, TypeError):
        every = "?"
    st.info(f"Run **{plain(name)}** is training: epoch {st_.get('epoch', 0)} of {st_.get('epochs', '?')}. It "
            f"appears here once its first checkpoint is written (every {every} epochs).")


def pick_run() -> Run | None:
    """A run with a checkpoint whose data the app may read, chosen by the user (the active one by default);
    None after saying why. Runs it cannot open are listed with the reason."""
    usable, unusable = openable_runs()
    if unusable:
        st.caption("Not listed: " + "; ".join(f"{plain(n)} ({plain(why)})" for n, why in unusable))
    done = [r for r in usable if r.model_path.is_file()]
    if not done:
        training = [r for r in usable if r.status().get("state") == "running"]
        if training:
            waiting(training[0].name)
        else:
            st.info("No trained run yet. Launch one on the Train page (the demo's fast preset takes a few "
                    "minutes on a laptop CPU); it appears here when its first checkpoint is written.")
        st.page_link("pages/train.py", label="Go to Train")
        return None
    names = [r.name for r in done]
    want = st.session_state.get("run") or getattr(active_run(), "name", None)
    pick = st.selectbox("Run", names, index=names.index(want) if want in names else 0,
                        format_func=lambda n: run_label(Run(RUNS / n)))
    run = Run(RUNS / pick)
    if pick != st.session_state.get("run"):  # the active dataset follows the run picked
        st.session_state["data_root"] = run.config()["data"]
    st.session_state["run"] = pick
    return run


def prior_metrics(p: dict, columns) -> None:
    """How the photographs' codes sit in the prior (`diagnostics.prior_of`), in four columns: the same figures
    on the Train page's snapshots and on the Influence page."""
    for col, k in zip(columns, (1, 2, 3)):
        col.metric(f"Codes within {k} sd", f"{p['within_sd'][k]:.1%}", f"prior: {p['expected_within_sd'][k]:.1%}",
                   delta_color="off", delta_arrow="off")  # a reference to compare with, not a change
    columns[3].metric("Codes told from prior draws", f"{p['c2st_accuracy']:.2f}", "0.50: alike", delta_color="off",
                      delta_arrow="off",
                      help="accuracy of a classifier telling the photographs' codes from draws of the prior "
                           "(0.50: it cannot tell them apart, as it should; 1: always)")
