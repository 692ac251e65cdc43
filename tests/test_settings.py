"""Settings are one list: each field's metadata makes its CLI flag, its Train page widget and its checks."""
import argparse
import json
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest

from core.cli import parser, settings_given
from core.errors import UserError
from core.settings import ARCHITECTURE, GROUPS, Augmentation, Neighbourhood, Settings


def test_every_setting_carries_its_label_help_group_and_flag():
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {o for a in commands.choices["train"]._actions for o in a.option_strings}
    for f in fields(Settings):
        m = f.metadata
        assert m["label"] and len(m["help"]) > 20 and m["group"] in GROUPS, f.name
        assert (f"--{f.name.replace('_', '-')}" in flags) == m["flag"], f.name
        if m["range"]:
            assert m["range"][0] <= getattr(Settings(), f.name) <= m["range"][1], f.name
    assert {"arch", "image_size", "style", "width"} <= set(ARCHITECTURE) and "epochs" not in ARCHITECTURE


def test_the_flags_given_are_the_settings_changed():
    a = parser().parse_args(["train", "--data", "D", "--run-dir", "R", "--head-gap", "4", "--no-augment",
                             "--device", "cuda:1", "--background", "keep", "--balanced"])
    assert settings_given(a) == {"head_gap": 4.0, "augment": False, "device": "cuda:1", "background": "keep",
                                 "balanced": True}
    s = Settings.from_preset("fast", **settings_given(a))
    assert (s.head_gap, s.augment, s.device, s.background, s.balanced) == (4.0, False, "cuda:1", "keep", True)
    assert s.neighbours and s.epochs == 30  # what no flag named keeps the preset's value


def test_nested_settings_round_trip_through_a_run_config():
    s = Settings.from_preset("fast", augmentation=Augmentation(scale=1.3, area=(0.1, 0.2)),
                             neighbourhood=Neighbourhood(k=5, after=2))
    stored = json.loads(json.dumps(s.to_dict()))
    assert stored["augmentation"]["area"] == [0.1, 0.2]
    assert Settings.from_dict(stored) == s
    assert Settings.from_run({k: v for k, v in stored.items() if k not in ("augmentation", "neighbourhood")}) \
        .neighbourhood == Neighbourhood()  # a run from before they were settings
    for bad, message in [({"augmentation": {"sharpness": 2}}, "unknown setting"),
                         ({"augmentation": {"scale": -1}}, "must be a non-negative number"),
                         ({"augmentation": {"area": [0.1]}}, "must be a non-negative number"),
                         ({"neighbourhood": 3}, "must be an object of its settings")]:
        with pytest.raises(UserError, match=message):
            Settings.from_dict({**stored, **bad})


def test_a_value_out_of_range_is_named_as_the_page_and_the_cli_name_it():
    with pytest.raises(UserError, match=r"^Epochs \(--epochs\) must be between 1 and 100,000, got 0$"):
        Settings.from_preset("fast", epochs=0)
    with pytest.raises(UserError, match=r"^What counts as style \(--style\) must be one of form, colour"):
        Settings.from_preset("fast", style="texture")
    assert Settings.from_preset("fast", device="cuda:3").device == "cuda:3"  # the CLI takes what Settings takes


def test_resolve_decides_what_a_run_really_uses():
    items = pd.DataFrame({"path": [f"{c}/{i}.jpg" for c in "ABT" for i in range(20)],
                          "culture": [c for c in "ABT" for _ in range(20)],
                          "site": ["" if c != "T" else "Uruk" for c in "ABT" for _ in range(20)]})
    plan = Settings.from_preset("fast", guided=True).resolve(items)
    assert (plan.settings.prior, plan.settings.prior_components, plan.sources) == ("mixture", 2, ["A", "B"])
    assert plan.local.tolist() == [False] * 40 + [True] * 20 and sorted(set(plan.cultures)) == [0, 1, 2]
    assert set(plan.guide[40:]) == {-1} and 0 < (plan.guide[:40] == -1).mean() < 0.7  # the held-out share
    clusters = replace(Settings.from_preset("fast", guided=True), clusters=2).resolve(items).settings
    assert (clusters.clusters, clusters.prior) == (2, "gaussian")
    sources_only = items[items["culture"] != "T"].assign(site="")
    assert not Settings.from_preset("fast").resolve(sources_only).settings.local  # no target: not local
    with pytest.raises(UserError, match="at least two source cultures"):
        Settings.from_preset("fast", guided=True).resolve(items[items["culture"] != "B"])
    assert np.array_equal(Settings.from_preset("fast").resolve(items).local, plan.local)
