import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from core import diagnostics, influence
from core.cli import main

A, B, C, T = "Source A", "Source B", "Source C", "Hellenistic Babylonian"


def cloud(rng, centre, n, sd=1.0):
    return rng.normal(centre, sd, (n, 2))


def frame(parts):
    """parts: (culture, site, points) -> embedding, cultures, sites."""
    emb = np.concatenate([p for _, _, p in parts])
    cultures = pd.Series(np.concatenate([[c] * len(p) for c, _, p in parts]))
    sites = pd.Series(np.concatenate([[s] * len(p) for _, s, p in parts]))
    return emb, cultures, sites


def test_a_group_among_one_source_gets_that_share():
    rng = np.random.default_rng(0)
    emb, cul, site = frame([(A, "", cloud(rng, [0, 0], 300)), (B, "", cloud(rng, [20, 0], 300)),
                            (C, "", cloud(rng, [0, 20], 300)), (T, "Uruk", cloud(rng, [20, 0], 80)),
                            (T, "Kish", cloud(rng, [0, 0], 80))])
    t = influence.estimate(emb, cul, site, n_boot=200)
    uruk = t[t.group == "Uruk"].set_index("source")
    assert uruk.loc[B, "share"] > 0.95 and uruk.loc[B, "energy_share"] > 0.5
    kish = t[t.group == "Kish"].set_index("source")
    assert kish.loc[A, "share"] > 0.95
    for _, part in t.groupby("group"):
        assert part["share"].sum() == pytest.approx(1) and part["energy_share"].sum() == pytest.approx(1)
    assert ((t["ci_low"] <= t["share"] + 1e-12) & (t["share"] <= t["ci_high"] + 1e-12)).all()


def test_intervals_shrink_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 600):
        emb, cul, site = frame([(A, "", cloud(rng, [0, 0], 300)), (B, "", cloud(rng, [2, 0], 300)),
                                (T, "Uruk", cloud(rng, [1, 0], n))])
        t = influence.estimate(emb, cul, site, n_boot=300).query("group == 'Uruk' and source == @A")
        widths.append(float(t["ci_high"].iloc[0] - t["ci_low"].iloc[0]))
    assert widths[1] < widths[0] / 2


def test_class_sizes_do_not_decide_the_answer():
    rng = np.random.default_rng(2)
    # two sources spread over the same region, 900 vs 100 figurines; the target sits among both
    emb, cul, site = frame([(A, "", cloud(rng, [0, 0], 900, 3)), (B, "", cloud(rng, [0, 0], 100, 3)),
                            (T, "Uruk", cloud(rng, [0, 0], 200, 3))])
    t = influence.estimate(emb, cul, site, k=20, n_boot=200).query("group == 'Uruk'").set_index("source")
    assert t.loc[A, "share"] == pytest.approx(0.5, abs=0.1)  # uncorrected it would be about 0.9


def test_small_groups_are_flagged_and_read_as_such():
    rng = np.random.default_rng(3)
    emb, cul, site = frame([(A, "", cloud(rng, [0, 0], 100)), (B, "", cloud(rng, [9, 0], 100)),
                            (T, "Uruk", cloud(rng, [0, 0], 50)), (T, "Kish", cloud(rng, [0, 0], 4))])
    t = influence.estimate(emb, cul, site, n_boot=100)
    assert t[t.group == "Kish"]["too_small"].all() and not t[t.group == "Uruk"]["too_small"].any()
    lines = influence.reading(t, "AAE latent")
    assert any("Kish" in l and "too few" in l for l in lines)
    assert any(l.startswith("Uruk's figurines (n = 50) sit closest to Source A") for l in lines)


def test_diagnostics_tell_a_matched_prior_from_the_studys_drift():
    rng = np.random.default_rng(4)
    good = diagnostics.prior_match(rng.normal(0, 5, (2000, 2)), 5)
    assert good["within_sd"][3] > 0.97 and abs(good["c2st_accuracy"] - 0.5) < 0.06
    drifted = diagnostics.prior_match(rng.normal(0, 5, (2000, 2)) * 400, 5)
    assert drifted["c2st_accuracy"] > 0.95
    assert diagnostics.verdict(drifted, 0.2, 0.3, 0.8).startswith("codes lie far outside the prior")
    assert diagnostics.verdict(good, 0.01, 0.9, 0.8).startswith("codes match the prior; reconstructions are good")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The fast preset on the full demo (64 px, 30 epochs): the run the ground-truth test reads."""
    from core.demo import generate
    from core.settings import Settings
    from core.train import fit_run

    tmp = tmp_path_factory.mktemp("truth")
    generate(tmp / "demo", size=64)
    return fit_run(tmp / "run", Settings.from_preset("fast", device="cpu"), str(tmp / "demo")), tmp / "demo"


def test_demo_ground_truth_greek_shares_rank_the_sites(demo_run):
    run, data = demo_run
    truth = json.loads((data / "truth.json").read_text())["sites"]
    tables = influence.for_run(run.dir, n_boot=200)
    greek = "Classical Greek and Hellenistic"
    rho = {}
    for name, t in tables.items():
        g = t[(t.source == greek) & t.group.isin(truth)]
        for col in ("share", "energy_share"):
            rho[f"{name}/{col}"] = spearmanr(g[col], [truth[s][greek] for s in g.group])[0]
    print(json.dumps(rho))
    assert max(rho.values()) >= 0.9, rho


def test_cli_influence_json(demo_run, capsys):
    run, _ = demo_run
    assert main(["influence", "--run-dir", str(run.dir), "--json", "--bootstrap", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"aae", "umap"}
    for emb in out.values():
        assert "Hellenistic Babylonian" in emb and "Seleucia on the Tigris" in emb and len(emb) == 9
        for group in emb.values():
            assert sum(v["share"] for v in group.values()) == pytest.approx(1)
            assert all(v["ci"][0] <= v["share"] <= v["ci"][1] for v in group.values())
