"""Explore: the AAE latent space and the UMAP baseline side by side, filtered and linked."""
import numpy as np
import pandas as pd
import streamlit as st

from core import charts, diagnostics, explore, export, influence, lasso, selections
from core.dataset import load
from core.errors import UserError
from core.estimator import AAE
from core.labels import target_culture
from core.paths import STATIC, THUMBNAILS
from pages.shared import encodings, fingerprint, pick_run, plain, relink_form, file_name

THUMBNAIL_SIZE = 128  # px, what hovering a point shows
PER_PAGE = 48  # figurines per gallery page

st.title("Explore")


@st.cache_resource(max_entries=2, show_spinner=False)
def model(run_dir: str, checkpoint_mtime: int):
    return AAE.load(run_dir, device="cpu").model_


@st.cache_data(max_entries=4, show_spinner=False)
def manifold(run_dir: str, checkpoint_mtime: int):
    """The decoder's 9 x 9 grid over the prior: drawn once per checkpoint, not on every filter change."""
    return explore.manifold(model(run_dir, checkpoint_mtime), n=9)


@st.cache_resource(max_entries=2, show_spinner=False)
def images_of(root: str, size: int, background: str, dataset_key: str):
    """The decoded photographs behind a run's encodings, keyed by the dataset's fingerprint (files added since
    never shift the rows); None where the folder holds other files now."""
    ds = load(root, size, background)
    return ds.images if ds.key == dataset_key else None


@st.cache_data(max_entries=2, show_spinner="Describing the photographs (first time only)…")
def reading_space(run_dir: str, checkpoint_mtime: int, dataset_key: str, _enc: pd.DataFrame):
    """The descriptor space the Influence numbers are read in, rows as the run's encodings."""
    return influence.reading_space(run_dir, _enc)


@st.cache_data(max_entries=4, show_spinner="Making thumbnails (first time only)…")
def thumbnails(root: str, size: int, background: str, dataset_key: str) -> str | None:
    """The URL folder of the dataset's hover thumbnails (static files, written once per dataset): the photographs
    as taken, which a historian knows them by (cutting 128 px figures from their backdrops took 185 s for the
    demo, 2 s without), in the order of the run's images (None if the folder changed since the encodings, or the
    two decodes disagree on which files could be read)."""
    ds = load(root, THUMBNAIL_SIZE, "keep")
    at_size = load(root, size, background)
    if at_size.key != dataset_key or not ds.items["path"].equals(at_size.items["path"]):
        return None
    try:
        folder = explore.write_thumbnails(ds.images, THUMBNAILS / ds.key, THUMBNAIL_SIZE)
    except OSError:  # a full or read-only disk: the charts go without hover thumbnails
        return None
    return f"app/static/{folder.relative_to(STATIC).as_posix()}"


def restore(key: str, default, options: list | None = None) -> None:
    """Give a widget its value kept for the session (Streamlit forgets a widget's state when its page is
    left), limited to today's options; call before drawing the widget, then `store(key)` after."""
    saved = st.session_state.setdefault("kept", {})
    if key not in st.session_state:
        v = saved.get(key, default)
        st.session_state[key] = [o for o in v if o in options] if options is not None else v


def store(key: str) -> None:
    st.session_state["kept"][key] = st.session_state.get(key)


def filters(enc: pd.DataFrame, run_name: str) -> tuple[list[str], list[str], bool]:
    """Culture and find-site filters, applied to both charts at once and kept for the session per run.
    Nothing picked shows everything; one click shows one culture or one site."""
    cultures = list(enc["culture"].value_counts().index)
    sites = sorted(s for s in enc["site"].unique() if s)
    keys = {k: f"{k}:{run_name}" for k in ("f_cultures", "f_sites", "f_context")}
    restore(keys["f_cultures"], [], cultures)
    restore(keys["f_sites"], [], sites)
    restore(keys["f_context"], True)
    c = st.columns([5, 1])
    chosen = c[0].pills("Cultures", cultures, selection_mode="multi", key=keys["f_cultures"], format_func=plain,
                        help="Pick one or more to show only those; none picked shows every culture")
    context = c[1].toggle("Grey context", key=keys["f_context"], help="Show the filtered-out figurines in grey")
    chosen_sites = st.pills("Find-sites", sites, selection_mode="multi", key=keys["f_sites"], format_func=plain,
                            help="Pick one or more to keep only the figurines found there (the figurines without "
                                 "a find-site, the source cultures, stay for comparison); none picked keeps every "
                                 "site") if sites else []
    for k in keys.values():
        store(k)
    return chosen or cultures, chosen_sites or sites, context


def gallery(rows: pd.DataFrame, images, model, style: str, run_name: str, target: str) -> None:
    """The selected figurines, page by page, ordered by culture and site, with the selection's make-up."""
    st.subheader(f"Selected figurines ({len(rows):,})")
    make_up = rows.assign(site=rows["site"].replace("", "no find-site")).groupby(["culture", "site"]).size()
    st.caption("In this selection: " + " · ".join(f"{plain(c)}, {plain(site)}: {n:,}"
                                                   for (c, site), n in make_up.items()))
    c = st.columns([3, 2, 5])
    order = c[0].segmented_control("Order", ["culture and site", "file name"], default="culture and site",
                                   key=f"g_order:{run_name}")
    rows = rows.sort_values(["culture", "site", "path"] if order != "file name" else ["path"])
    pages = -(-len(rows) // PER_PAGE)
    page = c[1].number_input(f"Page (of {pages})", 1, pages, 1, key=f"g_page:{run_name}") if pages > 1 else 1
    shown = rows.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]
    c[2].caption(f"Figurines {(page - 1) * PER_PAGE + 1:,} to {(page - 1) * PER_PAGE + len(shown):,} "
                 f"of {len(rows):,}")
    grid = st.columns(8)
    for i, (idx, r) in enumerate(shown.iterrows()):
        with grid[i % 8]:
            st.image(images[idx], width="stretch")
            st.caption(f"{plain(r['culture'])} · {plain(r['site']) or '—'}  \n{file_name(r['path'])}",
                       help=plain(r["path"]), unsafe_allow_html=True)
    st.caption("The first eight on this page as the autoencoder reconstructs them" + (
        " (it sees form: each figure's brightness standardised within it, without colour):" if style == "form"
        else ":"))
    grid = st.columns(8)
    first = shown.iloc[:8]
    for i, a in enumerate(explore.reconstructions(model, images[first.index], (first["culture"] == target).to_numpy())):
        grid[i % 8].image(a, width="stretch")


def like_this(i: int, images) -> None:
    """The figurines nearest to one, in the space the numbers on Influence are read in."""
    space = reading_space(str(run.dir), mtime, str(decoded[3]), enc)
    if space is None:
        return
    near, dist = explore.neighbours(space, i, 8)
    st.subheader("Figurines like this one")
    tally = enc.loc[near, "culture"].value_counts()
    st.caption(f"The 8 nearest to {plain(enc.at[i, 'path'])} ({plain(enc.at[i, 'culture'])}) in the descriptor "
               "space, where the numbers on Influence are read: what tells related cultures apart, not the map's "
               "distances. Among them: " + ", ".join(f"{n} {plain(c)}" for c, n in tally.items()) + ".")
    grid = st.columns(8)
    for k, (j, d) in enumerate(zip(near, dist)):
        with grid[k]:
            st.image(images[j], width="stretch")
            st.caption(f"{plain(enc.at[j, 'culture'])} · {plain(enc.at[j, 'site']) or '—'}  \n"
                       f"{file_name(enc.at[j, 'path'])}  \ndistance {d:.1f}", help=plain(enc.at[j, "path"]),
                       unsafe_allow_html=True)


run = pick_run()
if run is None:
    st.stop()
state = run.status()
if state.get("state") == "failed":
    st.warning(f"This run failed: {plain(state.get('message', ''))}. Its last good checkpoint is shown.")
cfg = run.config()
s = cfg["settings"]
mtime = run.model_path.stat().st_mtime_ns
try:
    enc = encodings(str(run.dir), mtime, fingerprint(cfg["data"]))
    model(str(run.dir), mtime)  # a damaged checkpoint is said here, once
    kept = enc.attrs.get("kept")  # the dataset folder moved or lost files: no images match the rows now
    decoded = (cfg["data"], s["image_size"], s.get("background", "flatten"), enc.attrs.get("dataset"))
    thumbs = thumbnails(*decoded) if len(enc) <= explore.POINTS_UP_TO and not kept else None
except UserError as e:
    st.error(plain(str(e)))
    relink_form(run)
    st.stop()
if kept:
    st.warning(f"{plain(kept)}. The photographs are not shown.")
    relink_form(run)
spread = diagnostics.code_spread(enc[["aae_x", "aae_y"]].to_numpy(), s["prior_std"])
if not s.get("clusters") and s.get("latent_dim", 2) >= 2 and spread < diagnostics.COLLAPSED:
    st.warning(f"This run's map has collapsed: its codes spread over {spread:.0%} of the prior's sd, so figurines "
               "that differ sit on top of one another in the AAE chart. Train it longer (the Train page's losses show "
               "whether it has settled); the UMAP baseline beside it does not depend on the training.")
saved = selections.load(run)
enc = enc.reset_index(drop=True).assign(id=lambda d: np.arange(len(d)), saved_selection=lambda d:
                                        selections.groups(d, saved))
chosen, chosen_sites, context = filters(enc, run.name)
keep = explore.filtered(enc, chosen, chosen_sites)
circles = None if s.get("clusters") else s["prior_std"]  # a cluster-head map: the prior is its style part's
views = {p: explore.square_view(enc[f"{p}_x"], enc[f"{p}_y"], circles if p == "aae" else None)
         for p in ("aae", "umap")}  # fixed by the whole run: filtering never rescales a chart
picks = st.session_state.setdefault("picks", {}).setdefault(run.name, {"ids": None, "gen": {}, "seen": {}})
selection = [i for i in picks["ids"] if keep[i]] if picks["ids"] is not None else None
as_points = len(enc) <= explore.POINTS_UP_TO


def chart(prefix: str, title: str, prior_std: float | None, thumbs: str | None = None):
    """One embedding of the filtered figurines: points, or density cells for a large collection."""
    if not as_points:
        ctx = explore.cells(enc, ~keep & context, prefix, by=by)
        return charts.density(explore.cells(enc, keep, prefix, selection, by=by), ctx, prefix, title, legend,
                              selection is not None, prior_std, views[prefix], by)
    return charts.scatter(points(), enc[~keep] if context else enc.iloc[:0], prefix, title, legend,
                          selection is not None, prior_std, thumbs, views[prefix], by)


def points() -> pd.DataFrame:
    """The figurines shown, marked if selected, the most frequent drawn first (the rarest on top)."""
    shown = enc[keep].assign(selected=lambda d: d["id"].isin(selection) if selection is not None else False)
    return shown.iloc[np.argsort(-shown[by].map(enc[by].value_counts()).to_numpy(), kind="stable")]


def how_to_select() -> tuple[bool, str]:
    """Box and click (with thumbnails on hover) or lasso, and what colours the maps: kept for the session."""
    c = st.columns(2)
    key, colour_key = f"select_with:{run.name}", f"colour_by:{run.name}"
    restore(key, "box or click")
    restore(colour_key, "culture")
    if not as_points:  # density cells: a box only
        st.session_state[key] = "box or click"
    if st.session_state.pop(f"colour_next:{run.name}", None) or \
            st.session_state[colour_key] == "saved selections" and not saved:  # just saved, or none left
        st.session_state[colour_key] = "saved selections" if saved else "culture"
    mode = c[0].segmented_control(
        "Select with", ["box or click", "lasso"] if as_points else ["box or click"], key=key, required=True,
        help="Box or click: hovering a point shows its photograph. Lasso: draw around any shape of points "
        "(hovering shows names, not photographs); box and click work there too, from the chart's tool bar. "
        f"Above {explore.POINTS_UP_TO:,} figurines the charts draw density cells, selected with a box")
    colour = c[1].segmented_control(
        "Colour the maps by", ["culture", "saved selections"] if saved else ["culture"], key=colour_key,
        required=True, help="A figurine held by several saved selections takes the colour of the first saved")
    store(key)
    store(colour_key)
    return mode == "lasso", "saved_selection" if colour == "saved selections" else "culture"


def select(ids) -> None:
    """Select these figurines in both charts (drawn afresh, holding no selection of their own)."""
    for q in ("aae", "umap"):
        picks["gen"][q] = picks["gen"].get(q, 0) + 1
    picks.update(ids=[int(i) for i in ids] or None, seen={"aae": None, "umap": None})
    st.session_state.pop(f"g_page:{run.name}", None)


def save_form() -> None:
    """Name the current selection to keep it with the run."""
    with st.form(f"save:{run.name}", clear_on_submit=True, border=False):
        c = st.columns([2, 1], vertical_alignment="bottom")
        name = c[0].text_input("Name this selection to keep it with the run", max_chars=selections.NAME_LIMIT,
                               placeholder="for example: oval-base group")
        if c[1].form_submit_button("Save selection", icon=":material/bookmark_add:"):
            try:
                saved_as = selections.save(run, name, enc.loc[selection, "path"])
            except UserError as e:
                st.error(plain(str(e)))
            except OSError as e:
                st.error(plain(f"The selection could not be kept with the run ({e.strerror or e}): is its folder "
                               "writable, and is there room on its disk?"))
            else:
                st.session_state[f"colour_next:{run.name}"] = True  # the maps show what was saved
                st.session_state[f"saved_note:{run.name}"] = (
                    f"Saved “{saved_as}”: {len(selection):,} figurines, kept with run {run.name} and listed under "
                    "Saved selections below.")
                st.rerun()
    if note := st.session_state.pop(f"saved_note:{run.name}", None):  # said where it stays, not in a passing toast
        st.success(plain(note), icon=":material/bookmark_added:")


def saved_section() -> None:
    """Each saved selection: select it again, export it (files, contact sheet), or delete it."""
    st.subheader("Saved selections")
    st.caption("Kept with this run for everyone who opens it. A contact sheet is a printable grid of the "
               f"photographs, as photographed, with culture, find-site and file name (A4, {selections.SHEET_LIMIT:,} "
               f"figurines at most; the PNG holds the first {selections.PNG_PAGES} pages).")
    for name, paths in saved.items():
        ids = selections.rows(enc, paths)
        table = enc.loc[ids, ["path", "culture", "site"]]
        gone = len(set(paths)) - len(ids)
        row = st.container(horizontal=True, vertical_alignment="center")
        row.markdown(f"**{plain(name)}**: {len(ids):,} figurines" +
                     (f" ({gone:,} of its files are not in this run's encodings any more)" if gone else ""),
                     width="content")
        if row.button("Select", key=f"open-saved:{name}", help="Select these figurines in both charts"):
            select(ids)
            st.rerun()
        base = export.file_name(f"{run.name}-{name}")
        row.download_button("Files (CSV)", lambda t=table: export.csv(t), f"{base}.csv", "text/csv",
                            icon=":material/download:", on_click="ignore", key=f"csv-saved:{name}")
        title = f"{name} ({len(ids):,} figurines, run {run.name})"
        for fmt, mime in (("pdf", "application/pdf"), ("png", "image/png")):
            row.download_button(f"Contact sheet ({fmt.upper()})",  # made on the click, outside the page's run
                                lambda t=table, f=fmt, ti=title: selections.sheet(t, cfg["data"], ti, f),
                                f"{base}.{fmt}", mime,
                                icon=":material/download:", on_click="ignore", key=f"{fmt}-saved:{name}",
                                disabled=bool(kept) or not len(ids))
        if row.button("Delete", key=f"delete-saved:{name}", icon=":material/delete:"):
            try:
                selections.delete(run, name)
            except OSError as e:
                st.error(plain(f"“{name}” could not be deleted ({e.strerror or e}): is the run's folder writable?"))
            else:
                st.rerun()


def find_by_name() -> None:
    """Select the shown figurines whose file name holds what is typed: highlighted in both charts, in the gallery."""
    text = st.text_input("Find a figurine by file name", key=f"find:{run.name}", placeholder="part of a file name",
                         help="Selects the figurines shown whose file name (or folder) holds this text (case and "
                         "accents ignored), in both charts")
    changed, picks["found"] = text != picks.get("found", ""), text
    hits = [int(i) for i in explore.find(enc, text, keep)] if text else []
    if text and not hits:
        st.info(f"No figurine shown has “{plain(text)}” in its file name.")
    elif changed and not text and picks["ids"] is not None:  # the box emptied: the found figurines are let go
        picks.update(ids=None, seen={"aae": None, "umap": None})
        st.rerun()
    elif hits and changed:
        select(hits)
        st.rerun()
    elif hits and picks["ids"] == hits:
        st.caption(f"{len(hits):,} figurine{'s' if len(hits) > 1 else ''} found, selected in both charts below; "
                   "empty the box to let them go.")


find_by_name()
use_lasso, by = how_to_select()
colours = explore.culture_colours(enc["culture"]) if by == "culture" else selections.colours(saved)
legend = {c: colours[c] for c in colours if c in set(enc.loc[keep, by])}  # what is shown, not all
how = ("draw around points with the lasso in either chart to select them in both" if use_lasso else
       "drag a box or click points in either chart to select them in both" if as_points else
       f"over {explore.POINTS_UP_TO:,} figurines, so each chart shows density cells (colour: the most frequent "
       "culture; strength: how many); drag a box in either chart to select them in both")
st.caption(f"{int(keep.sum()):,} of {len(enc):,} figurines shown · {how} · "
           f"{'' if use_lasso else 'a double-click or '}“Clear the selection” below clears it.")
if s.get("clusters"):
    st.caption(f"This run's map places each figurine at one of {s['clusters']} learned cluster heads plus its "
               "style code: the prior's circles belong to the style part alone and are not drawn.")
titles = {"aae": f"AAE latent (from the pixels, {s.get('style', 'colour')})",  # each map says what it was made from
          "umap": f"UMAP baseline (from the {enc.attrs.get('umap_from', 'pixels')})"}
figures = {p: chart(p, titles[p], circles if p == "aae" else None, thumbs) for p in titles}
events, keys = {}, {p: f"{'lasso' if use_lasso else 'chart'}_{p}_{picks['gen'].get(p, 0)}" for p in ("aae", "umap")}
for prefix in ("aae", "umap"):
    if keys[prefix] not in st.session_state:
        picks["seen"][prefix] = None  # drawn afresh (the page was left): it holds no selection of its own
for col, (prefix, title) in zip(st.columns(2), titles.items()):
    with col:  # a chart's key changes to clear a selection it still holds when the other chart selects
        if use_lasso:
            fig = lasso.scatter(points(), enc[~keep] if context else enc.iloc[:0], prefix, title, legend,
                                selection is not None, circles if prefix == "aae" else None, views[prefix], by)
            events[prefix] = st.plotly_chart(fig, on_select="rerun", selection_mode=("lasso", "box", "points"),
                                             key=keys[prefix], width="content", config={"displaylogo": False})
        else:
            events[prefix] = st.altair_chart(figures[prefix], on_select="rerun", width="content", key=keys[prefix])

now = {p: lasso.selected_ids(ev.selection) if use_lasso else explore.selected_rows(ev.selection, enc, p)
       for p, ev in events.items()}
now = {p: None if v is None else tuple(int(i) for i in v) for p, v in now.items()}
touched = [p for p in now if now[p] != picks["seen"].get(p)]
if touched:  # the chart the user acted on decides, in both charts; a double-click (nothing) clears both
    p = touched[0]
    ids = sorted(set(now[p]) & set(np.flatnonzero(keep))) if now[p] is not None else []
    if use_lasso:  # a Plotly chart's figure is part of its identity: the highlight would drop its selection
        select(ids)
        st.rerun()
    for q in now:
        if q != p and now[q] is not None:
            picks["gen"][q] = picks["gen"].get(q, 0) + 1
            now[q] = None
    picks.update(ids=ids or None, seen=now)
    st.session_state.pop(f"g_page:{run.name}", None)  # a new selection opens on its first page
    st.rerun()

photographs = images_of(*decoded) if selection and not kept else None
if selection and photographs is None:
    st.dataframe(enc.loc[selection].drop(columns=["id", "saved_selection"]), hide_index=True)
if selection:
    c = st.columns([3, 1], vertical_alignment="bottom")
    with c[0]:
        save_form()
    if c[1].button("Clear the selection", icon=":material/deselect:", key=f"clear:{run.name}"):
        select([])
        st.rerun()
if saved:
    saved_section()
if selection and photographs is not None:
    gallery(enc.loc[selection], photographs, model(str(run.dir), mtime), cfg["effective"].get("style", "colour"),
            run.name,
            target_culture(enc["culture"], enc["site"]))
    if len(selection) == 1:
        like_this(selection[0], photographs)

d = st.columns(3)
d[0].download_button("Filtered table (CSV)", lambda: export.csv(enc[keep].drop(columns=["id", "saved_selection"])),
                     f"{run.name}-encodings.csv", "text/csv", icon=":material/download:", on_click="ignore")
for col, (prefix, title) in zip(d[1:], [("aae", "AAE latent"), ("umap", "UMAP baseline")]):
    col.download_button(f"{title} chart (SVG)", lambda f=figures[prefix]: charts.svg(f),
                        f"{run.name}-{prefix}.svg", "image/svg+xml", icon=":material/download:", on_click="ignore")

with st.expander("What the decoder draws across the prior (latent manifold)"):
    if s["latent_dim"] < 2:
        st.caption("A one-dimensional latent space has no 2-D manifold to draw.")
    else:
        st.image(manifold(str(run.dir), mtime), width=min(720, 9 * s["image_size"] * 2),
                 caption=("Decoded images on a 9 x 9 grid reaching 3 prior sd past the farthest cluster head"
                          if s.get("clusters") else "Decoded images on a 9 x 9 grid over ±2.5 prior sd") +
                 f" (sd = {s['prior_std']:g}); up is +latent 2, right is +latent 1.")
