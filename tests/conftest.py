import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Every test session gets its own decoded-image cache and data folder, never the user's.
_tmp = Path(tempfile.mkdtemp(prefix="figurines-tests-"))
os.environ["FIGURINES_CACHE"] = str(_tmp / "cache")
os.environ["FIGURINES_DATA"] = str(_tmp / "data")
os.environ["FIGURINES_RUNS"] = str(_tmp / "runs")
os.environ["FIGURINES_DEMO_SCALE"] = "0.1"  # the app's demo: 431 images
os.environ["FIGURINES_AUTO_DEMO_RUN"] = "0"
os.environ["FIGURINES_DATA_ROOTS"] = os.pathsep.join([str(_tmp / "data"), str(_tmp / "roots")])


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A demo dataset at 5% of the study's size and 32 px (216 images)."""
    from core.demo import generate

    out = tmp_path_factory.mktemp("demo") / "demo"
    generate(out, size=32, scale=0.05, seed=0)
    return out


@pytest.fixture(scope="session")
def messy(tmp_path_factory) -> Path:
    from tests.corpus import make

    return make(tmp_path_factory.mktemp("messy") / "collection")


@pytest.fixture
def tiny_settings():
    """Settings for a training that takes a second on a CPU."""
    from core.settings import Settings

    return Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=3, batch_size=50,
                                device="cpu", snapshot_every=1, checkpoint_every=1, snapshot_size=50)


@pytest.fixture(autouse=True)
def _forget_the_last_folder():
    """The app remembers the last dataset folder per server (in the runs folder): each test starts on the demo."""
    yield
    Path(os.environ["FIGURINES_RUNS"], ".last-dataset.json").unlink(missing_ok=True)
