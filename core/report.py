"""The reading in a historian's words: one sentence per group to quote, a paragraph for a paper's methods
section, and what could help where the tool cannot tell. Plain text (the pages escape it)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from .influence import EMBEDDINGS, MIN_CONDITIONING, InfluenceSettings, describe_space

VERDICT = {"good": "the shares can be read as estimates", "caution": "the shares are to be read with care",
           "withheld": "the tool cannot tell"}
FEW = 30  # photographs of a source below which more of them come first
STANDING = {"good": "passes its checks too", "caution": "is to be read with care", "withheld": "is withheld"}
WHY = {"aae": "the run's own 2-D map, matched to its prior",
       "umap": "a 2-D UMAP map of the same photographs",
       "descriptor": "a space of image descriptors that keeps what tells related cultures apart, which a 2-D "
                     "map loses"}


def software() -> str:
    """This software and, in a git clone, its commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return "figurine latent-space explorer" + (f" (commit {commit})" if commit else "")


def pct(v: float) -> str:
    return f"{v:.0%}"


def _range(row) -> str:
    return f"{pct(row.share)} (95% range {pct(row.ci_low)}–{pct(row.ci_high)})"


def sentences(result: dict, whose: str = "") -> dict[str, str]:
    """One sentence per group shown as a reading, to quote: its size, each source's share and range, largest
    first, and what the ranges and checks allow: whether the first source clearly leads, whether the reading is
    to be read with care. `whose` names the photographs ("the demo's" or empty)."""
    care = (" The method's own checks ask for these shares to be read with care."
            if result["verdict"]["level"] == "caution" else "")
    out = {}
    for g, part in result["table"].groupby("group", sort=False):
        if not part["shown"].all():
            continue
        n = int(part["n"].iloc[0])
        t = result["target"]
        who = (f"all {n:,} {g} figurines" if g == t else
               f"the {n:,} {g.lower()} {t} figurines" if re.match(r"(?i)(unprovenanced|unknown)$", g) else
               f"the {n:,} {t} figurines from {g}")
        rows = list(part.sort_values("share", ascending=False).itertuples())
        shares = [f"{_range(r)} follow {r.source} models" for r in rows]
        lead = f"Of {whose + ' ' if whose else ''}{who}, an estimated "
        overlap = (f" The ranges of {rows[0].source} and {rows[1].source} overlap: neither is clearly the larger."
                   if len(rows) > 1 and rows[1].ci_high >= rows[0].ci_low else "")
        out[g] = (lead + ", ".join(shares[:-1]) + (" and " if len(shares) > 1 else "") + shares[-1] + "." + overlap
                  + care)
    return out


def brief(result: dict) -> dict[str, str]:
    """Each group's shares in short words, largest first: "mostly A 56% (52–68%); B 30% (16–42%)". "Mostly"
    only where the whole range is above half, "most of all" where it is above the next source's, else the first
    is "not clearly more than" the next, as `influence.reading` says it."""
    out = {}
    for g, part in result["table"].groupby("group", sort=False):
        if part["shown"].all():
            rows = list(part.sort_values("share", ascending=False).itertuples())
            first = rows[0]
            clear = len(rows) < 2 or rows[1].ci_high < first.ci_low
            said = [f"{r.source} {pct(r.share)} ({pct(r.ci_low)}–{pct(r.ci_high)})" for r in rows]
            if first.ci_low > 0.5:
                said[0] = "mostly " + said[0]
            elif clear:
                said[0] = "most of all " + said[0]
            else:
                said[0] += f", not clearly more than {rows[1].source}"
            out[g] = "; ".join(said)
    return out


def lead_words(result: dict) -> str:
    """The verdict in one plain sentence: what the numbers are good for, and why."""
    v = result["verdict"]
    words = v.get("words") or v["reasons"]
    if v["level"] == "withheld":
        return "Cannot tell yet: " + "; ".join(words) + "."
    if v["level"] == "caution":
        return "Read these shares with care: " + "; ".join(words) + "."
    c, w = result["self_check"], result["self_check"].get("shift", {})
    held = f"the 95% ranges held the answer {pct(c['coverage'])} of the time"
    if w.get("allowance"):  # the ranges shown are widened: say what they, not the bootstrap's, achieved
        held = (f"the ranges shown, each widened by {pct(w['allowance'])} on each side to allow for that test, held "
                f"the answer {pct(w['coverage_widened'])} of the time")
    return (f"These shares can be read as estimates: tested on mixtures of the source photographs with a known "
            f"answer, they were off by {pct(c['mae'])} on average, and {held}.")


def merged_conditioning(confusion: np.ndarray, counts: np.ndarray, a: int, b: int) -> float:
    """How well the classifier tells the sources apart (the confusion matrix's smallest singular value) with
    sources a and b read as one: their predictions summed, their columns averaged by their numbers."""
    c = np.asarray(confusion, float)
    keep = [i for i in range(len(c)) if i not in (a, b)]
    rows = np.vstack([c[keep], c[[a, b]].sum(0)])
    w = np.asarray(counts, float)[[a, b]]
    cols = np.column_stack([rows[:, keep], rows[:, [a, b]] @ (w / w.sum())])
    return float(np.linalg.svd(cols, compute_uv=False).min())


def options(results: dict[str, dict], name: str) -> list[dict]:
    """What could help where a reading is withheld, each with its measured figure: the same photographs in
    another representation, and, where two sources are confused, those two read as one. `merge` names the
    sources to read as one where that is offered."""
    r = results[name]
    out = []
    for other, o in results.items():
        if other != name and not o["table"].empty:
            out.append({"what": f"Read in the {EMBEDDINGS[other]} instead",
                        "measured": f"there, {VERDICT[o['verdict']['level']]}"
                                    + (f": {'; '.join(o['verdict'].get('words') or o['verdict']['reasons'])}"
                                       if o["verdict"]["level"] != "good" else ""),
                        "helps": o["verdict"]["level"] != "withheld"})
    sources, counts = r["sources"], r.get("source_counts")
    if r["conditioning"] < MIN_CONDITIONING and len(sources) > 2 and counts:
        n = np.array([counts[s] for s in sources])
        pairs = [(merged_conditioning(r["confusion"], n, a, b), a, b)
                 for a in range(len(sources)) for b in range(a + 1, len(sources))]
        best, a, b = max(pairs)
        out.append({"what": f"Read {sources[a]} + {sources[b]} as one source",
                    "measured": f"the other sources would then be told apart at {best:.2f} (the tool needs "
                                f"{MIN_CONDITIONING}; now {r['conditioning']:.2f}), measured on the classifier's "
                                f"own cross-validated confusion",
                    "helps": best >= MIN_CONDITIONING, "merge": (sources[a], sources[b])})
    more = more_photographs(r)
    if more:
        out.append(more)
    return out


def more_photographs(r: dict) -> dict | None:
    """How many more photographs of each source would let the tool tell them apart, extrapolated from how the
    conditioning grew from half to all of the source photographs (a rough guide: c(n) = limit - k / sqrt(n))."""
    g, counts = r.get("learning"), r.get("source_counts") or {}
    if not g:
        return None
    few = {s: n for s, n in counts.items() if n < FEW}
    if few:
        return {"what": "More photographs", "helps": True,
                "measured": f"{', '.join(f'{s} has only {n}' for s, n in few.items())}: at least {FEW} photographs "
                            f"of each source are needed before the tool can tell them apart or measure how far more "
                            f"would help"}
    f, c = np.asarray(g["fractions"]), np.asarray(g["conditioning"])
    k, limit = np.polyfit(-1 / np.sqrt(f), c, 1)  # c = limit - k / sqrt(f), in multiples of today's photographs
    seen = (f"measured: told apart at {c[0]:.2f} with half of the source photographs and {c[-1]:.2f} with all "
            f"(the tool needs {MIN_CONDITIONING})")
    if k <= 0 or limit <= MIN_CONDITIONING:
        return {"what": "More photographs like these", "helps": False,
                "measured": f"unlikely to be enough on their own; {seen}. Photographs that show what sets the "
                            f"cultures apart (other views, the same backdrop) may help more"}
    times = (k / (limit - MIN_CONDITIONING)) ** 2
    how = (f"about {times:.1f} times as many photographs of each source culture"
           + (f" (some {', '.join(f'{round(counts[s] * (times - 1)):,} more {s}' for s in r['sources'])})"
              if counts else "") if times <= 10 else "more than ten times as many photographs")
    return {"what": "More photographs", "helps": times <= 10,
            "measured": f"{how}, by a rough extrapolation; {seen}"}


def methods(results: dict[str, dict], name: str, config: dict, run_name: str,
            settings: InfluenceSettings = InfluenceSettings()) -> str:
    """A paragraph for a paper's methods section, with the run's figures filled in."""
    r, s = results[name], config.get("effective", {})
    t, target = r["table"], r["target"]
    counts = r.get("source_counts") or {}
    groups = t.drop_duplicates("group")
    sites = [f"{g.group} ({g.n:,})" for g in groups.itertuples() if g.group != target]
    n_target = int(groups.loc[groups["group"] == target, "n"].iloc[0])
    c, v = r["self_check"], r["verdict"]
    space = {"descriptor": f"a descriptor space ({describe_space(settings)})",
             "aae": "the adversarial autoencoder's 2-D latent space",
             "umap": "a 2-D UMAP embedding (McInnes et al. 2018) of the same photographs"}[name]
    moved = c.get("shift") if r["shift"]["apart"] and v["level"] != "withheld" else None
    wide = c.get("shift", {}).get("allowance") if v["level"] != "withheld" else None
    equals = [EMBEDDINGS[n] for n, o in results.items() if n != name and not o["table"].empty
              and o["verdict"]["level"] == v["level"]]
    chosen = (f", chosen because its reading passed the tool's checks as well as the readings in the "
              f"{' and the '.join(equals)} did, and the tool reads the AAE latent, the UMAP baseline and the "
              "descriptor space in that order among equals" if equals else
              ", chosen because its reading passed the tool's checks best")
    text = [
        f"We analysed photographs of {sum(counts.values()) + n_target:,} figurines: "
        + ", ".join(f"{counts[s]:,} {s}" for s in r["sources"] if s in counts)
        + f" figurines as sources, and {n_target:,} {target} figurines"
        + (f" from {len(sites)} find-sites ({', '.join(sites)})" if sites else "") + ".",
        f"An adversarial autoencoder (Makhzani et al. 2015) was trained for {s.get('epochs', '?')} "
        f"epoch{'' if s.get('epochs') == 1 else 's'} on "
        f"{s.get('image_size', '?')} px images into a {s.get('latent_dim', 2)}-D latent space matched to a Gaussian "
        f"prior (standard deviation {s.get('prior_std', '?')}), on {config.get('device', 'an unrecorded device')}; "
        "its map and a UMAP baseline were used to explore the collection.",
        f"The shares were read in {space}"
        + (chosen if v["level"] != "withheld" else "")
        + ". A "
        f"logistic-regression classifier was fitted to the source figurines and its output for each group was "
        f"corrected for its own confusion between the sources by EM re-estimation of class priors (Saerens, "
        f"Latinne and Decaestecker 2002). 95% intervals come from {settings.n_boot} bootstrap resamples of the "
        f"source figurines and of each group, refitting the classifier each time"
        + (f", widened by {wide:.2f} on each side, the least that holds the known shares of the test mixtures "
           f"(below) 95% of the time" + (f", moved as far from the sources as the {target} figurines sit, which differ "
                             f"measurably from every mixture of them" if moved else "") if wide else "") + ".",
    ]
    if settings.merge:
        text.append(f"{' and '.join(settings.merge)} figurines were read as one source, the tool being unable to "
                    f"tell them apart in this collection.")
    if "mae" in c:
        text.append(f"Tested on {c['groups']} mixtures of held-out source photographs with known shares "
                    f"({c['folds']}-fold cross-fitting), the estimates were off by {c['mae']:.3f} "
                    f"(standard error {c['mae_se']:.3f}) on average, and the bootstrap's 95% intervals contained "
                    f"the true share {c['coverage']:.0%} of the time"
                    + (f", the widened ones {c['shift']['coverage_widened']:.0%}" if wide else "") + ".")
    reasons = v.get("words") or v["reasons"]
    text.append(f"Verdict: {VERDICT[v['level']]}" + (f" ({'; '.join(reasons)})" if reasons else "") + ".")
    text.append(f"Software: {software()}, run {run_name}; the run's settings are attached.")
    return " ".join(text)


def with_settings(paragraph: str, config: dict) -> str:
    """The methods paragraph as a file: the paragraph, then the settings the run used and the library versions."""
    import json

    return (paragraph + "\n\nSettings the run used:\n" + json.dumps(config.get("effective", {}), indent=2)
            + "\n\nLibrary versions:\n" + json.dumps(config.get("versions", {}), indent=2) + "\n")
