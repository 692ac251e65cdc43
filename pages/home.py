"""Home: what the tool does, and the active dataset (the demo unless the user chose a folder)."""
import altair as alt
import streamlit as st

from core import demo
from core.dataset import load
from core.paths import DEMO


@st.cache_resource(show_spinner=False)
def demo_dataset(size: int = 64):
    bar = st.progress(0.0, text="Drawing the demo figurines (first start only)…")
    demo.ensure(DEMO, size, progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Drawing figurine {d} of {t}"))
    ds = load(DEMO, size, progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Decoding image {d} of {t}"))
    bar.empty()
    return ds


st.title("Figurine latent-space explorer")
st.markdown(
    "How far do Hellenistic Babylonian clay figurines follow Classical Greek and Hellenistic, "
    "Neo-Babylonian or Achaemenid models? This tool encodes figurine photographs into a 2-D latent space "
    "with an Adversarial Autoencoder, compares it with a UMAP baseline, and turns the picture into numbers."
)
ds = demo_dataset()
counts = ds.items.groupby("culture").size().rename("images").reset_index()
st.subheader(f"Active dataset: the demo ({len(ds.items):,} images, {ds.image_size} px)")
left, right = st.columns([2, 3])
left.dataframe(counts, hide_index=True, width="stretch")
right.altair_chart(alt.Chart(counts).mark_bar().encode(x="images:Q", y=alt.Y("culture:N", sort="-x")),
                   width="stretch")
sample = ds.items.groupby("culture").head(6).index
st.image([ds.images[i] for i in sample], caption=[ds.items.at[i, "culture"] for i in sample], width=96)
st.caption("Train a model from the command line: `python -m core train --data data/demo --run-dir checkpoints/demo`.")
