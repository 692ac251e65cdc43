"""bench/run.py's tasks on a tiny demo: the benchmark's own baseline and ours run for both presets; a synthetic
run's encodings are what Explore opens, not encoded again."""
import pytest

from bench.tasks import naive_train, synthetic_run, train


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_the_benchs_trainers_run_for_each_preset(small_demo, preset):
    for trainer in (naive_train, train):
        r = trainer(root=str(small_demo), preset=preset, size=32, epochs=2, device="cpu", limit=60)
        assert r["images"] == 60 and r["epochs"] == 2 and r["images_per_s"] > 0 and r["total_s"] > 0


def test_a_synthetic_runs_encodings_are_the_ones_explore_opens(small_demo, tmp_path, monkeypatch):
    """The bench's large runs are synthetic: if their encodings did not match the run (decoded otherwise), the
    Explore page's first open would encode the whole folder again and the benchmark would time that."""
    import pandas as pd

    from core import embed

    synthetic_run(root=str(small_demo), size=16, run_dir=str(tmp_path / "run"))
    written = pd.read_parquet(tmp_path / "run" / "encodings.parquet")
    monkeypatch.setattr(embed, "_encode", lambda *a, **k: pytest.fail("encoded again"))
    opened = embed.encode_run(tmp_path / "run")
    assert opened["aae_x"].tolist() == written["aae_x"].tolist()
