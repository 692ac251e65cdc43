"""Data: choose the dataset, see what it holds (counts, imbalance, thumbnails) and what could not be read."""
import numpy as np
import streamlit as st

from core.errors import UserError
from core import charts, export, labels
from core.dataset import Dataset
from core.images import backdrop_kept
from core.paths import DEMO, data_roots, within_roots
from pages.shared import choose_dataset, data_root, dataset, fingerprint, is_demo, plain, file_name

st.title("Data")


@st.cache_data(max_entries=8, show_spinner=False)
def _backdrops_kept(key: str, _ds: Dataset) -> np.ndarray:
    return backdrop_kept(_ds.images)


def backdrops_kept(ds: Dataset) -> np.ndarray:
    """Which of the dataset's photographs kept their backdrop (`core.images.backdrop_kept`), once per decode."""
    return _backdrops_kept(ds.key, ds)


def dataset_chooser() -> None:
    """Demo or a folder on the server; a chosen folder is validated before it becomes active."""
    current = data_root()
    choice = st.radio("Dataset", ["Demo (generated, with known answers)", "A folder on this server"],
                      index=0 if is_demo(current) else 1, horizontal=True)
    if choice.startswith("Demo"):
        if not is_demo(current):
            choose_dataset(DEMO)
            st.rerun()
        return
    roots = ", ".join(f"`{r}`" for r in data_roots())
    with st.form("folder"):
        path = st.text_input("Folder", value="" if is_demo(current) else str(current),
                             placeholder="/path/to/figurines", help=f"Allowed under: {roots}")
        st.caption("Layout: `<folder>/<culture>/<image>` or `<folder>/<culture>/<site>/<image>`; "
                   "an optional `metadata.csv` (path, culture, site) overrides the folder labels.")
        if st.form_submit_button("Use this folder"):
            try:
                root = within_roots(path)
                dataset(str(root))  # validates: readable images, labels
            except UserError as e:
                st.error(plain(str(e)))
                return
            choose_dataset(root)
            st.rerun()


dataset_chooser()
if st.button("Rescan the folder", icon=":material/refresh:", help="Pick up files added, removed or changed since"):
    fingerprint.clear()  # the folder is scanned again: what changed is decoded, and only that
root = data_root()
try:
    ds = dataset(str(root))
except UserError as e:
    st.error(plain(str(e)))
    st.stop()

items = ds.items
table = ds.counts().assign(share=lambda t: t["images"] / t["images"].sum())
per_culture = table.groupby("culture", as_index=False)["images"].sum().sort_values("images", ascending=False)
per_culture["share"] = per_culture["images"] / per_culture["images"].sum()

st.subheader(f"{'The demo' if is_demo(root) else plain(root.name)}: {len(items):,} images in {len(per_culture)} cultures")
big, small = per_culture.iloc[0], per_culture.iloc[-1]
cols = st.columns(4)
cols[0].metric("Readable images", f"{len(items):,}")
cols[1].metric("Unreadable files", f"{len(ds.unreadable):,}")
cols[2].metric(f"Largest: {plain(big['culture'])}", f"{big['share']:.0%}")
cols[3].metric(f"Smallest: {plain(small['culture'])}", f"{small['share']:.0%}")
target, sources, why = labels.roles(items)
n_sites = items.loc[items["culture"] == target, "site"].replace("", np.nan).nunique()
where = f", from {n_sites} find-site{'s' if n_sites != 1 else ''}" if n_sites else ""
said = (f"**Asked about:** {plain(target)} ({(items['culture'] == target).sum():,} figurines{where}); **compared "
        f"with:** {', '.join(plain(c) for c in sources) or 'no other culture'}.")
st.markdown(said + (" It is the culture with find-sites." if why == "sites" else ""))
for doubt in labels.doubts(items):
    st.warning(plain(doubt))
if big["share"] > 0.5 or small["share"] < 0.05:
    st.info(f"The cultures are imbalanced ({big['share']:.0%} vs {small['share']:.0%}). "
            "Balanced sampling on the Train page draws each culture equally often.")

left, right = st.columns([2, 3])
left.altair_chart(charts.counts(table), width="stretch")
right.dataframe(table.assign(site=table["site"].replace("", "—")), hide_index=True, width="stretch",
                height=35 * (len(table) + 1) + 3,  # every row shown, none behind a scrollbar
                column_config={"images": st.column_config.NumberColumn(width="small"),
                               "share": st.column_config.ProgressColumn("share", format="percent", min_value=0, width="small",
                                                                        max_value=1)})

st.subheader("Photographs")
kept = backdrops_kept(ds) if ds.background in ("flatten", "separate") else None
f1, f2, f3, f4 = st.columns([2, 2, 1, 1])
pick_c = f1.multiselect("Culture", list(per_culture["culture"]), key="data_cultures")
sites = sorted(s for s in items["site"].unique() if s)
pick_s = f2.multiselect("Site", sites, key="data_sites")
per_page = f3.selectbox("Per page", [24, 48, 96], index=1)
only_kept = kept is not None and kept.any() and f4.toggle(
    "Backdrop kept", key="data_kept", help="only the photographs from whose backdrop no figure stood out: the model "
    "sees them with their backdrop, which can group them by how they were photographed")
shown = items[items["culture"].isin(pick_c or items["culture"]) & items["site"].isin(pick_s or items["site"])
              & (kept if only_kept else True)]
pages = max(1, -(-len(shown) // per_page))
page = st.number_input(f"Page (of {pages})", 1, pages, 1) if pages > 1 else 1
rows = shown.index[(page - 1) * per_page: page * per_page]
grid = st.columns(8)
for i, r in enumerate(rows):
    with grid[i % 8]:
        st.image(ds.images[r], width="stretch")
        st.caption(f"{plain(items.at[r, 'culture'])} · {plain(items.at[r, 'site']) or '—'}  \n"
                   f"{file_name(items.at[r, 'path'])}", help=plain(items.at[r, "path"]), unsafe_allow_html=True)
backdrop = {"flatten": "flattened to neutral grey", "separate": "cut away to neutral grey"}.get(ds.background,
                                                                                            "as photographed")
if kept is not None and kept.any():
    backdrop += (f" for {len(kept) - kept.sum():,} of {len(kept):,}; kept as photographed for {kept.sum():,}, "
                 "where no figure stood out from it (toggle \"Backdrop kept\" to see them)")
st.caption(f"{len(shown):,} {'photograph matches' if len(shown) == 1 else 'photographs match'}; decoded at "
           f"{ds.image_size} px, backdrop {backdrop}.")

st.subheader("Files that could not be read")
problems = ds.metadata_problems
if problems:
    st.warning(f"metadata.csv: {problems} row(s) not used or not matched; each is listed below with its line.")
if len(ds.unreadable):
    st.dataframe(ds.unreadable, hide_index=True, width="stretch")
    st.download_button("List of these files (CSV)", export.csv(ds.unreadable), f"{root.name}-unreadable.csv",
                       "text/csv", icon=":material/download:", on_click="ignore")
else:
    st.success("Every image file could be read.")
