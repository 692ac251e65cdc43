"""bench/quality.py on a tiny demo: every figure present and in range, its section written; a bad folder is one line."""
import json

from bench.quality import main


def test_quality_bench_on_a_tiny_demo(tmp_path, small_demo, capsys):
    results = tmp_path / "RESULTS.md"
    assert main(["--data", str(small_demo), "--variants", "fast", "guided", "--epochs", "2", "--image-size", "32",
                 "--device", "cpu", "--out", str(tmp_path / "runs"), "--results", str(results)]) == 0
    raw = json.loads((tmp_path / "runs" / "quality.json").read_text())
    images = sum(1 for p in small_demo.rglob("*") if p.suffix in (".jpg", ".TIF"))
    runs = {r["variant"]: r for r in raw["collections"][str(small_demo)]}
    assert set(runs) == {"fast", "guided"}
    for r in runs.values():
        for acc in (r["accuracy"], r["source_accuracy"]):
            assert set(acc) == {"aae", "umap", "pca"} and all(0 <= v <= 1 for v in acc.values() if v is not None)
        # the fast default is local: told which figurines are targets, its AAE has no all-culture figure
        assert (r["accuracy"]["aae"] is None) == (r["variant"] == "fast") and None not in r["source_accuracy"].values()
        assert all(0 <= v <= 1 for v in r["trustworthiness"].values())
        assert set(r["beside"]) == {"aae", "umap", "pca"} and all(0 <= v <= 1 for v in r["beside"].values())
        assert r["backdrop"] is None  # the demo is photographed on one kind of backdrop
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


def test_the_backdrop_is_told_from_where_the_map_puts_each_photograph(tmp_path):
    """Issue 25: on a collection drawn on varied backdrops, a map that groups by backdrop is caught, one that does
    not is at chance; the targets' unseen sources are known on the second collections too."""
    import numpy as np

    from bench.quality import backdrop_told, beside
    from core.dataset import scan
    from core.demo import VARIED, drawn_backdrop, generate
    from core.labels import is_target

    generate(tmp_path / "varied", 16, scale=0.5, seed=1, collection=VARIED)
    enc = scan(tmp_path / "varied")
    paths = enc["path"]
    kinds = np.array([drawn_backdrop(p, 1, VARIED.backdrops) for p in paths])
    assert set(kinds) == set(VARIED.backdrops)
    grouped = (kinds[:, None] == np.array(VARIED.backdrops)[None]).astype(float)
    rng = np.random.default_rng(0)
    told = backdrop_told(str(tmp_path / "varied"), enc, {"grouped": grouped + rng.normal(0, 0.1, grouped.shape),
                                                         "blind": rng.normal(size=(len(enc), 2))})
    assert told["chance"] == 0.2 and told["grouped"] > 0.95 and abs(told["blind"] - 0.2) < 0.1
    assert backdrop_told(str(tmp_path), enc, {}) is None  # not a drawn collection
    near = beside(str(tmp_path / "varied"), enc, {"blind": rng.normal(size=(len(enc), 2))})
    assert is_target(enc).sum() > 0 and 0 <= near["blind"] <= 1


def test_a_folder_without_images_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "empty" / "Greek").mkdir(parents=True)
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"), "--no-write"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "no readable image" in err[0], err


def test_the_baselines_bench_compares_umap_of_descriptors_and_of_pixels(small_demo, capsys):
    from bench.baselines import main as baselines

    assert baselines(["--data", str(small_demo), "--seeds", "0", "--size", "32", "--no-write"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {small_demo.name} |")]
    assert [r.split(" | ")[2] for r in rows] == ["HOG descriptors", "pixels (form)"]
    assert all(r.rstrip(" |").rsplit(" | ", 1)[1] in ("good", "caution", "withheld") for r in rows)


def test_the_ceiling_gives_each_style_its_own_sector_of_the_prior(small_demo, capsys):
    """bench/ceiling.py: codes drawn from the prior, each style in a sector as wide as its share, gaps empty."""
    import numpy as np

    from bench.ceiling import main as ceiling, sectors
    from core.diagnostics import within_sd

    style = np.array(["a"] * 600 + ["b"] * 300 + ["c"] * 100 + [None] * 50, object)
    codes = sectors(style, 0.5, np.random.default_rng(0))
    angle = np.arctan2(codes[:, 1], codes[:, 0]) % (2 * np.pi)
    spans = {s: (angle[style == s].min(), angle[style == s].max()) for s in "abc"}
    # each sector is as wide as its style's share, less the gap, and none overlaps the next
    assert spans["a"][1] < spans["b"][0] and spans["b"][1] < spans["c"][0]
    for s, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs((spans[s][1] - spans[s][0]) / (2 * np.pi) - 0.5 * share) < 0.03
    assert abs(within_sd(codes, 1.0)[1] - 0.39) < 0.05  # the radii are the prior's own
    assert ceiling(["--data", str(small_demo), "--draws", "2", "--gaps", "0", "0.5"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith(f"| {small_demo.name} |")]
    assert [r.split(" | ")[1] for r in rows] == ["0%", "50%"] and all("of draws at 1.000" in r for r in rows)
