"""Influence: the research question in numbers, how far to trust them, and whether the run can be trusted."""
import json
import time

import altair as alt
import pandas as pd
import streamlit as st

from core import charts, diagnostics, export, influence, jobs
from core.errors import UserError
from pages.common import app_page, pick_run, plain

app_page("pages/influence.py")

EMBEDDINGS = influence.EMBEDDINGS
ALERT = {"good": st.success, "caution": st.warning, "withheld": st.error}

st.title("Influence")


@st.cache_data(max_entries=4, show_spinner=False)
def results(run_dir: str, checkpoint_mtime: int) -> dict[str, dict]:
    """From the run's influence.json once `compute` has written it: instant."""
    return influence.for_run(run_dir)


def compute(run_dir: str) -> None:
    """The first reading of a run, with a progress bar saying which step it is on."""
    if influence.is_current(run_dir):
        return
    bar, t0 = st.progress(0.0, "Reading the run's encodings…"), time.time()
    steps = {}  # each step's start: its time left is extrapolated from its own pace

    def update(step: str, f: float) -> None:
        f = min(max(f, 0.0), 1.0)
        spent = time.time() - steps.setdefault(step, time.time())
        left = f" about {jobs.duration(spent * (1 - f) / f)} left in this step;" if 0.05 < f < 1 else ""
        bar.progress(f, f"{step}: {f:.0%};{left} {jobs.duration(time.time() - t0)} so far")

    influence.for_run(run_dir, progress=update)
    bar.empty()


@st.cache_data(max_entries=4, show_spinner="Checking the run…")
def checks(run_dir: str, checkpoint_mtime: int) -> dict:
    return diagnostics.for_run(run_dir)


def self_check(r: dict, space: str, whose: str) -> None:
    """The lead: how the method does on the user's own photographs when the answer is known."""
    c, v = r["self_check"], r["verdict"]
    if "mae" in c:
        st.markdown(f"#### On {whose} photographs, when the answer is known, this method is off by {c['mae']:.2f} "
                    f"(± {c['mae_se']:.2f}) on average and its 95% intervals, {c['width']:.2f} wide on average, "
                    f"contain the answer {c['coverage']:.0%} of the time.")
        moved = c.get("shift")
        st.caption(f"{c['groups']} groups of known mixtures of source figurines held out from the classifier "
                   f"(each of {c['folds']} folds in turn: {c['holdout']:.0%} of each source culture), estimated as "
                   f"the sites are ({space})."
                   + (f" Moved as far from the sources as the target figurines sit, in directions that would "
                      f"bias them, the same groups are off by {moved['mae']:.2f}" if moved else "")
                   + (f": every interval is widened by {moved['allowance']:.2f} on each side, which holds their "
                      f"answer {moved['coverage_widened']:.0%} of the time." if moved and v["level"] != "withheld"
                      else "." if moved else ""))
    text = {"good": f"The {space}'s shares can be read as estimates.",
            "caution": f"Read the {space}'s shares with care: " + "; ".join(map(plain, v["reasons"])) + ".",
            "withheld": "Cannot tell: " + "; ".join(map(plain, v["reasons"])) + ". No shares are shown as a reading."}
    ALERT[v["level"]](text[v["level"]])


def lead_note(res: dict, name: str, descriptor: str) -> None:
    """Which representation gave the numbers, and why."""
    what = {"aae": "the run's own 2-D AAE map", "umap": "the 2-D UMAP map of the same photographs",
            "descriptor": f"the descriptor space ({descriptor}), which keeps what tells related cultures apart "
                          f"better than a 2-D map does"}[name]
    others = "; ".join(f"the {EMBEDDINGS[n]}'s " + ("is withheld" if r["verdict"]["level"] == "withheld" else
                                                     "is to be read with care" if r["verdict"]["level"] == "caution"
                                                     else "passes them as well")
                       for n, r in res.items() if n != name and not r["table"].empty)
    st.info(f"The numbers below are read in {what}: of the representations of the same photographs, its reading "
            f"passes its checks best ({others}). All stand side by side in the heatmaps and the checks below.")


def method_checks(res: dict) -> None:
    rows = {EMBEDDINGS[n]: {"self-check error": r["self_check"].get("mae"),
                            "± (standard error)": r["self_check"].get("mae_se"),
                            "self-check coverage": r["self_check"].get("coverage"),
                            "apart from the sources (AUC)": r["domain_shift"],
                            "sources among themselves (95% of draws below)": r["shift"]["alarm"],
                            "moved as far: error": r["self_check"].get("shift", {}).get("mae"),
                            "intervals widened by": r["self_check"].get("shift", {}).get("allowance"),
                            "sources told apart (conditioning)": r["conditioning"],
                            "reading": r["verdict"]["level"]} for n, r in res.items() if not r["table"].empty}
    numbers = [c for c in next(iter(rows.values())) if c != "reading"]
    st.dataframe(pd.DataFrame(rows).T, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in numbers})
    st.caption("Apart: how well a classifier tells the target figurines from the sources weighted to their estimated "
               "mixture, in what the share estimator reads of each figurine (0.5: they look like that mixture). "
               "Source figurines drawn the same way and told from other source figurines give the next column: "
               "above it, the target figurines differ (a 5% false-alarm rate). Moved as far: the self-check's "
               "known mixtures moved that far from the sources, in random directions that separate them; the "
               "intervals are widened until they hold 95% of those answers in every direction tried (not "
               "computed where the reading is withheld anyway). Conditioning: 1 when the sources are told apart "
               f"perfectly, below {influence.MIN_CONDITIONING} the method cannot tell them apart.")


def trust(d: dict) -> None:
    st.subheader("Does the latent space match its prior?")
    verdict = d["verdict"]
    unreadable = "do not read distances" in verdict
    worried = any(w in verdict for w in ("roughly", "poor", "blurry", "weakly", "beyond chance"))
    (st.error if unreadable else st.warning if worried else st.info)(f"Verdict: {verdict}.")
    p = d["prior"]
    c = st.columns(5)
    for i, k in enumerate((1, 2, 3)):
        c[i].metric(f"Codes within {k} sd", f"{p['within_sd'][k]:.1%}",
                    f"{p['within_sd'][k] - p['expected_within_sd'][k]:+.1%} vs a matched prior", delta_color="off")
    c[3].metric("Prior vs codes classifier", f"{p['c2st_accuracy']:.2f}", "0.50 = indistinguishable",
                delta_color="off")
    c[4].metric("Reconstruction MSE", f"{d['recon_error']:.4f}")
    q = pd.DataFrame(d["quality"]).T.rename(index={**EMBEDDINGS, "pca": "50-D PCA of the pixels"})
    q.columns = ["balanced 10-NN culture accuracy", "trustworthiness", "silhouette"]
    st.dataframe(q.style.format("{:.3f}"), width="stretch")
    st.caption(f"Codes' mean {[round(v, 2) for v in p['mean']]}, covariance "
               f"{[[round(v, 1) for v in row] for row in p['cov']]} (the prior: 0 and {p['prior_var']:g} I).")


def show(run) -> None:
    """The reading of one run, its pictures, checks and downloads."""
    mtime = run.model_path.stat().st_mtime_ns
    try:
        compute(str(run.dir))
        res = results(str(run.dir), mtime)
        d = checks(str(run.dir), mtime)
    except UserError as e:
        st.error(plain(str(e)))
        return
    if res["aae"]["table"].empty:
        st.warning(plain(res["aae"]["why"][0].upper() + res["aae"]["why"][1:]) + ".")
        return

    target = res["aae"]["target"]
    descriptor = influence.describe_space(influence.InfluenceSettings())
    st.caption(f"What share of each group of {plain(target)} figurines follows each source culture. A classifier "
               "fitted to the source figurines, corrected for its own confusion between them by EM (Saerens et al. "
               "2002); 95% intervals resample the source figurines and the group and refit the classifier each time.")
    truth = influence.known_answer(run.config().get("data", ""))
    lead = influence.lead(res)
    self_check(res[lead], EMBEDDINGS[lead], "the demo's" if truth else "your")
    if res[lead]["verdict"]["level"] != "withheld":  # where every reading is withheld, the verdict says why
        lead_note(res, lead, descriptor)

    st.subheader("Reading")
    for line in influence.reading(res[lead], quote=plain):
        st.markdown(f"- {line}")

    tables = {n: influence.with_known(r["table"], truth) for n, r in res.items() if not r["table"].empty}
    order = [lead] + [n for n in tables if n != lead]
    maps = [charts.heatmap(tables[name], EMBEDDINGS[name]) for name in order]
    for chart in maps:  # at their own width: stretched into half a page, the column labels overlap
        st.altair_chart(chart, width="content")
    if truth:
        err = {EMBEDDINGS[n]: t["error"].mean() for n, t in tables.items()}
        st.caption("The known answer (truth.json) stands beside every estimate below. Mean error: "
                   + ", ".join(f"{k} {v:.2f}" for k, v in err.items()) + ".")

    st.subheader("How far the method can be trusted")
    method_checks(res)

    st.subheader("All estimates")
    full = pd.concat([t.assign(embedding=EMBEDDINGS[n]) for n, t in tables.items()], ignore_index=True)
    cols = ["embedding", "group", "source", "n", "share", "ci_low", "ci_high", "known", "error", "sampling_low",
            "sampling_high", "shown", "too_small"]
    cols = [c for c in cols if c in full]
    st.dataframe(full[cols], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                ("share", "ci_low", "ci_high", "known", "error", "sampling_low", "sampling_high")})
    st.caption("ci_low, ci_high: the 95% interval to read: the bootstrap's, widened for how far the target figurines "
               "sit from the sources ([0, 1] where the tool cannot tell; spanning another representation's reading "
               "where the two disagree); sampling_low, sampling_high: the bootstrap's interval, which ignores what "
               "the checks found.")
    d1, d2, d3 = st.columns(3)  # on_click="ignore": no rerun, so a second download clicked at once finds its file
    d1.download_button("Estimates (CSV)", export.csv(full[cols].round(3)), f"{run.name}-influence.csv", "text/csv",
                       icon=":material/download:", on_click="ignore", help="rounded as shown; the JSON has every digit")
    d2.download_button("Heatmaps (SVG)", lambda: charts.svg(alt.vconcat(*maps)), f"{run.name}-influence.svg",
                       "image/svg+xml", icon=":material/download:", on_click="ignore")
    d3.download_button("Every number (JSON)", json.dumps(influence.as_json(res)), f"{run.name}-influence.json",
                       "application/json", icon=":material/download:", on_click="ignore",
                       help="as `python -m core influence --json` prints it, at full precision")

    trust(d)


run = pick_run()
if run is None:
    st.stop()
with st.empty().container():  # replaced whole: a new run's progress never sits above the last run's results
    show(run)
