"""Influence: the research question in numbers, with uncertainty, and whether the run can be trusted."""
import pandas as pd
import streamlit as st

from core import charts, diagnostics, influence
from core.errors import UserError
from pages.common import app_page, pick_run, plain

app_page("pages/influence.py")

EMBEDDINGS = {"aae": "AAE latent", "umap": "UMAP baseline", "pca": "50-D PCA space"}

st.title("Influence")
st.caption("For each Hellenistic Babylonian figurine, its 10 nearest figurines of the source cultures, each "
           "culture's count divided by its size, averaged over the group: shares that sum to 1, with 95% "
           "bootstrap intervals. The energy distance between each group and each source is a second measure.")


@st.cache_data(max_entries=4, show_spinner="Estimating influence shares…")
def tables(run_dir: str, checkpoint_mtime: int) -> dict[str, pd.DataFrame]:
    return influence.for_run(run_dir)


@st.cache_data(max_entries=4, show_spinner="Checking the run…")
def checks(run_dir: str, checkpoint_mtime: int) -> dict:
    return diagnostics.for_run(run_dir)


def trust(d: dict) -> None:
    st.subheader("Can this run be trusted?")
    verdict = d["verdict"]
    (st.error if verdict.startswith("codes lie far") else st.info)(f"Verdict: {verdict}.")
    p = d["prior"]
    c = st.columns(5)
    for i, k in enumerate((1, 2, 3)):
        c[i].metric(f"Codes within {k} sd", f"{p['within_sd'][k]:.1%}",
                    f"{p['within_sd'][k] - p['expected_within_sd'][k]:+.1%} vs a matched prior", delta_color="off")
    c[3].metric("Prior vs codes classifier", f"{p['c2st_accuracy']:.2f}", "0.50 = indistinguishable",
                delta_color="off")
    c[4].metric("Reconstruction MSE", f"{d['recon_error']:.4f}")
    q = pd.DataFrame(d["quality"]).T.rename(index=EMBEDDINGS)
    q.columns = ["balanced 10-NN culture accuracy", "trustworthiness", "silhouette"]
    st.dataframe(q.style.format("{:.3f}"), width="stretch")
    st.caption(f"Codes' mean {[round(v, 2) for v in p['mean']]}, covariance "
               f"{[[round(v, 1) for v in row] for row in p['cov']]} (the prior: 0 and {p['prior_var']:g} I).")


run = pick_run()
if run is None:
    st.stop()
mtime = run.model_path.stat().st_mtime_ns
try:
    t = tables(str(run.dir), mtime)
    d = checks(str(run.dir), mtime)
except UserError as e:
    st.error(plain(str(e)))
    st.stop()
if t["aae"].empty:
    st.warning("This dataset has only one culture: there are no source cultures to compare with.")
    st.stop()

trust(d)

st.subheader("Reading")
for line in influence.reading(t["aae"], "AAE latent", quote=plain):
    st.markdown(f"- {line}")

maps = [charts.heatmap(t[name], EMBEDDINGS[name]) for name in ("aae", "umap")]
left, right = st.columns(2)
left.altair_chart(maps[0], width="stretch")
right.altair_chart(maps[1], width="stretch")

st.subheader("All estimates")
full = pd.concat([t[n].assign(embedding=EMBEDDINGS[n]) for n in t], ignore_index=True)
cols = ["embedding", "group", "source", "n", "share", "ci_low", "ci_high", "energy", "energy_share", "too_small"]
st.dataframe(full[cols], hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                            ("share", "ci_low", "ci_high", "energy", "energy_share")})
d1, d2 = st.columns(2)
d1.download_button("Estimates (CSV)", full[cols].to_csv(index=False), f"{run.name}-influence.csv", "text/csv",
                   icon=":material/download:")
d2.download_button("Heatmaps (SVG)", lambda: charts.svg(maps[0] | maps[1]), f"{run.name}-influence.svg",
                   "image/svg+xml", icon=":material/download:")
