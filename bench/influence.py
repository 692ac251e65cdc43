"""Influence estimates against the demo's known answer, per training variant and seed, through the CLI.

    python bench/influence.py --out /tmp/influence [--variants default form unaugmented colour guided] [--seeds 0 1] [--epochs 30]

For each (variant, seed): demo -> train (fast preset: `default` as it is, the others as VARIANTS change it) ->
influence --json, then the error of every site's
shares against `truth.json`, how many of the 24 true values lie inside the bootstrap's own 95% interval
(`sampling_ci`) and inside the interval shown (a withheld reading shows [0, 1]), the self-check's error and
coverage, the domain shift, the known mixtures moved as far (their error, and the widening of the intervals),
the conditioning and the verdict, per space. Prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("aae", "umap", "descriptor")
PLAIN = ["--no-local", "--no-neighbours"]  # the fast preset as it was before these joined it (2026-12-01)
VARIANTS = {"default": [], "neighbours": ["--no-local"], "local": ["--no-neighbours"],
            "local, balanced": ["--no-neighbours", "--balanced"],
            "colour": ["--style", "colour", *PLAIN], "form": ["--style", "form", *PLAIN],
            "unaugmented": ["--style", "form", "--no-augment", *PLAIN], "guided": ["--style", "form", "--guided", *PLAIN],
            "guided, unaugmented": ["--style", "form", "--guided", "--no-augment", *PLAIN],
            "guided, balanced": ["--style", "form", "--guided", "--balanced", *PLAIN],
            "balanced": ["--style", "form", "--balanced", *PLAIN]}


def cli(*args) -> str:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, check=True, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout


def score(result: dict, truth: dict) -> dict:
    """Error and coverage of one space's estimates over the (site, source) values truth.json gives."""
    err, sampled, shown, width = [], 0, 0, []
    for site, weights in truth.items():
        for source, known in weights.items():
            e = result[site][source]
            err.append(abs(e["share"] - known))
            sampled += e["sampling_ci"][0] <= known <= e["sampling_ci"][1]
            shown += e["shown"] and e["ci"][0] <= known <= e["ci"][1]
            width.append(e["ci"][1] - e["ci"][0])
    return {"mae": sum(err) / len(err), "sampled": sampled, "shown": shown, "n": len(err),
            "width": sum(width) / len(width)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--descriptors", nargs="+", default=["hog:64"],
                   help="descriptor spaces to read in, as KIND:SIZE (hog, pixels, backbone: random weights, timing only)")
    p.add_argument("--collection", choices=["demo", "second"], default="demo",
                   help="the demo, or the second collection drawn unlike it (core demo --collection second --seed 1)")
    a = p.parse_args()
    out = Path(a.out)
    os.environ.setdefault("FIGURINES_CACHE", str(out / "cache"))
    os.environ["FIGURINES_DATA_ROOTS"] = os.pathsep.join(  # the backbone's weights file lies in `out`
        [str(out.resolve()), *filter(None, os.environ.get("FIGURINES_DATA_ROOTS", "").split(os.pathsep))])
    data = out / a.collection
    if not (data / "truth.json").is_file():
        cli("demo", "--out", data, "--size", a.size, "--collection", a.collection,
            *(["--seed", 1] if a.collection == "second" else []))
    truth = json.loads((data / "truth.json").read_text())["sites"]
    weights = out / "random-resnet50.pt"  # timing only: a backbone's quality with random weights means nothing
    if any(d.startswith("backbone") for d in a.descriptors) and not weights.is_file():
        import torch
        import torchvision

        torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    print(f"{a.collection} at {a.size} px, fast preset, {a.epochs} epochs on {a.device}\n")
    print("| variant | seed | space | error vs truth | truth in bootstrap CI | truth in shown CI | shown CI width | "
          "self-check error / coverage | apart (AUC / null 95%) | moved as far: error / widened by | conditioning | "
          "reading | first reading (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in a.variants:
        for seed in a.seeds:
            run = out / f"{a.collection}-{variant.replace(', ', '-')}-{seed}"
            if not (run / "model.pt").is_file():
                cli("train", "--data", data, "--run-dir", run, "--preset", "fast", "--epochs", a.epochs,
                    "--image-size", a.size, "--device", a.device, "--seed", seed, *VARIANTS[variant])
            for d in a.descriptors:
                kind, size = d.split(":")
                extra = ["--weights", weights] if kind == "backbone" else []
                start = time.time()
                res = json.loads(cli("influence", "--run-dir", run, "--json", "--descriptor", kind,
                                     "--descriptor-size", size, *extra))
                took = time.time() - start
                shown = [sp for sp in SPACES if sp in res]
                lead = next((sp for level in ("good", "caution") for sp in shown
                             if res["checks"][sp]["verdict"]["level"] == level), "aae")
                for space in shown if d == a.descriptors[0] else ["descriptor"]:
                    s, c = score(res[space], truth), res["checks"][space]
                    sc, shift = c["self_check"], c["domain_shift"]
                    moved = (f"{sc['shift']['mae']:.3f} / {sc['shift']['allowance']:.2f}" if "shift" in sc
                             else "not run (withheld)")
                    name = f"{space} ({d})" if space == "descriptor" else space
                    print(f"| {variant} | {seed} | {name}{' (lead)' if space == lead else ''} | {s['mae']:.3f} | "
                          f"{s['sampled']} / {s['n']} | {s['shown']} / {s['n']} | {s['width']:.2f} | "
                          f"{sc.get('mae', float('nan')):.3f} / {sc.get('coverage', 0):.0%} | "
                          f"{shift['auc']:.2f} / {shift['alarm']:.2f} | {moved} | {c['conditioning']:.2f} | "
                          f"{c['verdict']['level']} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
