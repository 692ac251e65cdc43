"""Where the project keeps its data and runs by default."""
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = PROJECT / "data"
RUNS = PROJECT / "checkpoints"
DEMO = DATA / "demo"
