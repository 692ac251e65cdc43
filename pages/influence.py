"""Influence: the research question in numbers, how far to trust them, and whether the run can be trusted."""
import json
import time

import pandas as pd
import streamlit as st

from core import charts, diagnostics, export, influence, jobs, labels, report
from core.errors import UserError
from pages.shared import encodings, fingerprint, pick_run, plain, prior_metrics

EMBEDDINGS = influence.EMBEDDINGS
ALERT = {"good": st.success, "caution": st.warning, "withheld": st.error}

st.title("Influence")


@st.cache_data(max_entries=4, show_spinner=False)
def results(run_dir: str, checkpoint_mtime: int, merge: tuple[str, ...] = ()) -> dict[str, dict]:
    """From the run's influence.json once `compute` has written it: instant."""
    return influence.for_run(run_dir, influence.InfluenceSettings(merge=merge))


def compute(run_dir: str, merge: tuple[str, ...] = ()) -> None:
    """The first reading of a run, with a progress bar saying which step it is on."""
    settings = influence.InfluenceSettings(merge=merge)
    if influence.is_current(run_dir, settings):
        return
    bar, t0 = st.progress(0.0, "Reading the run's encodings…"), time.time()
    steps = {}  # each step's start: its time left is extrapolated from its own pace

    def update(step: str, f: float) -> None:
        f = min(max(f, 0.0), 1.0)
        spent = time.time() - steps.setdefault(step, time.time())
        left = f" about {jobs.duration(spent * (1 - f) / f)} left in this step;" if 0.05 < f < 1 else ""
        bar.progress(f, f"{step}: {f:.0%};{left} {jobs.duration(time.time() - t0)} so far")

    influence.for_run(run_dir, settings, progress=update)
    bar.empty()


@st.cache_data(max_entries=4, show_spinner="Checking the run…")
def checks(run_dir: str, checkpoint_mtime: int) -> dict:
    return diagnostics.for_run(run_dir)


def question(r: dict, whose: str) -> None:
    """The research question in the dataset's own names, and what it is read on."""
    counts, groups = r.get("source_counts", {}), r["table"].drop_duplicates("group")
    n_target = int(groups["n"].iloc[0])
    names = [plain(s) for s in r["sources"]]
    st.caption(f"What share of each group of {plain(r['target'])} figurines follows each source culture "
               f"({', '.join(names[:-1])} or {names[-1]})? Read on {whose} photographs: "
               f"{sum(counts.values()):,} source figurines and {n_target:,} {plain(r['target'])} figurines.")


def answer(r: dict, truth: dict | None) -> None:
    """The answer first: the verdict in words (a withheld reading says so first), then each group's shares in
    words, then one picture."""
    v = r["verdict"]["level"]
    ALERT[v](plain(report.lead_words(r)))
    if v == "withheld":
        return
    sizes = r["table"].drop_duplicates("group").set_index("group")["n"]
    for g, line in report.brief(r).items():
        st.markdown(f"- **{plain(g)}** ({sizes[g]:,} figurines): {plain(line)}")
    small = [g for g, part in r["table"].groupby("group", sort=False) if part["too_small"].iloc[0]]
    if small:
        st.markdown(f"- {', '.join(map(plain, small))}: too few figurines (under {influence.MIN_GROUP}) to say.")


def picture(r: dict, name: str, truth: dict | None):
    """The reading as one picture: a ternary triangle for three sources, else bars, with the 95% intervals, the
    known answer where there is one, and the verdict in its subtitle (so an exported file carries it)."""
    table = influence.with_known(r["table"], truth)
    if not table["shown"].any():
        return None
    title = f"{r['target']} figurines: shares of each source culture, read in the {EMBEDDINGS[name]}"
    subtitle = [report.lead_words(r),
                ("● estimate, shaded: its 95% range" if len(r["sources"]) == 3 else "bar: estimate, line: its 95% range")
                + (", ○ known answer" if len(r["sources"]) == 3 and truth else ", red tick: known answer" if truth
                   else "")]
    chart = (charts.ternary(table, r["sources"], title, subtitle) if len(r["sources"]) == 3
             else charts.bars(table, title, subtitle))
    st.altair_chart(chart, width="content")
    return chart


def which(res: dict, name: str) -> None:
    """Which representation gave the numbers, and why, in one sentence."""
    level = res[name]["verdict"]["level"]
    others = {n: r["verdict"]["level"] for n, r in res.items() if n != name and not r["table"].empty}
    tie = " (among equals, the first of the AAE latent, the UMAP baseline and the descriptor space)" \
        if level in others.values() else ""
    st.info(f"These numbers are read in {report.WHY[name]} (the {EMBEDDINGS[name]}): of the representations of "
            f"the same photographs, its reading passes its checks best{tie}. Elsewhere: "
            + "; ".join(f"the {EMBEDDINGS[n]}'s reading {report.STANDING[v]}" for n, v in others.items())
            + ". The maps on Explore are for looking; every reading stands side by side below.")


def could_help(res: dict, name: str, key: str) -> None:
    """Where the reading is withheld: what could help, each option with its measured figure, and the merge run
    from here."""
    st.subheader("What could help")
    for o in report.options(res, name):
        st.markdown(f"- **{plain(o['what'])}**: {plain(o['measured'])}.")
        if o.get("merge") and o["helps"]:
            if st.button(f"Read {plain(' + '.join(o['merge']))} as one source", key="merge"):
                st.session_state[key] = list(o["merge"])
                st.rerun()


def for_a_paper(res: dict, name: str, run, settings) -> str:
    """Sentences to quote and the methods paragraph, each with a copy button; returns the paragraph."""
    st.subheader("For a paper")
    with st.expander("A sentence to quote for each group", icon=":material/format_quote:"):
        for line in report.sentences(res[name]).values():
            st.code(line, language=None, wrap_lines=True)
    text = report.methods(res, name, run.config(), run.name, settings)
    st.markdown("**Methods paragraph**")
    st.code(text, language=None, wrap_lines=True)
    return text


def self_check(r: dict, space: str, whose: str) -> None:
    """How the method does on the user's own photographs when the answer is known."""
    c = r["self_check"]
    if "mae" in c:
        st.markdown(f"**On {whose} photographs, when the answer is known, this method is off by {c['mae']:.2f} "
                    f"(± {c['mae_se']:.2f}) on average and its 95% intervals, {c['width']:.2f} wide on average, "
                    f"contain the answer {c['coverage']:.0%} of the time.**")
        t = r["table"][r["table"]["shown"]]
        if len(t):
            wide = float((t["ci_high"] - t["ci_low"]).mean())
            st.markdown(f"The ranges shown above, widened for what the checks found, are {wide:.2f} wide on average"
                        + (f": wider than the {influence.MAX_WIDTH:.2f} a reading to build on should have, so they "
                           f"say which source a site follows most only where they do not overlap."
                           if wide > influence.MAX_WIDTH else "."))
        moved = c.get("shift")
        st.caption(f"{c['groups']} groups of known mixtures of source figurines held out from the classifier "
                   f"(each of {c['folds']} folds in turn: {c['holdout']:.0%} of each source culture), estimated as "
                   f"the sites are ({space})."
                   + (f" Moved as far from the sources as the target figurines sit, in directions that would "
                      f"bias them, the same groups are off by {moved['mae']:.2f}" if moved else "")
                   + (f": every interval is widened by {moved['allowance']:.2f} on each side, which holds their "
                      f"answer {moved['coverage_widened']:.0%} of the time." if moved and r["verdict"]["level"] != "withheld"
                      else "." if moved else ""))
    if r["verdict"]["reasons"]:
        st.caption("The verdict's reasons, with their figures: " + "; ".join(map(plain, r["verdict"]["reasons"])) + ".")


def _f(v, fmt: str = "{:.2f}") -> str:
    return "—" if v is None or v != v else fmt.format(v)


def method_checks(res: dict) -> None:
    """The checks behind each reading, one row per figure with what it means for the reading."""
    shown = {n: r for n, r in res.items() if not r["table"].empty}
    rows = {
        "error on known mixtures (± standard error)": (
            lambda r: f"{_f(r['self_check'].get('mae'))} ± {_f(r['self_check'].get('mae_se'))}",
            f"how far off the shares were on average, on test mixtures of the source photographs with a known "
            f"answer (the bar: {influence.BAR['mae']:.2f}; beyond {influence.FAIL['mae']:.2f} nothing is shown)"),
        "95% intervals that held the answer": (
            lambda r: _f(r["self_check"].get("coverage"), "{:.0%}"),
            f"how often the 95% ranges contained the known answer (the bar: {influence.BAR['coverage']:.0%})"),
        "how far the target is told from the sources (chance reaches)": (
            lambda r: f"{_f(r['domain_shift'])} ({_f(r['shift']['alarm'])})",
            "a classifier's area under the curve, 0.5 to 1; 0.5: the target figurines look like a mix of the "
            "sources; above the chance level (from source "
            "figurines against each other, 5% false alarms) they share something the sources lack, such as "
            "local making"),
        "error when moved as far": (
            lambda r: _f(r["self_check"].get("shift", {}).get("mae")),
            "the known mixtures' error once moved as far from the sources as the target figurines sit, in the "
            "directions that would bias them most (not computed where the reading is withheld anyway)"),
        "ranges widened by, each side": (
            lambda r: _f(r["self_check"].get("shift", {}).get("allowance")),
            "added to every range so that it holds those moved mixtures' answers 95% of the time"),
        "how clearly the sources are told apart (0 to 1)": (
            lambda r: _f(r["conditioning"]),
            f"1: the sources are never confused; below {influence.MIN_CONDITIONING} the tool cannot tell them "
            f"apart and gives no shares"),
        "reading": (lambda r: r["verdict"]["level"].replace("withheld", "withheld (cannot tell)"),
                    "good: read the shares; caution: read them with care; withheld: no shares"),
    }
    table = pd.DataFrame({EMBEDDINGS[n]: [f(r) for f, _ in rows.values()] for n, r in shown.items()}, index=list(rows))
    st.table(table.assign(**{"what it means for the reading": [m for _, m in rows.values()]}))


def trust(d: dict, lead: str) -> None:
    st.subheader("Does the AAE map match its prior?")
    verdict = d["verdict"]
    unreadable = "do not read distances" in verdict
    worried = any(w in verdict for w in ("do not match", "poor", "blurry", "weakly", "beyond chance"))
    (st.error if unreadable else st.warning if worried else st.info)(f"Verdict: {verdict}.")
    st.caption("What this means for the reading: " + (
        f"none directly; the numbers above are read in the {EMBEDDINGS[lead]}, not in this map. Where the map's "
        "codes do not match the prior, its distances and the look of its clusters are to be read with care on "
        "Explore." if lead != "aae" else "the numbers above are read in this map, and they rest on the checks "
        "above (tests on mixtures with a known answer), not on the map matching its prior; where its codes do not "
        "match the prior, it is the map's distances and the look of its clusters on Explore that are to be read "
        "with care."))
    p = d["prior"]
    c = st.columns(5)
    prior_metrics(p, c)
    c[4].metric("Reconstruction error", f"{d['recon_error']:.4f}", help="mean squared error per pixel")
    q = pd.DataFrame(d["quality"]).T.rename(index={**EMBEDDINGS, "pca": "50-D PCA of the pixels"})
    q.columns = ["same culture among 10 nearest (balanced)", "trustworthiness", "silhouette"]
    st.table(q.map(lambda v: f"{v:.3f}"))
    st.caption("Same culture among 10 nearest: how often a figurine's ten nearest neighbours share its culture, "
               "each culture counted equally (chance: one over the number of cultures). Trustworthiness: how far "
               "near neighbours in the map are near in the photographs (1: always). Silhouette: how compact and "
               f"apart the cultures lie (-1 to 1). Codes' mean {[round(v, 2) for v in p['mean']]}, covariance "
               f"{[[round(v, 1) for v in row] for row in p['cov']]} (the prior: 0 and {p['prior_var']:g} I).")


def show(run) -> None:
    """The reading of one run: the answer, its picture, what to cite, and the checks behind it."""
    mtime = run.model_path.stat().st_mtime_ns
    key = f"merge:{run.dir}"  # sources this session reads as one, for this run
    merge = tuple(st.session_state.get(key) or ())
    settings = influence.InfluenceSettings(merge=merge)
    try:
        compute(str(run.dir), merge)
        res = results(str(run.dir), mtime, merge)
        d = checks(str(run.dir), mtime)
    except UserError as e:
        st.error(plain(str(e)))
        return
    if res["aae"]["table"].empty:
        st.warning(plain(res["aae"]["why"][0].upper() + res["aae"]["why"][1:]) + ".")
        return
    known = influence.known_answer(run.config().get("data", ""))
    truth = influence.merged_known(known, merge)
    lead = influence.lead(res)
    r = res[lead]
    question(r, "the demo's" if known else "your")
    for doubt in labels.doubts(encodings(str(run.dir), mtime, fingerprint(run.config()["data"]))):
        st.warning(plain(doubt))  # the culture asked about may not be the one meant: said before any answer
    if merge:
        st.info(f"{plain(' + '.join(merge))} are read as one source here.")
        if st.button("Read every source on its own again"):
            st.session_state.pop(key, None)
            st.rerun()
    answer(r, truth)
    chart, paragraph = picture(r, lead, truth), None
    if r["verdict"]["level"] == "withheld":
        could_help(res, lead, key)
    else:
        which(res, lead)
        paragraph = for_a_paper(res, lead, run, settings)

    st.divider()
    st.header("For methods readers")
    st.subheader("How far the method can be trusted")
    self_check(r, EMBEDDINGS[lead], "the demo's" if known else "your")
    method_checks(res)
    tables = {n: influence.with_known(t["table"], truth) for n, t in res.items() if not t["table"].empty}
    order = [lead] + [n for n in tables if n != lead]
    maps = [charts.heatmap(tables[name], EMBEDDINGS[name]) for name in order]
    st.subheader("Every representation's reading")
    for m in maps:  # at their own width: stretched into half a page, the column labels overlap
        st.altair_chart(m, width="content")
    if truth:
        err = {EMBEDDINGS[n]: t["error"].mean() for n, t in tables.items()}
        st.caption("The known answer (truth.json) stands beside every estimate. Mean error: "
                   + ", ".join(f"{k} {v:.2f}" for k, v in err.items()) + ".")

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
    downloads(run, full[cols], chart, paragraph, res, settings)
    trust(d, lead)


def downloads(run, table: pd.DataFrame, chart, paragraph: str | None, res: dict, settings) -> None:
    """What is shown, as files (on_click="ignore": no rerun, so a second download clicked at once finds its file)."""
    c = st.columns(4)
    c[0].download_button("Estimates (CSV)", export.csv(table.round(3)), f"{run.name}-influence.csv", "text/csv",
                         icon=":material/download:", on_click="ignore", help="rounded as shown; the JSON has every digit")
    if chart is not None:
        c[1].download_button("Picture (SVG)", lambda: charts.svg(chart), f"{run.name}-influence.svg", "image/svg+xml",
                             icon=":material/download:", on_click="ignore", help="with its 95% ranges and the verdict")
    c[2].download_button("Every number (JSON)", json.dumps(influence.as_json(res, settings)),
                         f"{run.name}-influence.json", "application/json", icon=":material/download:",
                         on_click="ignore", help="as `python -m core influence --json` prints it, at full precision")
    if paragraph:
        c[3].download_button("Methods paragraph (TXT)", report.with_settings(paragraph, run.config()),
                             f"{run.name}-methods.txt", "text/plain", icon=":material/download:", on_click="ignore",
                             help="the paragraph, then the run's settings")


run = pick_run()
if run is None:
    st.stop()
with st.empty().container():  # replaced whole: a new run's progress never sits above the last run's results
    show(run)
