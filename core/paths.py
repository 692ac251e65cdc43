"""Where the project keeps its data and runs by default ($FIGURINES_DATA overrides the data folder)."""
import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FIGURINES_DATA") or PROJECT / "data")
RUNS = PROJECT / "checkpoints"
DEMO = DATA / "demo"
