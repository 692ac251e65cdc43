"""Where the project keeps its data and runs, and which folders the app may open.

$FIGURINES_DATA and $FIGURINES_RUNS move the data and run folders; $FIGURINES_DATA_ROOTS (separated by
the system's path separator) lists the folders the app's folder chooser may reach (default: the data
folder and the user's home).
"""
import os
from pathlib import Path

from .errors import UserError

PROJECT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FIGURINES_DATA") or PROJECT / "data")
RUNS = Path(os.environ.get("FIGURINES_RUNS") or PROJECT / "checkpoints")
DEMO = DATA / "demo"
STATIC = PROJECT / "static"            # served by Streamlit at app/static/ (server.enableStaticServing)
THUMBNAILS = STATIC / "thumbnails"     # hover thumbnails, one folder per decoded dataset


def data_roots() -> list[Path]:
    env = os.environ.get("FIGURINES_DATA_ROOTS")
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else [DATA, Path.home()]
    return [r.expanduser().resolve() for r in roots]


def within_roots(path: str, roots: list[Path] | None = None) -> Path:
    """The folder `path` resolved (symlinks followed), if it lies inside an allowed root; else a UserError."""
    roots = roots if roots is not None else data_roots()
    text = str(path).strip()
    if not text:
        raise UserError("enter the path of a folder")
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = roots[0] / p
    real = p.resolve()
    if not any(real == r or real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise UserError(f"{text} is outside the folders this app may open ({allowed})")
    if not real.is_dir():
        raise UserError(f"folder not found: {real}")
    return real
