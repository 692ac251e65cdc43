"""`python -m core demo|scan|train|encode|relink|clear-status|influence`: the headless face of the engine.

A user's mistake prints one line on stderr and exits with status 2; a run that diverges exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from .errors import UserError
from .settings import PRESETS, RESUMABLE, Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UserError(f"{message} (see {self.prog} --help)")


@contextmanager
def _bar(desc: str):
    """progress(done, total) callbacks drawn as a tqdm bar, opened on the first call, closed when done."""
    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=desc, total=total, unit="img", file=sys.stderr, dynamic_ncols=True))
        bars[0].n = done
        bars[0].refresh()
        if done >= total:
            bars[0].close()

    try:
        yield update
    finally:
        for b in bars:
            b.close()


@contextmanager
def _steps():
    """progress(step, fraction) callbacks drawn as one tqdm bar in percent, its description the current step."""
    bar = tqdm(total=100, file=sys.stderr, dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}|",
               disable=None)

    def update(step: str, fraction: float) -> None:
        bar.set_description_str(step, refresh=False)
        bar.n = round(100 * min(max(fraction, 0.0), 1.0))
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def cmd_demo(a) -> int:
    from .demo import COLLECTIONS, generate

    with _bar("drawing figurines") as progress:
        truth = generate(a.out, size=a.size, scale=a.scale, seed=a.seed, progress=progress,
                         collection=COLLECTIONS[a.collection])
    total = sum(truth["counts"].values())
    print(printable(f"wrote {total} demo images ({a.size} px) and truth.json to {a.out}"))
    return 0


def cmd_scan(a) -> int:
    from .dataset import load, no_images
    from .labels import doubts, roles

    with _bar("decoding") as progress:
        ds = load(a.data, a.image_size, progress=progress, require_images=False)
    counts = ds.counts().astype({"culture": str, "site": str})
    counts[["culture", "site"]] = counts[["culture", "site"]].map(printable)
    print(f"{printable(ds.root)}: {len(ds.items)} readable images, {len(ds.unreadable)} unreadable")
    print(counts.to_string(index=False) if len(counts) else "(no readable images)")
    problems = ds.metadata_problems
    if problems:
        print(f"metadata.csv: {problems} row(s) not used or not matched: see below")
    if len(ds.unreadable):
        print("\nunreadable files" + (", and problems in metadata.csv:" if problems else ":"))
        for r in ds.unreadable.itertuples():
            print(f"  {printable(r.path)}: {printable(r.reason)}")
    if not len(ds.items):
        raise no_images(ds)
    target, sources, _ = roles(ds.items)
    print(printable(f"asked about: {target}; compared with: {', '.join(sources) or 'no other culture'}"))
    for doubt in doubts(ds.items):
        print(printable(f"note: {doubt}"))
    return 0


def cmd_train(a) -> int:
    from .fit import fit_run
    from .runs import Run

    given = settings_given(a)
    if not a.resume:
        Run(a.run_dir).check_new()  # before decoding: a folder that is neither new, empty nor a run is refused
    else:
        Run(a.run_dir).require_idle()  # says how to clear a status this machine cannot check
    if a.resume:
        Settings.from_preset("fast", **given)  # validate the overrides
        fixed = [flag(k) for k in given if k not in RESUMABLE] + (["--settings"] if a.settings else [])
        if fixed:
            raise UserError(f"--resume continues a run with its own settings; only "
                            f"{' and '.join(map(flag, RESUMABLE))} can change (not {', '.join(fixed)})")
        settings, overrides = None, given
    elif not a.data:
        raise UserError("--data is required for a new run (or use --resume)")
    elif a.settings:
        try:
            stored = _settings_file(a.settings)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read the settings file {a.settings}: {e}") from None
        # a run's config.json, or a plain settings file
        make = Settings.from_run if "settings" in stored else Settings.from_dict
        stored = stored.get("settings", stored)
        settings, overrides = make({**stored, **given}), None
    else:
        settings, overrides = Settings.from_preset(a.preset or "fast", **given), None
    bars: dict = {}

    def on_batch(epoch: int, batch: int, n: int) -> None:
        bar = bars.get("train")
        if bar is None:
            if note := Run(a.run_dir).status().get("note"):  # what the folder's labels leave in doubt, say
                print(printable(f"note: {note}"), file=sys.stderr)
            total = (overrides or {}).get("epochs") or (settings.epochs if settings else None)
            bar = bars["train"] = tqdm(desc="training", unit="batch", file=sys.stderr, dynamic_ncols=True,
                                       total=total * n if total else None, initial=(epoch - 1) * n)
        bar.update(1)

    def on_epoch(row: dict) -> None:
        if "train" in bars:
            bars["train"].set_postfix(epoch=row["epoch"], recon=f"{row['recon_loss']:.4f}",
                                      disc_acc=f"{row['disc_acc']:.2f}", in3sd=f"{row['within_3sd']:.2f}")

    made = not a.resume and not Path(a.run_dir).exists()
    try:
        with _bar("decoding") as progress:
            run = fit_run(a.run_dir, settings, a.data, a.resume, overrides, on_batch, on_epoch, progress)
    except UserError:
        if made:  # refused before training (no images, say): the folder this command made goes again
            Run(a.run_dir).remove_if_unused()
        raise
    finally:
        if "train" in bars:
            bars["train"].close()
    st = run.status()
    print(printable(f"{run.dir}: {st['state']} - {st.get('message', '')}"))
    if a.encode and st["state"] == "done":
        return cmd_encode(a)
    return 0


def cmd_encode(a) -> int:
    from .embed import encode_run

    if a.command == "encode" and a.data:
        cmd_relink(a)
    with _bar("decoding") as progress:
        df = encode_run(a.run_dir, progress=progress, replace=a.command == "encode" and a.replace)
    if df.attrs.get("kept"):
        raise UserError(df.attrs["kept"])
    if df.attrs.get("changes"):
        print(printable(f"the dataset changed since the last encodings: {df.attrs['changes']}"))
    print(printable(f"wrote {len(df)} encodings to {a.run_dir}/encodings.parquet"))
    return 0


def cmd_relink(a) -> int:
    from .embed import relink

    change = relink(a.run_dir, a.data)
    print(printable(f"run {Path(a.run_dir).name} now reads its dataset from {Path(a.data).expanduser().resolve()}"
                    + (f"; there, compared with its encodings: {change}" if change else "")))
    return 0


def cmd_clear_status(a) -> int:
    from .runs import Run

    print(printable(Run(a.run_dir).require().clear_running()))
    return 0


def cmd_influence(a) -> int:
    from dataclasses import replace

    from . import influence
    from .embed import encode_run
    from .labels import doubts
    from .runs import Run

    if not 20 <= a.bootstrap <= 2000:
        raise UserError(f"--bootstrap must be between 20 and 2000, got {a.bootstrap}")
    settings = replace(influence.InfluenceSettings(), n_boot=a.bootstrap, descriptor=a.descriptor,
                       descriptor_size=a.descriptor_size, backbone=a.backbone, weights=a.weights or "",
                       merge=tuple(a.merge or ()))
    if not 16 <= a.descriptor_size <= 512:
        raise UserError(f"--descriptor-size must be between 16 and 512, got {a.descriptor_size}")
    enc = encode_run(a.run_dir)
    with _steps() as progress:
        results = influence.for_run(a.run_dir, settings, progress)
    for note in ([enc.attrs["kept"]] if enc.attrs.get("kept") else []) + doubts(enc):  # after a mistake's one line
        print(printable(f"note: {note}"), file=sys.stderr)
    if results["aae"]["table"].empty:
        raise UserError(results["aae"]["why"])
    if a.json:
        print(json.dumps(influence.as_json(results, settings)))
        return 0
    if a.paper:
        from .report import methods, sentences

        lead = influence.lead(results)
        for line in sentences(results[lead]).values():
            print(printable(line))
        run = Run(a.run_dir)
        print("\n" + printable(methods(results, lead, run.config(), run.name, settings)))
        return 0
    print(f"method: {settings.method}; {settings.n_boot} resamples of sources and groups")
    print(f"descriptor space: {influence.describe_space(settings)}")
    print("\nself-check (known mixtures of held-out source figurines) and checks:")
    print(f"  {'space':<16} {'error':>6} {'coverage':>9} {'groups':>7} {'apart (AUC)':>12} {'null 95%':>9} "
          f"{'moved: error':>13} {'widened':>8} {'conditioning':>13}  verdict")
    for name, r in results.items():
        c, moved = r["self_check"], r["self_check"].get("shift", {})
        print(f"  {influence.EMBEDDINGS[name]:<16} {c.get('mae', float('nan')):>6.3f} {c.get('coverage', float('nan')):>9.0%} "
              f"{c.get('groups', 0):>7} {r['domain_shift']:>12.2f} {r['shift']['alarm']:>9.2f} "
              f"{moved.get('mae', float('nan')):>13.3f} {moved.get('allowance', float('nan')):>8.2f} "
              f"{r['conditioning']:>13.2f}  {r['verdict']['level']}")
    print("  error and coverage: of the self-check's known mixtures, over that many groups; apart: how well the "
          "target figurines are told from the sources weighted to their mixture, in the classifier's log-odds; "
          "null 95%: the most that source figurines against other source figurines give in 95% of "
          f"{settings.null_draws} draws (apart above it: the targets are more than a mixture of the sources); "
          "moved: the known mixtures moved as far from the sources as the target figurines sit; widened: what "
          "every interval gains on each side to hold their answer (not run where the reading is withheld anyway); "
          f"conditioning: how far the classifier tells the sources apart (below {influence.MIN_CONDITIONING}: "
          "withheld)")
    if a.self_check:
        return 0
    truth = influence.known_answer(Run(a.run_dir).config().get("data", ""))
    for name, r in results.items():
        t = influence.with_known(r["table"], truth)
        print(f"\n{influence.EMBEDDINGS[name]}: share [95% interval]" + ("  known  error" if "known" in t else "")
              + ("  (withheld: cannot tell)" if r["verdict"]["level"] == "withheld" else ""))
        for row in t.itertuples():
            flag = "  (too few figurines)" if row.too_small else ""
            known = f"  {row.known:.2f}  {row.error:.2f}" if "known" in t and row.known == row.known else ""
            print(f"  {printable(row.group):<24} {printable(row.source):<34} {row.share:.2f} "
                  f"[{row.ci_low:.2f}, {row.ci_high:.2f}]{known}{flag}")
    lead = influence.lead(results)
    v = results[lead]["verdict"]
    print("\nthe reading: " + ("none, every representation's is withheld" if v["level"] == "withheld" else
                               f"the {influence.EMBEDDINGS[lead]}'s, which passes its checks best"
                               + (f" (the AAE latent's: {results['aae']['verdict']['level']})" if lead != "aae"
                                  else "")))
    for line in influence.reading(results[lead], printable):
        print(line)
    withheld = v["level"] == "withheld"
    for reason in v["reasons"][1:] if withheld else v["reasons"]:
        print(f"{'Also' if withheld else 'Read with care'}: {printable(reason)}.")
    return 0


def _settings_file(path: str) -> dict:
    """A JSON settings file (or a run's config.json) as an object; a FIFO, a device or a huge file is refused
    without being read."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"the settings file {printable(path)} is missing or not a regular file")
    if p.stat().st_size > 1_000_000:
        raise UserError(f"the settings file {printable(path)} is too large for a settings file (over 1 MB)")
    try:
        stored = json.loads(p.read_text())
    except RecursionError:
        raise ValueError("it is nested too deeply to be a settings file") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("settings", {}), dict):
        raise UserError(f"the settings file {printable(path)} must hold a JSON object of settings")
    return stored


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flagged() -> list:
    """The settings the CLI has a flag for (core.settings)."""
    return [f for f in fields(Settings) if f.metadata["flag"]]


def settings_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting, made from its metadata: its help, its choices or type, and each preset's value; a flag
    left out keeps the preset's (or the settings file's) value."""
    for f in flagged():
        m, kind = f.metadata, str(f.type).split(" |")[0]
        choices = m["choices"]
        text = m["help"] + ("" if not isinstance(choices, dict) else
                            " (" + "; ".join(f"{k}: {v}" for k, v in choices.items()) + ")")
        if f.name != "preset":
            each = {p: _shown(PRESETS[p].get(f.name, f.default)) for p in PRESETS}
            text = text.rstrip(".") + "; default: " + (next(iter(each.values())) if len(set(each.values())) == 1
                                                       else ", ".join(f"{p}: {v}" for p, v in each.items()))
        kw = {"action": argparse.BooleanOptionalAction} if kind == "bool" else \
            {"type": {"int": int, "float": float, "str": str}[kind], "choices": list(choices) if choices else None}
        p.add_argument(flag(f.name), help=text.replace("%", "%%"), **kw)


def settings_given(a: argparse.Namespace) -> dict:
    """The settings whose flags were given (all but --preset), by name."""
    return {f.name: getattr(a, f.name) for f in flagged() if f.name != "preset" and getattr(a, f.name) is not None}


def _shown(v) -> str:
    return {True: "on", False: "off", None: "none"}.get(v, str(v)) if isinstance(v, (bool, type(None))) else str(v)


def printable(text: str) -> str:
    """A name from a user's folder, with control characters escaped (no terminal sequences)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="Figurine latent-space explorer: the headless engine.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="generate the demo dataset with its ground truth",
                       description="Draw a collection of figurine photographs whose answer is known (truth.json).")
    d.add_argument("--out", required=True, help="folder to write the collection into (culture folders and truth.json)")
    d.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    d.add_argument("--scale", type=float, default=1.0, help="class sizes as a multiple of the study's")
    d.add_argument("--seed", type=int, default=0, help="another seed draws another collection of the same kind")
    d.add_argument("--collection", choices=["demo", "second", "varied", "related"], default="demo",
                   help="demo: the study's cultures and sizes; second: a collection drawn unlike it (three related "
                        "sources of similar sizes, four find-sites of 51, a weaker local making of another kind); "
                        "varied: the second collection photographed on five kinds of backdrop; related: the varied "
                        "collection's cultures drawn closer, sharing motifs (about as hard to tell apart as real "
                        "photographs)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("scan", help="counts per culture and site, unreadable files with reasons")
    s.add_argument("data")
    s.add_argument("--image-size", type=int, default=64, help="decode (and cache) at this size")
    s.set_defaults(func=cmd_scan)

    t = sub.add_parser("train", help="train an adversarial autoencoder into a run folder")
    t.add_argument("--data")
    t.add_argument("--run-dir", required=True)
    settings_flags(t)
    t.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    t.add_argument("--settings", help="a JSON file of settings, or another run's config.json; flags override it")
    t.add_argument("--encode", action="store_true", help="write the encodings when training finishes")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("encode", help="write RUN/encodings.parquet (AAE codes and the UMAP baseline)")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--data", help="the run's dataset folder, moved: relink the run to it first")
    e.add_argument("--replace", action="store_true",
                   help="encode the folder as it is now, even if files were removed since the last encodings")
    e.set_defaults(func=cmd_encode)

    r = sub.add_parser("relink", help="point a run at its moved dataset folder")
    r.add_argument("--run-dir", required=True)
    r.add_argument("--data", required=True, help="where the run's dataset folder is now")
    r.set_defaults(func=cmd_relink)

    c = sub.add_parser("clear-status", help="mark a run recorded as training on another machine as interrupted")
    c.add_argument("--run-dir", required=True)
    c.set_defaults(func=cmd_clear_status)

    i = sub.add_parser("influence", help="influence shares per group and source, with 95%% intervals")
    i.add_argument("--run-dir", required=True)
    i.add_argument("--json", action="store_true", help="one JSON object, as in DESIGN.md")
    i.add_argument("--self-check", action="store_true", help="only the self-check and the checks, as a table")
    i.add_argument("--bootstrap", type=int, default=200, help="resamples of sources and groups")
    i.add_argument("--descriptor", choices=["hog", "pixels", "backbone"], default="hog",
                   help="what the descriptor space describes each photograph by (default hog)")
    i.add_argument("--descriptor-size", type=int, default=64, help="the image size it is computed at (default 64)")
    i.add_argument("--backbone", choices=["resnet50", "convnext_tiny"], default="resnet50",
                   help="with --descriptor backbone: the pretrained network")
    i.add_argument("--weights", help="with --descriptor backbone: its weights file (inside the data roots), or "
                                     "'torchvision' to download torchvision's own (needs the network)")
    i.add_argument("--merge", nargs="+", metavar="CULTURE",
                   help="read these source cultures as one, where the tool cannot tell them apart")
    i.add_argument("--paper", action="store_true",
                   help="only the reading as sentences to quote and a paragraph for a paper's methods section")
    i.set_defaults(func=cmd_influence)
    return p


def main(argv: list[str] | None = None) -> int:
    from .runlog import TrainingFailed

    try:
        args = parser().parse_args(argv)
        return args.func(args)
    except UserError as e:
        print(f"error: {printable(e)}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"training failed: {printable(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
