"""Home: what the tool does, the active dataset and run, and where to go next."""
import os
from pathlib import Path

import streamlit as st

from core import jobs
from core.errors import UserError
from core.paths import RUNS
from core.settings import Settings
from pages.shared import active_dataset, active_run, data_root, is_demo, openable_runs, plain, runs

DEMO_RUN = "demo-fast"

st.title("Figurine latent-space explorer")
st.markdown(
    "How far do Hellenistic Babylonian clay figurines follow **Classical Greek and Hellenistic**, "
    "**Neo-Babylonian** or **Achaemenid** models, and does it differ by find-site? This tool encodes figurine "
    "photographs into a 2-D latent space with an Adversarial Autoencoder matched to a Gaussian prior, sets it "
    "beside a UMAP baseline on the same pixels, and lets you filter, select and look at the figurines themselves."
)

ds = active_dataset()
if ds is not None:
    root = data_root()
    n = ds.items["culture"].value_counts()
    st.subheader("Active dataset")
    st.write(f"{'The demo (generated figurines with known influence shares)' if is_demo(root) else plain(root)}: "
             f"**{len(ds.items):,}** readable images in **{len(n)}** cultures"
             f"{f', {len(ds.unreadable):,} unreadable' if len(ds.unreadable) else ''}.")
    # First start on the demo: train a demo run in the background so there is something to explore.
    if is_demo(root) and not runs() and os.environ.get("FIGURINES_AUTO_DEMO_RUN", "1") == "1":
        try:
            jobs.launch(RUNS / DEMO_RUN, Settings.from_preset("fast", device="auto"), str(root))
        except UserError:
            pass  # another session started it first

run = active_run()
st.subheader("Active run")
if run is None:
    training = [r for r in runs() if r.status().get("state") == "running"]
    if training:
        st.write(f"**{plain(training[0].name)}** is training in the background "
                 f"(epoch {training[0].status().get('epoch', 0)}); follow it on the Train page.")
    else:
        st.write("No trained run yet.")
else:
    st_ = run.status()
    data = Path(run.config()["data"])
    other = "" if data == data_root().resolve() else (
        f" It was trained on {'the demo' if is_demo(data) else plain(data)}, not on the active dataset: opening it "
        "on Explore or Influence makes its folder the active dataset.")
    st.write(f"**{plain(run.name)}**: {st_.get('state')} at epoch {st_.get('epoch', 0)} "
             f"of {st_.get('epochs', '?')} ({plain(run.config().get('device', '?'))}).{other}")
for name, why in openable_runs()[1]:
    st.warning(f"Run **{plain(name)}** cannot be opened: {plain(why)}.")

st.subheader("Next")
st.page_link("pages/data.py", label="Data: choose a folder, see counts, photographs and unreadable files",
             icon=":material/photo_library:")
st.page_link("pages/train.py", label="Train: launch a training in the background and follow its losses",
             icon=":material/model_training:")
st.page_link("pages/explore.py", label="Explore: the AAE latent space beside the UMAP baseline",
             icon=":material/scatter_plot:")
st.page_link("pages/influence.py", label="Influence: shares per find-site with 95% intervals, and trust diagnostics",
             icon=":material/insights:")
