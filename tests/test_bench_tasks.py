"""bench/run.py's trainers on a tiny demo: the benchmark's own baseline and ours run for both presets."""
import pytest

from bench.tasks import naive_train, train


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_the_benchs_trainers_run_for_each_preset(small_demo, preset):
    for trainer in (naive_train, train):
        r = trainer(root=str(small_demo), preset=preset, size=32, epochs=2, device="cpu", limit=60)
        assert r["images"] == 60 and r["epochs"] == 2 and r["images_per_s"] > 0 and r["total_s"] > 0
