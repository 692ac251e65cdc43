"""Influence estimates: what share of each target group follows each source culture, and whether to read it.

Groups: the target culture (Hellenistic Babylonian, else the one with find-sites) as a whole and each
of its find-sites; sources: every other culture. In each representation (the AAE latent, the UMAP
baseline, the 50-D PCA space) the shares come from `quantify.ShareEstimator` (EM on a classifier
fitted to the source figurines, intervals that resample and refit everything), and four checks decide
whether they are shown as a reading or withheld ("cannot tell"):

- the self-check: known mixtures of held-out source figurines, estimated the same way;
- the domain shift: whether the target figurines look like a mixture of the sources at all; the
  self-check's mixtures moved as far from the sources (`quantify.shifted_check`) say how far that can
  bias the shares, and every interval is widened by that much;
- the conditioning: whether the method can tell the sources apart;
- the agreement: two representations that pass their own checks but read the groups differently
  (`agree`) show that the reading depends on the representation, not on the figurines.

The reading that leads (`lead`) is the one that passes its checks best, whichever representation gives it.

A withheld estimate keeps its number for the record, with the interval [0, 1]: the tool cannot say.
Results are cached in the run folder (`influence.json`), keyed by the encodings they were computed from.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .labels import FEW, target_culture, unseen
from .parallel import map_chunks
from .quantify import ShareEstimator, domain_shift, one_thread, self_check, shift_null

MIN_GROUP = FEW
LEVELS = ("good", "caution", "withheld")  # a verdict: read it, read it with care, or cannot tell
MIN_CONDITIONING = 0.2  # smallest singular value of the confusion matrix below this: sources confused
BAR = {"mae": 0.08, "coverage": 0.85}      # the product's quality bar for the self-check
FAIL = {"mae": 0.15, "coverage": 0.70}     # beyond this the self-check has failed: nothing is shown
MAX_WIDTH = 0.35  # the widest 95% interval a reading may have (the product's bar on real photographs)
DISJOINT = 0.1  # two representations whose 95% intervals are disjoint for more of the values than this disagree
EMBEDDINGS = {"aae": "AAE latent", "umap": "UMAP baseline", "descriptor": "descriptor space"}
MAPS, READ_IN = ("aae", "umap"), "descriptor"  # the 2-D maps, and the space that keeps what tells cultures apart
CACHE_VERSION = 10  # 6: the descriptor space; checks in the classifier's log-odds against their null; 7: sealed;
# 8: reasons in words, source counts; 9: the descriptors on flattened backdrops whatever the run's, and a map whose
# own checks ask for care yields to the descriptor space however far apart; 10: a 2-D map no better by its own
# checks than the descriptor space is withheld where they disagree


@dataclass(frozen=True)
class InfluenceSettings:
    """How shares are estimated and checked; stored with every result."""

    method: str = ("EM re-estimation of class priors (Saerens et al. 2002) on a logistic-regression source "
                   "classifier (cubic features in spaces of up to 3 dimensions)")
    degree: int = 3
    n_boot: int = 200
    level: float = 0.95
    folds: int = 4               # the self-check's cross-fitting: each fold holds out a quarter of every source
    self_check_groups: int = 24
    false_alarm: float = 0.05    # the domain-shift check's false-alarm rate, measured on source figurines
    null_draws: int = 40
    descriptor: str = "hog"      # the descriptor space: core.descriptors.KINDS
    descriptor_size: int = 64
    background: str = "flatten"  # the descriptors' own backdrop handling, whatever the run's (bench/RESULTS.md)
    components: int = 60         # principal components of the descriptors, fitted to the source figurines
    backbone: str = "resnet50"   # with descriptor "backbone": resnet50 or convnext_tiny
    weights: str = ""            # a backbone's weights file, or "torchvision" (downloaded when online)
    seed: int = 0
    merge: tuple[str, ...] = ()  # source cultures read as one (named "A + B"), where the tool cannot tell them apart


def _worse(moved: dict, check: dict) -> bool:
    """Whether known mixtures moved as far as the targets are read worse than unmoved, beyond two standard
    errors: a difference the check can see that also changes the shares."""
    if "mae" not in check:
        return True
    return moved["mae"] - check["mae"] > 2 * float(np.hypot(moved["mae_se"], check["mae_se"]))


def verdict(check: dict, shift: dict, conditioning: float, confusion: np.ndarray, sources: list[str],
            target: str = "target") -> dict:
    """`level` (good, caution or withheld), the reasons with their figures (for methods readers and the JSON),
    and the same reasons in a historian's words (`words`), in the same order."""
    withheld, caution = [], []  # (reason, words)
    moved = check.get("shift") if shift["apart"] else None  # not apart: the groups were not moved
    apart = (f"the target figurines differ from every mixture of the sources in what the classifier reads (told "
             f"apart with AUC {shift['auc']:.2f}, where source figurines give at most {shift['alarm']:.2f} in "
             f"{1 - shift['false_alarm']:.0%} of draws)")
    unlike = f"the {target} figurines do not look like any mix of the source figurines"
    if moved and moved["mae"] + 2 * moved["mae_se"] > FAIL["mae"]:
        withheld.append((f"{apart}; known mixtures of your source photographs moved as far are read off by "
                         f"{moved['mae']:.2f} on average (up to {moved['mae'] + 2 * moved['mae_se']:.2f} within its "
                         f"own uncertainty): what the target figurines share, such as local making, would be read "
                         f"as influence",
                         f"{unlike}, and tests with a known answer show that what sets them apart, such as local "
                         f"making, would be read as influence (off by {moved['mae']:.0%} on average)"))
    elif moved and 2 * moved["allowance"] > MAX_WIDTH:
        withheld.append((f"{apart}; to hold the answer of known mixtures moved as far, every interval would have to "
                         f"grow by {moved['allowance']:.2f} on each side, more than {MAX_WIDTH:.2f} in all: the "
                         f"shares could not be told from much else",
                         f"{unlike}: allowing for that, every range would be wider than {MAX_WIDTH:.0%}, too wide "
                         f"to say anything"))
    elif moved and _worse(moved, check):
        caution.append((f"{apart}; known mixtures moved as far are read off by {moved['mae']:.2f}, against "
                        f"{check['mae']:.2f} unmoved, so the intervals are widened by {moved['allowance']:.2f} on "
                        f"each side, which holds their answer {moved['coverage_widened']:.0%} of the time",
                        f"the {target} figurines differ somewhat from every mix of the source figurines, so each "
                        f"range is widened by {moved['allowance']:.0%} on each side to allow for it"))
    if conditioning < MIN_CONDITIONING:
        off = confusion - np.diag(np.diag(confusion))
        i, j = np.unravel_index(off.argmax(), off.shape)
        withheld.append((f"the method cannot tell {sources[j]} from {sources[i]} figurines apart "
                         f"(conditioning {conditioning:.2f})",
                         f"the {sources[j]} figurines and the {sources[i]} figurines look too much alike here to be "
                         f"told apart"))
    if "mae" not in check:
        caution.append((f"no self-check: {check.get('error', 'not run')}",
                        f"it could not be tested on mixtures with a known answer ({check.get('error', 'not run')})"))
    elif check["mae"] > FAIL["mae"] or check["coverage"] < FAIL["coverage"]:
        withheld.append((f"on known mixtures of your own source photographs it is off by {check['mae']:.2f} on "
                         f"average and its intervals hold the answer {check['coverage']:.0%} of the time",
                         f"tested on mixtures of the source photographs with a known answer, its shares are off by "
                         f"{check['mae']:.0%} on average and its ranges hold the answer only {check['coverage']:.0%} "
                         f"of the time"))
    elif check["mae"] > BAR["mae"] or check["coverage"] + check["coverage_se"] < BAR["coverage"]:
        caution.append((f"on known mixtures of your own source photographs it is off by {check['mae']:.2f} and its "
                        f"intervals hold the answer {check['coverage']:.0%} of the time (the bar: "
                        f"{BAR['mae']:.2f} and {BAR['coverage']:.0%})",
                        f"tested on mixtures of the source photographs with a known answer, its shares are off by "
                        f"{check['mae']:.0%} on average and its ranges hold the answer {check['coverage']:.0%} of "
                        f"the time (the bar: {BAR['mae']:.0%} and {BAR['coverage']:.0%})"))
    level = "withheld" if withheld else "caution" if caution else "good"
    pairs = withheld + caution
    return {"level": level, "reasons": [r for r, _ in pairs], "words": [w for _, w in pairs]}


def nothing_to_estimate(cultures: pd.Series, sites: pd.Series) -> str | None:
    """Why a collection gives nothing to estimate (one culture, or a single source culture), in words; None
    where there are shares to estimate."""
    target = target_culture(cultures, sites)
    sources = sorted(c for c in cultures.unique() if c != target)
    if not sources or not (cultures == target).any():
        return "this dataset has only one culture: there are no source cultures to compare with"
    if len(sources) == 1:
        return (f"this dataset has one source culture only ({sources[0]}): every {target} figurine can only be "
                "compared with it, so each share is 1 and there is nothing to estimate. Add photographs of a "
                "second source culture to compare the two")
    return None


def estimate(emb: np.ndarray, cultures: pd.Series, sites: pd.Series,
             settings: InfluenceSettings = InfluenceSettings()) -> dict:
    """Shares per (group, source) with intervals, the self-check, the domain shift and the verdict; an empty
    table, with `why`, where there is nothing to estimate."""
    cultures, sites = cultures.reset_index(drop=True), sites.reset_index(drop=True)
    target = target_culture(cultures, sites)
    sources = sorted(c for c in cultures.unique() if c != target)
    why = nothing_to_estimate(cultures, sites)
    if why:
        return {"table": pd.DataFrame(), "sources": sources, "target": target, "why": why}
    emb = np.asarray(emb, np.float64)
    is_source = (cultures != target).to_numpy()
    y = cultures[is_source].to_numpy()
    targets = np.flatnonzero(~is_source)
    target_sites = sites.to_numpy()[targets]
    groups = {target: np.arange(len(targets))}
    for site in sorted(s for s in np.unique(target_sites) if s):
        groups[site] = np.flatnonzero(target_sites == site)
    est = ShareEstimator(settings.degree, settings.n_boot, settings.level, settings.seed).fit(emb[is_source], y)
    res = est.estimate(emb[targets], groups)
    sizes = [len(ix) for ix in groups.values() if len(ix) >= MIN_GROUP] or [MIN_GROUP]
    auc = domain_shift(est, emb[targets], res[target]["shares"])
    null = shift_null(est, len(targets), res[target]["shares"], settings.null_draws)
    alarm = float(np.quantile(null, 1 - settings.false_alarm))
    shift = {"auc": auc, "alarm": alarm, "null_median": float(np.median(null)), "false_alarm": settings.false_alarm,
             "apart": bool(auc > alarm)}
    readable = est.conditioning_ >= MIN_CONDITIONING  # else withheld: no widening needed
    check = self_check(emb[is_source], y, sizes, est, settings.self_check_groups, settings.folds,
                       (auc if shift["apart"] else 0.0) if readable else None)
    v = verdict(check, shift, est.conditioning_, est.confusion_, sources, target)
    growth = None if readable else learning(emb[is_source], y, est.conditioning_, settings)
    wide = check.get("shift", {}).get("allowance", 0.0)
    rows = [{"group": g, "source": s, "n": r["n"], "share": float(r["shares"][j]),
             "sampling_low": float(r["low"][j]), "sampling_high": float(r["high"][j]),
             "low": max(0.0, float(r["low"][j]) - wide), "high": min(1.0, float(r["high"][j]) + wide),
             "too_small": r["n"] < MIN_GROUP}
            for g, r in res.items() for j, s in enumerate(sources)]
    return _shown({"table": pd.DataFrame(rows), "target": target, "sources": sources, "self_check": check,
                   "domain_shift": auc, "shift": shift, "conditioning": est.conditioning_,
                   "confusion": est.confusion_.tolist(), "verdict": v,
                   "source_counts": {c: int((y == c).sum()) for c in sources}, "learning": growth})


def learning(X: np.ndarray, y: np.ndarray, full: float, settings: InfluenceSettings, fractions=(0.5, 0.75),
             draws: int = 3) -> dict:
    """How well the sources are told apart (conditioning) from a share of the source figurines, each culture
    subsampled alike (the mean of `draws`), and from all: whether more photographs would help."""
    rng = np.random.default_rng(settings.seed)
    out = []
    for f in fractions:
        vals = []
        for _ in range(draws):
            keep = np.concatenate([rng.choice(rows, min(len(rows), max(2, round(f * len(rows)))), replace=False)
                                   for rows in (np.flatnonzero(y == c) for c in np.unique(y))])
            vals.append(ShareEstimator(settings.degree, seed=settings.seed).fit(X[keep], y[keep]).conditioning_)
        out.append(float(np.mean(vals)))
    return {"fractions": [*fractions, 1.0], "conditioning": [*out, float(full)]}


def _shown(result: dict) -> dict:
    """Set which estimates are shown and their intervals: the sampling interval widened for the targets' shift
    (and to span another representation's reading where `agree` found one), or [0, 1] when withheld."""
    t = result["table"]
    shown = (result["verdict"]["level"] != "withheld") & ~t["too_small"]
    low, high = t.get("span_low", t["low"]), t.get("span_high", t["high"])
    result["table"] = t.assign(ci_low=low.where(shown, 0.0), ci_high=high.where(shown, 1.0), shown=shown)
    return result


def agree(results: dict[str, dict]) -> dict[str, dict]:
    """Compare the representations that pass their own checks, pair by pair, over the groups large enough.

    Both readings come from the same figurines, so unbiased ones have disjoint 95% intervals far less than
    1 time in 100. Where more than DISJOINT of the values have disjoint intervals, or the shares differ by
    more than the self-check's bar on average, the reading depends on the representation: each is read with
    care and its intervals span both readings; beyond the self-check's failure level, neither is shown.
    Where a 2-D map whose own checks are no better than the descriptor space's disagrees with it, only the map
    is marked, and withheld: a 2-D map loses what tells related cultures apart (measured on real photographs),
    the descriptor space keeps it, so the order of the representations never lets the map lead in a tie.
    """
    ok = sorted((n for n, r in results.items() if not r["table"].empty and r["verdict"]["level"] != "withheld"),
                key=lambda n: n != READ_IN)  # the maps compared with the descriptor space first
    own = {n: results[n]["verdict"]["level"] for n in ok}  # each reading's own checks, before comparing
    key = ["group", "source"]
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            if "withheld" in (results[a]["verdict"]["level"], results[b]["verdict"]["level"]):
                continue  # a reading already withheld shows nothing to mark another by
            ta, tb = (results[n]["table"].set_index(key) for n in (a, b))
            both = ta.index.intersection(tb.index)
            ta, tb = ta.loc[both], tb.loc[both]
            ta, tb = (t[~(ta["too_small"] | tb["too_small"])] for t in (ta, tb))
            if ta.empty:
                continue
            gap = float((ta["share"] - tb["share"]).abs().mean())
            apart = float(((ta["sampling_low"] > tb["sampling_high"])
                           | (tb["sampling_low"] > ta["sampling_high"])).mean())
            if gap <= BAR["mae"] and apart <= DISJOINT:
                continue
            low, high = np.minimum(ta["low"], tb["low"]), np.maximum(ta["high"], tb["high"])
            # a 2-D map whose own checks are no better than the descriptor space's yields to it, near or far (the
            # map loses what tells related cultures apart, the descriptor space keeps it); otherwise both are read
            # with care, and readings further apart than the failure level are both withheld
            def yields(m: str, o: str) -> bool:
                return m == READ_IN and o in MAPS and LEVELS.index(own[o]) >= LEVELS.index(own[m])

            differ = (f"the shares differ by {gap:.2f} on average, against the {BAR['mae']:.2f} the self-check allows"
                      if apart <= DISJOINT else f"{apart:.0%} of the shares differ beyond sampling error")
            for n, other in [(m, o) for m, o in ((a, b), (b, a)) if not yields(m, o)]:
                r, v = results[n], results[n]["verdict"]
                reason = (f"the {EMBEDDINGS.get(other, other)} reads the same groups differently ({differ}): the "
                          f"reading depends on the representation")
                words = (f"the {EMBEDDINGS.get(other, other)} reads the same photographs differently (by "
                         f"{gap:.0%} on average): the answer depends on how the photographs are represented")
                if yields(other, n):  # a map no better by its own checks than the space that keeps what it loses
                    v["level"] = "withheld"
                    v["reasons"].insert(0, reason + "; a 2-D map loses what tells related cultures apart, the "
                                                    "descriptor space keeps it")
                    v["words"].insert(0, words + "; a map of two numbers loses what tells related cultures apart, "
                                                 "so read the descriptor space")
                    continue
                if gap > FAIL["mae"]:
                    v["level"] = "withheld"
                    v["reasons"].insert(0, reason)
                    v["words"].insert(0, words)
                    continue
                v["level"] = "caution" if v["level"] == "good" else v["level"]
                v["reasons"].append(reason + ", and its intervals span both readings")
                v["words"].append(words + ", so its ranges cover both readings")
                t = r["table"]
                rows = pd.MultiIndex.from_frame(t[key])  # rows the other lacks keep their own interval
                r["table"] = t.assign(
                    span_low=np.fmin(t.get("span_low", t["low"]), low.reindex(rows).to_numpy()),
                    span_high=np.fmax(t.get("span_high", t["high"]), high.reindex(rows).to_numpy()))
    return {n: _shown(r) if not r["table"].empty else r for n, r in results.items()}


def lead(results: dict[str, dict]) -> str:
    """The representation whose reading leads: the one that passes its checks best (good before caution),
    in EMBEDDINGS' order among equals, as `score_influence.py` ranks them; where every reading is withheld,
    the descriptor space's (it keeps most of what tells cultures apart, so what would help it helps most),
    else the AAE latent's, which then says why it cannot tell."""
    rank = {"good": 0, "caution": 1}
    passed = [n for n in EMBEDDINGS if n in results and not results[n]["table"].empty
              and results[n]["verdict"]["level"] in rank]
    if passed:
        return min(passed, key=lambda n: rank[results[n]["verdict"]["level"]])
    return READ_IN if READ_IN in results and not results[READ_IN]["table"].empty else "aae"


def as_json(results: dict[str, dict], settings: InfluenceSettings = InfluenceSettings()) -> dict:
    """DESIGN.md's shape, {EMBEDDING: {GROUP: {SOURCE: {"share", "ci"}}}}, plus what stands behind it, the
    space read first ("lead") and each group's number of figurines ("group_sizes").

    A withheld estimate has "shown": false and the interval [0, 1]; "sampling_ci" keeps the bootstrap's.
    """
    out: dict = {}
    for name, r in results.items():
        if r["table"].empty:
            continue
        out[name] = {g: {row.source: {"share": row.share, "ci": [row.ci_low, row.ci_high], "shown": row.shown,
                                      "sampling_ci": [row.sampling_low, row.sampling_high]}
                         for row in part.itertuples()}
                     for g, part in r["table"].groupby("group", sort=False)}
    out["method"] = {**asdict(settings), "descriptor": describe_space(settings)}
    out["checks"] = {
        "about": ("self_check: error (mae, with its standard error mae_se) and 95%-interval coverage on known "
                  "mixtures of source figurines held out from the classifier (cross-fitted over folds); "
                  "domain_shift_auc: how well the target figurines are told from the sources weighted to their "
                  "mixture, in the classifier's log-odds; domain_shift: that AUC beside its null (source "
                  "figurines against source figurines: alarm is the quantile that gives false_alarm), apart "
                  "when above it; self_check.shift: the known mixtures moved as far from the sources, and the "
                  "widening of the intervals (allowance, each side) that holds their answer; conditioning: 1 = "
                  f"sources told apart, below {MIN_CONDITIONING}: confused; verdict: good, caution or withheld"),
        **{n: {"verdict": r["verdict"], "self_check": r["self_check"], "domain_shift_auc": r["domain_shift"],
               "domain_shift": r["shift"], "conditioning": r["conditioning"]}
           for n, r in results.items() if not r["table"].empty}}
    read = [r["table"] for r in results.values() if not r["table"].empty]
    if read:
        out["lead"] = lead(results)  # the space the page and the CLI read first
        out["group_sizes"] = {g: int(n) for g, n in read[0].drop_duplicates("group").set_index("group")["n"].items()}
    return out


def _share(row) -> str:
    return f"{row.share:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def reading(result: dict, quote=str) -> list[str]:
    """Plain-language sentences, one per group; `quote` formats names and reasons (say, escaped for Markdown)."""
    t = result["table"]
    if t.empty:
        return []
    v = result["verdict"]
    if v["level"] == "withheld":
        return [f"Cannot tell: {quote(v['reasons'][0])}."]
    lines = []
    for g, part in t.groupby("group", sort=False):
        n = int(part["n"].iloc[0])
        who = (f"{quote(g)} figurines as a whole" if g == result["target"] else f"Figurines from {quote(g)}")
        if part["too_small"].iloc[0]:
            lines.append(f"{who}: only {n}, too few to say which traditions they follow.")
            continue
        part = part.sort_values("share", ascending=False)
        best, rest = part.iloc[0], part.iloc[1:]
        text = f"{who} (n = {n}) follow {quote(best.source)} models most: {_share(best)}"
        if len(rest) and rest["ci_high"].iloc[0] >= best.ci_low:
            text += f", not clearly more than {quote(rest['source'].iloc[0])}"
        others = "; ".join(f"{quote(r.source)} {_share(r)}" for r in rest.itertuples())
        lines.append(text + (f"; {others}." if others else "."))
    return lines


def known_answer(data_root) -> dict | None:
    """The known mixing weights of a dataset (the demo's `truth.json`), if it has them."""
    from .runs import MB, read_json

    try:  # a regular file of the folder within 1 MB: a pipe or a link planted there is not read
        sites = read_json(Path(data_root) / "truth.json", MB)["sites"]
        return {g: {s: float(v) for s, v in w.items()} for g, w in sites.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def with_known(table: pd.DataFrame, truth: dict | None) -> pd.DataFrame:
    """The table with the known share and the error beside each estimate, where the answer is known."""
    if not truth or table.empty:
        return table
    known = [truth.get(g, {}).get(s, np.nan) for g, s in zip(table["group"], table["source"])]
    return table.assign(known=known, error=np.abs(table["share"] - np.array(known, float)))


def merged_known(truth: dict | None, merge: tuple[str, ...]) -> dict | None:
    """The known answer with the sources in `merge` read as one: their shares summed."""
    if not truth or not merge:
        return truth
    return {g: {**{s: v for s, v in w.items() if s not in merge}, " + ".join(merge): sum(w.get(s, 0.0) for s in merge)}
            for g, w in truth.items()}


def _from_cache(data: dict) -> dict[str, dict]:
    return {n: {**r, "table": pd.DataFrame(r["table"])} for n, r in data.items()}


def seen_by(config: dict, enc: pd.DataFrame) -> np.ndarray:
    """The source figurines whose labels a guided run was shown: left out of its estimates and checks."""
    s = config["effective"]
    if not s.get("guided"):
        return np.zeros(len(enc), bool)
    return enc["culture"].isin(config["sources"]).to_numpy() & ~unseen(enc["path"], s["label_holdout"], s["seed"])


def describe_space(settings: InfluenceSettings) -> str:
    """The descriptor space in words."""
    backdrop = {"flatten": "plain studio backdrops flattened to grey", "separate": "figures cut from their backdrops",
                "keep": "backdrops as photographed"}[settings.background]
    return (f"{descriptor_of(settings).name} ({backdrop}), standardised and projected on their first "
            f"{settings.components} principal components, fitted to the source figurines only")


def descriptor_of(settings: InfluenceSettings):
    from .descriptors import Descriptor

    return Descriptor(settings.descriptor, settings.descriptor_size, arch=settings.backbone, weights=settings.weights)


def descriptor_space(features: np.ndarray, is_source: np.ndarray, components: int = 60) -> np.ndarray:
    """Descriptors standardised and projected on principal components fitted to the source figurines alone:
    what only the target culture shares (its local making) gets no axis of its own."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[is_source])
    k = int(min(components, is_source.sum() - 1, features.shape[1]))
    pca = PCA(k, random_state=0).fit(scaler.transform(features[is_source]))
    return pca.transform(scaler.transform(features))


def _descriptors(run, enc: pd.DataFrame, settings: InfluenceSettings, progress=None) -> np.ndarray | None:
    """The descriptors of a run's figurines, rows as its encodings; None where its folder is gone or changed."""
    from .dataset import load
    from .descriptors import describe

    cfg = run.config()
    root = Path(cfg["data"])
    if not root.is_dir():
        return None
    ds = load(root, settings.descriptor_size, settings.background,
              progress=progress and (lambda i, n: progress("Decoding the photographs", i / max(n, 1))))
    x = describe(ds, descriptor_of(settings),
                 progress=progress and (lambda i, n: progress("Describing the photographs", i / max(n, 1))))
    pos = pd.Index(ds.items["path"]).get_indexer(enc["path"])
    return None if (pos < 0).any() else x[pos]


def reading_space(run_dir, enc: pd.DataFrame, settings: InfluenceSettings = InfluenceSettings(),
                  progress=None) -> np.ndarray | None:
    """The descriptor space the shares are read in, rows as `enc` (a run's encodings: path, culture, site);
    None where the run's folder is gone or changed."""
    from .runs import Run

    features = _descriptors(Run(run_dir), enc, settings, progress)
    if features is None:
        return None
    is_source = (enc["culture"] != target_culture(enc["culture"], enc["site"])).to_numpy()
    return descriptor_space(features, is_source, settings.components)


def _key(run, settings: InfluenceSettings) -> dict:
    from .descriptors import resolved
    from .embed import stored_key

    return {"encodings": stored_key(run.encodings_path), "settings": json.loads(json.dumps(asdict(settings))),
            "version": CACHE_VERSION,
            "weights": resolved(descriptor_of(settings)).weights_sha256}


def cache_file(run, settings: InfluenceSettings) -> Path:
    """`RUN/influence.json`, or with sources read as one `RUN/influence-<digest>.json` beside it."""
    if not settings.merge:
        return run.dir / "influence.json"
    return run.dir / f"influence-{hashlib.sha256(json.dumps(settings.merge).encode()).hexdigest()[:12]}.json"


def merged(cultures: pd.Series, merge: tuple[str, ...]) -> pd.Series:
    """The cultures with the sources in `merge` read as one, named "A + B"."""
    return cultures.replace({c: " + ".join(merge) for c in merge}) if merge else cultures


def check_merge(merge: tuple[str, ...], cultures: pd.Series, sites: pd.Series) -> None:
    """Sources to read as one must be two or more of the run's source cultures, leaving two sources at least."""
    if not merge:
        return
    target = target_culture(cultures, sites)
    sources = set(cultures.unique()) - {target}
    wrong = [c for c in merge if c not in sources]
    if wrong:
        raise UserError(f"{wrong[0]!r} is not a source culture of this run: its sources are "
                        f"{', '.join(sorted(sources))}")
    if len(set(merge)) < 2 or len(sources - set(merge)) < 1:
        raise UserError("to read sources as one, name two or more of the source cultures, and leave at least "
                        "one other source to compare with")


def _seal(body: str) -> str:
    from .dataset import cache_secret

    return hmac.new(cache_secret(), body.encode(), hashlib.sha256).hexdigest()


def _cached(run, key: dict, path: Path) -> dict[str, dict] | None:
    """The results in `RUN/influence.json`, if this installation wrote them for this key and they hold what it
    writes; else None (they are computed again)."""
    from .runs import CAPS, read_json

    try:
        stored = read_json(path, CAPS["influence.json"])
        if not hmac.compare_digest(str(stored["seal"]), _seal(str(stored["body"]))):
            return None
        cached = json.loads(stored["body"])
        if cached.get("key") != key:
            return None
        results = _from_cache(cached["results"])
        if all(r["table"].empty and isinstance(r["why"], str) or r["verdict"]["level"] in LEVELS
               for r in results.values()):
            return results
    except (OSError, ValueError, AttributeError, KeyError, TypeError, RecursionError):
        pass
    return None


@one_thread
def _estimate(job: tuple) -> dict:
    """Worker: `estimate` in one representation."""
    return estimate(*job)


def is_current(run_dir, settings: InfluenceSettings = InfluenceSettings()) -> bool:
    """Whether `for_run` would answer from `RUN/influence.json` at once."""
    from .runs import Run

    run = Run(run_dir)
    return run.encodings_path.is_file() and _cached(run, _key(run, settings), cache_file(run, settings)) is not None


def for_run(run_dir, settings: InfluenceSettings = InfluenceSettings(), progress=None) -> dict[str, dict]:
    """Influence results of a run in its spaces (the AAE latent, the UMAP baseline and the descriptor space),
    from `RUN/influence.json` when still current; `progress(step, fraction)` hears how far it is."""
    from filelock import FileLock

    from .embed import spaces
    from .runs import Run, atomic_write

    run = Run(run_dir)
    enc, embeddings = spaces(run_dir)
    check_merge(settings.merge, enc["culture"], enc["site"])
    key = _key(run, settings)
    with FileLock(run.dir / ".influence.lock"):
        cached = _cached(run, key, cache_file(run, settings))
        if cached is not None:
            return cached
        seen = ~seen_by(run.config(), enc)
        enc = enc.assign(culture=merged(enc["culture"], settings.merge))
        is_source = (enc["culture"] != target_culture(enc["culture"], enc["site"])).to_numpy()
        readable = nothing_to_estimate(enc["culture"], enc["site"]) is None
        features = _descriptors(run, enc, settings, progress) if readable else None
        if features is not None:
            embeddings = {**embeddings, "descriptor": descriptor_space(features, is_source, settings.components)}
        rows = {n: np.ones(len(enc), bool) for n in embeddings}
        rows["aae"] = seen
        names = [n for n in EMBEDDINGS if n in embeddings]
        jobs = [(embeddings[n][rows[n]], enc["culture"][rows[n]], enc["site"][rows[n]], settings) for n in names]
        step = progress and (lambda done, total: progress(
            f"Estimating the shares in {len(names)} representations and checking them on known mixtures",
            done / max(total, 1)))
        results = agree(dict(zip(names, map_chunks(_estimate, jobs, [1] * len(jobs), progress=step))))
        stored = {n: {**r, "table": r["table"].to_dict("records")} for n, r in results.items()}
        body = json.dumps({"key": key, "results": stored}, default=float)
        atomic_write(cache_file(run, settings), json.dumps({"seal": _seal(body), "body": body}).encode())
    return results
