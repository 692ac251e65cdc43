"""Latent quality: the AAE variants against the UMAP and PCA-50 baselines, on the same figurines and folds.

    python bench/quality.py [--data FOLDER ...] [--backdrops] [--variants fast unaugmented guided] [--epochs N]
                            [--seeds 0 1] [--device auto|cpu|cuda] [--image-size N] [--out DIR] [--no-write]

Each (variant, seed) is trained through the engine (`core.fit.fit_run`, timed from a decoded cache) and
encoded. Per run: balanced 10-NN culture accuracy (all cultures, and the sources alone) of the AAE codes, of
the run's UMAP baseline and of the 50-D PCA space (`core.diagnostics.knn_accuracy`: the same folds; for a
guided run all three only on the figurines whose labels it did not see; a local run's AAE, told which are
targets, only among the sources), trustworthiness against the PCA space, the shares of the photographs' codes
within 1, 2 and 3 prior sd beside the shares the run's own prior puts there and a classifier two-sample test
against the prior's draws (`core.diagnostics.prior_of`), the mean reconstruction error and the training time.
On a collection drawn by `core.demo`: the targets beside their source (a label no run sees); on one drawn on
varied backdrops, how well a 10-NN classifier tells each photograph's backdrop from the codes. Prints a Markdown
table per collection, writes the raw numbers to OUT/quality.json and, unless --no-write, the section
`quality-<cpu|gpu>-<data>` of bench/RESULTS.md. The default data is the demo, drawn at 64 px if missing;
--backdrops adds the second collection on five kinds of backdrop (`core demo --collection varied`), drawn into
OUT if missing.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.run import RESULTS, machine, table, write_section  # noqa: E402
from core.cli import printable  # noqa: E402
from core.errors import UserError  # noqa: E402

# variant -> (preset, Settings overrides). `paper` is for a GPU (about 15 hours on a 2-core CPU).
PLAIN = {"local": False, "neighbours": False}  # the fast preset as it was before these joined it (2026-12-01)
# Every variant but `fast` trains without the prior's shape, as each did when measured (before 2026-12-04's third
# entry); `no-shape` is the fast preset as it was then.
VARIANTS = {
    "fast": ("fast", {}),
    "no-shape": ("fast", {"shape": 0.0}),
    "photographs-matched": ("fast", {"matched": "photographs", "looks": "pixels"}),
    "photographs-matched-plain": ("fast", {"matched": "photographs", "neighbours": False}),
    "descriptor-looks": ("fast", {"looks": "descriptors"}),
    "pixel-looks": ("fast", {"looks": "pixels"}),  # look-alikes as judged before 2026-12-04
    "flatten-pixel-looks": ("fast", {"background": "flatten", "looks": "pixels"}),  # the fast preset before then
    "descriptor-looks-matched": ("fast", {"looks": "descriptors", "matched": "photographs"}),
    "flatten": ("fast", {"background": "flatten"}),  # backdrops as handled before 2026-12-04
    "augmented": ("fast", PLAIN),
    "local": ("fast", {"neighbours": False}),
    "neighbours": ("fast", {"local": False}),
    "local-balanced": ("fast", {"balanced": True, "neighbours": False}),
    "unaugmented": ("fast", {"augment": False, **PLAIN}),
    "wide": ("fast", {"width": 32, **PLAIN}),
    "balanced": ("fast", {"balanced": True, **PLAIN}),
    "guided": ("fast", {"guided": True, **PLAIN}),
    "guided-unaugmented": ("fast", {"guided": True, "augment": False, **PLAIN}),
    "guided-balanced": ("fast", {"guided": True, "balanced": True, **PLAIN}),
    "colour": ("fast", {"style": "colour", **PLAIN}),
    "clusters": ("fast", {"clusters": 4, **PLAIN}),
    "guided-clusters": ("fast", {"clusters": 3, "guided": True, **PLAIN}),
    "unaugmented-clusters": ("fast", {"clusters": 4, "augment": False, **PLAIN}),
    "paper": ("paper", {}),
}
SPACES = {"aae": "AAE", "umap": "UMAP", "pca": "PCA-50"}


def train(data: Path, run_dir: Path, variant: str, **given) -> dict:
    """Train and encode one run of a variant (`given`: settings from the command line, None for the preset's);
    its settings, the training's wall-clock seconds (the images decoded before the clock starts) and the
    median epoch's."""
    from core.dataset import load
    from core.embed import encode_run
    from core.settings import Settings
    from core.fit import fit_run

    preset, overrides = VARIANTS[variant]
    overrides = overrides if variant == "fast" else {"shape": 0.0, **overrides}
    s = Settings.from_preset(preset, **{**overrides, **{k: v for k, v in given.items() if v is not None}})
    ds = load(data, s.image_size, s.effective().background)
    print(f"{variant}, seed {s.seed}: training into {run_dir}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    run = fit_run(str(run_dir), s, str(data),
                  on_epoch=lambda row: print(f"  epoch {row['epoch']}/{s.epochs}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    state = run.status()
    if state["state"] != "done":
        raise UserError(f"run {run_dir} ended {state['state']}: {state.get('message', '')}")
    encode_run(run_dir)
    return {"variant": variant, "run_dir": str(run_dir), "preset": preset, "overrides": overrides,
            "epochs": s.epochs, "image_size": s.image_size, "images": len(ds.items), "train_s": seconds,
            "s_per_epoch": float(run.metrics()["seconds"].median())}


def measure(run_dir: Path) -> dict:
    """The run's quality figures; every accuracy on the figurines whose labels the run did not see, over all
    cultures and over the source cultures alone (the demo's targets are drawn from the sources' styles)."""
    from core.diagnostics import for_run, knn_accuracy
    from core.embed import spaces
    from core.influence import seen_by
    from core.labels import target_culture
    from core.runs import Run

    d = for_run(run_dir)
    enc, emb = spaces(run_dir)
    config = Run(run_dir).config()
    keep = ~seen_by(config, enc)
    y = enc["culture"][keep].to_numpy()
    src = y != target_culture(enc["culture"], enc["site"])
    told = config["effective"].get("local")  # a local run was told which are targets: no all-culture figure
    return {"figurines": int(keep.sum()),
            "beside": beside(config["data"], enc[keep], {n: emb[n][keep] for n in SPACES}),
            "backdrop": backdrop_told(config["data"], enc[keep], {n: emb[n][keep] for n in SPACES}),
            "accuracy": {n: float("nan") if told and n == "aae" else knn_accuracy(emb[n][keep], y)
                         for n in SPACES},
            "source_accuracy": {n: knn_accuracy(emb[n][keep][src], y[src]) for n in SPACES},
            "trustworthiness": {n: d["quality"][n]["trustworthiness"] for n in ("aae", "umap")},
            "within_sd": [d["prior"]["within_sd"][k] for k in (1, 2, 3)],
            "prior_within_sd": [d["prior"]["expected_within_sd"][k] for k in (1, 2, 3)],
            "c2st": d["prior"]["c2st_accuracy"],
            "recon_error": d["recon_error"], "diagnostics": d}


def drawn_styles(data: str, enc) -> np.ndarray | None:
    """On a collection drawn by `core.demo`: for each target figurine of `enc` (path, culture, site), the source
    whose style the generator drew it in (None where it drew none); None for other data."""
    from core.demo import COLLECTIONS, drawn_style
    from core.labels import is_target

    try:
        truth = json.loads((Path(data) / "truth.json").read_text())
        seed = truth["seed"]
        collection = next(c for c in COLLECTIONS.values() if c.target == truth.get("collection", c.target))
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None
    target = is_target(enc)
    drawn = [drawn_style(p, s, seed, collection) for p, s in zip(enc["path"][target], enc["site"][target])]
    return np.array([collection.names[d] if d else None for d in drawn], object)


def beside(data: str, enc, emb: dict) -> dict | None:
    """On a collection drawn by `core.demo` (the demo, the second collection): per space, the balanced accuracy
    with which a 10-NN classifier of the source figurines places its target figurines with the source whose
    style the generator drew them in: how far the map puts each target figurine beside its own models, a label
    no run sees. None for other data."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    from core.labels import is_target

    style = drawn_styles(data, enc)
    known = None if style is None else np.array([d is not None for d in style], bool)
    if known is None or not known.any():
        return None
    target = is_target(enc)
    y = enc["culture"].to_numpy()[~target]
    return {n: float(balanced_accuracy_score(style[known], KNeighborsClassifier(10).fit(x[~target], y).predict(
        x[target][known]))) for n, x in emb.items()}


def backdrop_told(data: str, enc, emb: dict) -> dict | None:
    """On a collection drawn on several kinds of backdrop: per space, the balanced 10-NN accuracy of telling each
    photograph's backdrop from its place (chance: one over the kinds, under `"chance"`). None for other data."""
    from core.demo import drawn_backdrop
    from core.diagnostics import knn_accuracy

    try:
        truth = json.loads((Path(data) / "truth.json").read_text())
        kinds, seed = truth["backdrops"], truth["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(kinds) < 2:
        return None
    y = np.array([drawn_backdrop(p, seed, kinds) for p in enc["path"]], object)
    return {"chance": 1 / len(kinds), **{n: knn_accuracy(x, y.astype(str)) for n, x in emb.items()}}


def rows(r: dict, seed) -> list[list]:
    """One table row per space for a run's figures (or their mean over seeds)."""
    out = []
    for n, label in SPACES.items():
        aae = n == "aae"
        trust = r["trustworthiness"].get(n)
        out.append([r["variant"] if aae else "", seed if aae else "", label, r["figurines"], r["accuracy"][n],
                    r["source_accuracy"][n], r["beside"][n] if r.get("beside") else "",
                    r["backdrop"][n] if r.get("backdrop") else "",
                    "(reference)" if trust is None else trust,
                    " / ".join(f"{w:.0%}" for w in r["within_sd"]) + " (" + " / ".join(
                        f"{w:.0%}" for w in r["prior_within_sd"]) + ")" if aae else "",
                    r["c2st"] if aae else "",
                    r["recon_error"] if aae else "", r["train_s"] if aae else "", r["s_per_epoch"] if aae else ""])
    return out


def mean(results: list[dict]) -> dict:
    """The figures of several seeds of one variant, averaged."""
    def avg(key, sub=None) -> float:  # NaN where every seed's is (a local run's all-culture figure)
        v = np.array([r[key][sub] if sub is not None else r[key] for r in results], float)
        return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan

    return {"variant": results[0]["variant"], "figurines": round(avg("figurines")),
            "accuracy": {n: avg("accuracy", n) for n in SPACES},
            "source_accuracy": {n: avg("source_accuracy", n) for n in SPACES},
            "beside": {n: avg("beside", n) for n in SPACES} if all(r.get("beside") for r in results) else None,
            "backdrop": {n: avg("backdrop", n) for n in ("chance", *SPACES)} if all(r.get("backdrop") for r in results)
            else None,
            "trustworthiness": {n: avg("trustworthiness", n) for n in ("aae", "umap")},
            **{k: [avg(k, i) for i in range(3)] for k in ("within_sd", "prior_within_sd")},
            **{k: avg(k) for k in ("c2st", "recon_error", "train_s", "s_per_epoch")}}


def finite(obj):
    """obj with NaN and infinities as None: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def section(data: Path, results: list[dict], a, gpu: bool, command: str, when: datetime) -> str:
    """The Markdown section of one collection's runs."""
    body = []
    for variant in a.variants:
        mine = [r for r in results if r["variant"] == variant]
        body += [row for r in mine for row in rows(r, r["seed"])]
        if len(mine) > 1:
            body += rows(mean(mine), "mean")
    chance = next((r["backdrop"]["chance"] for r in results if r.get("backdrop")), None)
    tab = table(["variant", "seed", "space", "figurines", "10-NN accuracy", "sources only",
                 "targets beside their source", "backdrop told" + (f" (chance {chance:.2f})" if chance else ""),
                 "trustworthiness", "codes within 1 / 2 / 3 sd (the prior's own)", "told from prior draws",
                 "recon error", "training (s)", "s / epoch"], body)
    epochs = sorted({r["epochs"] for r in results})
    sizes = sorted({r["image_size"] for r in results})
    return (
        f"## Latent quality on {data.name} ({'GPU' if gpu else 'CPU'}, {when:%Y-%m-%d %H:%M} UTC)\n\n"
        f"{machine(a.device)}\n- Data: {data} ({results[0]['images']:,} images at "
        f"{', '.join(map(str, sizes))} px), {', '.join(map(str, epochs))} epochs, seeds "
        f"{', '.join(map(str, a.seeds))}\n- Command: `python bench/quality.py {command}`"
        f"\n\n{tab}\n\nBalanced 10-NN culture accuracy by 5-fold cross-validation, the same folds in every space, over "
        "all cultures and over the source cultures alone; for a guided run, in every space only on the figurines "
        "whose labels it did not see (`figurines`); a local run's AAE, told which figurines are targets, has no "
        "all-culture figure (nan). Targets beside their source (collections drawn by `core.demo`): the balanced "
        "accuracy with which a 10-NN classifier of the source figurines places each target figurine with the "
        "source the generator drew it after, a label no run sees. Backdrop told (a collection on varied "
        "backdrops): balanced 10-NN accuracy of telling each photograph's backdrop from its place. "
        "Trustworthiness: of the 10 nearest neighbours, against the 50-D PCA space (on at most 2,000 of them, "
        "drawn at random). The photographs' codes within 1, 2 and 3 prior sd, "
        "beside the shares the run's own prior puts there, and how well a classifier tells them from the prior's "
        "draws (0.50: it cannot, as it should be; issue 25's bar: at most 0.65). Reconstruction error: mean "
        "squared, in the model's [-1, 1] pixel units. Training: wall-clock from a decoded cache; s / epoch: the "
        "median epoch, which other work on the machine moves less.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", help="dataset folders (default: the demo, drawn at 64 px if missing)")
    p.add_argument("--backdrops", action="store_true",
                   help="also the second collection on five kinds of backdrop, drawn into --out if missing")
    p.add_argument("--variants", nargs="+", default=["fast", "unaugmented", "guided"], choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, help="default: each preset's")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--image-size", type=int, help="default: each preset's")
    p.add_argument("--out", help="runs and quality.json (default: a new temporary folder)")
    p.add_argument("--no-write", action="store_true", help="do not write the sections of bench/RESULTS.md")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    from core import demo, paths
    from core.devices import pick_device
    from core.runlog import TrainingFailed

    try:
        out = Path(a.out or tempfile.mkdtemp(prefix="figurines-quality-")).resolve()
        datas = [Path(d).expanduser().resolve() for d in a.data] if a.data else [demo.ensure(paths.DEMO, 64)]
        if a.backdrops:
            varied = out / "varied"
            if not (varied / "truth.json").is_file():
                demo.generate(varied, 64, seed=1, collection=demo.VARIED)
            datas.append(varied)
        gpu = pick_device(a.device).type == "cuda"
        results = {}
        for data in datas:
            for variant in a.variants:
                for seed in a.seeds:
                    run_dir = out / data.name / f"{variant}-{seed}"
                    r = train(data, run_dir, variant, epochs=a.epochs, seed=seed, device=a.device,
                              image_size=a.image_size)
                    results.setdefault(data, []).append({**r, "seed": seed, **measure(run_dir)})
    except UserError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"training failed: {printable(e)}", file=sys.stderr)
        return 1

    when = datetime.now(timezone.utc)
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    raw = {"date": when.isoformat(), "device": a.device, "gpu": gpu, "seeds": a.seeds,
           "collections": {str(d): r for d, r in results.items()}}
    (out / "quality.json").write_text(json.dumps(finite(raw), indent=1))
    for data, mine in results.items():
        text = section(data, mine, a, gpu, command, when)
        print(text + "\n")
        if not a.no_write:
            key = f"quality-{'gpu' if gpu else 'cpu'}-{re.sub(r'[^a-z0-9]+', '-', data.name.lower()).strip('-')}"
            write_section(Path(a.results), key, text)
            print(f"wrote the section {key} of {a.results}", file=sys.stderr)
    print(f"raw numbers: {out / 'quality.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
