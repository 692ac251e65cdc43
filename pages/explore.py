"""Explore: the AAE latent space and the UMAP baseline side by side, filtered and linked."""
import numpy as np
import pandas as pd
import streamlit as st

from core import charts, explore, export
from core.dataset import load
from core.errors import UserError
from core.estimator import AAE
from core.paths import STATIC, THUMBNAILS
from pages.common import app_page, encodings, pick_run, plain, relink_form

app_page("pages/explore.py")

st.title("Explore")


@st.cache_resource(max_entries=2, show_spinner=False)
def model(run_dir: str, checkpoint_mtime: int):
    return AAE.load(run_dir, device="cpu").model_


@st.cache_data(max_entries=4, show_spinner=False)
def manifold(run_dir: str, checkpoint_mtime: int):
    """The decoder's 9 x 9 grid over the prior: drawn once per checkpoint, not on every filter change."""
    return explore.manifold(model(run_dir, checkpoint_mtime), n=9)


@st.cache_resource(max_entries=2, show_spinner=False)
def images_of(root: str, size: int, background: str):
    return load(root, size, background).images


@st.cache_data(max_entries=4, show_spinner="Making thumbnails (first time only)…")
def thumbnails(root: str, size: int, background: str) -> str:
    """The URL folder of the dataset's hover thumbnails (static files, written once per dataset)."""
    ds = load(root, size, background)
    folder = explore.write_thumbnails(ds.images, THUMBNAILS / ds.key)
    return f"app/static/{folder.relative_to(STATIC).as_posix()}"


def filters(enc: pd.DataFrame) -> tuple[list[str], list[str], bool]:
    """Culture and find-site filters, applied to both charts at once."""
    cultures = list(enc["culture"].value_counts().index)
    sites = sorted(s for s in enc["site"].unique() if s)
    c = st.columns([5, 5, 2])
    chosen = c[0].multiselect("Cultures", cultures, default=cultures, key="f_cultures")
    chosen_sites = c[1].multiselect("Find-sites", sites, default=sites, key="f_sites",
                                    help="Figurines with a find-site (the Babylonian ones) are kept only at these sites")
    context = c[2].toggle("Grey context", value=True, key="f_context", help="Show the filtered-out figurines in grey")
    return chosen, chosen_sites, context


def gallery(rows: pd.DataFrame, images, recon: np.ndarray | None, style: str) -> None:
    st.subheader(f"Selected figurines ({len(rows):,})")
    if len(rows) > 48:
        st.caption("Showing the first 48.")
    grid = st.columns(8)
    for i, (idx, r) in enumerate(rows.head(48).iterrows()):
        with grid[i % 8]:
            st.image(images[idx], width="stretch")
            st.caption(f"{plain(r['culture'])} · {plain(r['site']) or '—'}  \n{plain(r['path'].rsplit('/', 1)[-1])}")
    if recon is not None:
        st.caption("Their reconstructions by the autoencoder" + (
            " (it sees form: each figure's brightness standardised within it, without colour):" if style == "form"
            else ":"))
        grid = st.columns(8)
        for i, a in enumerate(recon):
            grid[i % 8].image(a, width="stretch")


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
    enc = encodings(str(run.dir), mtime)
    model(str(run.dir), mtime)  # a damaged checkpoint is said here, once
    kept = enc.attrs.get("kept")  # the dataset folder moved or lost files: no images match the rows now
    thumbs = thumbnails(cfg["data"], s["image_size"], s.get("background", "flatten")) \
        if len(enc) <= explore.POINTS_UP_TO and not kept else None
except UserError as e:
    st.error(plain(str(e)))
    relink_form(run)
    st.stop()
if kept:
    st.warning(f"{plain(kept)}. The photographs are not shown.")
    relink_form(run)
enc = enc.reset_index(drop=True).assign(id=lambda d: np.arange(len(d)))
colours = explore.culture_colours(enc["culture"])
chosen, chosen_sites, context = filters(enc)
keep = explore.filtered(enc, chosen, chosen_sites)

if st.session_state.get("selected_run") != run.name:  # a selection belongs to one run
    st.session_state["selected_ids"], st.session_state["selected_run"] = None, run.name
selection = st.session_state.get("selected_ids")
as_points = len(enc) <= explore.POINTS_UP_TO


def chart(prefix: str, title: str, prior_std: float | None, thumbs: str | None = None):
    """One embedding of the filtered figurines: points, or density cells for a large collection."""
    if not as_points:
        ctx = explore.cells(enc, ~keep & context, prefix)
        return charts.density(explore.cells(enc, keep, prefix, selection), ctx, prefix, title, colours,
                              selection is not None, prior_std)
    points = enc[keep].assign(selected=lambda d: d["id"].isin(selection) if selection is not None else False)
    order = np.argsort(-points["culture"].map(enc["culture"].value_counts()).to_numpy(), kind="stable")
    return charts.scatter(points.iloc[order], enc[~keep] if context else enc.iloc[:0], prefix, title, colours,
                          selection is not None, prior_std, thumbs)


how = ("drag a box or click points in either chart to select them in both" if as_points else
       f"over {explore.POINTS_UP_TO:,} figurines, so each chart shows density cells (colour: the most frequent "
       "culture; strength: how many); drag a box in either chart to select them in both")
st.caption(f"{int(keep.sum()):,} of {len(enc):,} figurines shown · {how} · double-click clears.")
figures = {"aae": chart("aae", "AAE latent", s["prior_std"], thumbs),
           "umap": chart("umap", "UMAP baseline", None, thumbs)}
left, right = st.columns(2)
with left:
    ev_aae = st.altair_chart(figures["aae"], on_select="rerun", key="chart_aae", width="stretch")
with right:
    ev_umap = st.altair_chart(figures["umap"], on_select="rerun", key="chart_umap", width="stretch")

picked = [explore.selected_rows(ev.selection, enc, p) for ev, p in ((ev_aae, "aae"), (ev_umap, "umap"))]
picked = [p for p in picked if p is not None]
new = sorted(set(np.concatenate(picked).tolist()) & set(enc.index[keep])) if picked else None
if new != selection:
    st.session_state["selected_ids"] = new
    st.rerun()

if selection and kept:
    st.dataframe(enc.loc[selection].drop(columns=["id"]), hide_index=True)
elif selection:
    rows = enc.loc[selection]
    imgs = images_of(cfg["data"], s["image_size"], s.get("background", "flatten"))
    recon = explore.reconstructions(model(str(run.dir), mtime), imgs[rows.index[:8]])
    gallery(rows, imgs, recon, cfg["effective"].get("style", "colour"))

d = st.columns(3)
d[0].download_button("Filtered table (CSV)", lambda: export.csv(enc[keep].drop(columns=["id"])),
                     f"{run.name}-encodings.csv", "text/csv", icon=":material/download:")
for col, (prefix, title) in zip(d[1:], [("aae", "AAE latent"), ("umap", "UMAP baseline")]):
    col.download_button(f"{title} chart (SVG)", lambda f=figures[prefix]: charts.svg(f),
                        f"{run.name}-{prefix}.svg", "image/svg+xml", icon=":material/download:")

with st.expander("What the decoder draws across the prior (latent manifold)"):
    if s["latent_dim"] < 2:
        st.caption("A one-dimensional latent space has no 2-D manifold to draw.")
    else:
        st.image(manifold(str(run.dir), mtime), width=min(720, 9 * s["image_size"] * 2),
                 caption=f"Decoded images on a 9 x 9 grid over ±2.5 prior sd (sd = {s['prior_std']:g}); "
                         "up is +latent 2, right is +latent 1.")
