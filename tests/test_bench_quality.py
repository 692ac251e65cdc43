"""bench/quality.py on a tiny demo: every figure present and in range, its section written; a bad folder is one line."""
import json

from bench.quality import main


def test_quality_bench_on_a_tiny_demo(tmp_path, small_demo, capsys):
    results = tmp_path / "RESULTS.md"
    assert main(["--data", str(small_demo), "--variants", "fast", "guided", "--epochs", "2", "--image-size", "32",
                 "--device", "cpu", "--out", str(tmp_path / "runs"), "--results", str(results)]) == 0
    raw = json.loads((tmp_path / "runs" / "quality.json").read_text())
    images = sum(1 for p in small_demo.rglob("*") if p.suffix in (".jpg", ".TIF"))
    runs = {r["variant"]: r for r in raw["runs"]}
    assert set(runs) == {"fast", "guided"}
    for r in runs.values():
        for acc in (r["accuracy"], r["source_accuracy"]):
            assert set(acc) == {"aae", "umap", "pca"} and all(0 <= v <= 1 for v in acc.values() if v is not None)
        # the fast default is local: told which figurines are targets, its AAE has no all-culture figure
        assert (r["accuracy"]["aae"] is None) == (r["variant"] == "fast") and None not in r["source_accuracy"].values()
        assert all(0 <= v <= 1 for v in r["trustworthiness"].values())
        assert set(r["beside"]) == {"aae", "umap", "pca"} and all(0 <= v <= 1 for v in r["beside"].values())
        # the prior's shape, on the photographs' codes, beside what the run's own prior puts there
        assert all(0 <= w <= 1 for w in r["within_sd"]) and r["within_sd"] == sorted(r["within_sd"])
        assert r["prior_within_sd"] == sorted(r["prior_within_sd"]) and 0.9 < r["prior_within_sd"][2] <= 1
        assert 0.3 <= r["c2st"] <= 1
        assert r["recon_error"] > 0 and r["train_s"] > 0 and 0 < r["s_per_epoch"] < r["train_s"]
        assert r["epochs"] == 2 and r["image_size"] == 32 and r["images"] == images
    # the guided run is measured, in every space, only on the figurines whose labels it did not see
    assert runs["fast"]["figurines"] == images > runs["guided"]["figurines"] > 0
    out = capsys.readouterr().out
    assert "| guided | 0 | AAE |" in out and "|  |  | PCA-50 |" in out
    text = results.read_text()
    assert "<!-- bench:quality-cpu-demo -->" in text and "| fast | 0 | AAE |" in text


def test_a_folder_without_images_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "empty" / "Greek").mkdir(parents=True)
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"), "--no-write"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "no readable image" in err[0], err
