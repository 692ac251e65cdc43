"""Where the project keeps its data and runs, which folders the app may open, and the one it opened last.

$FIGURINES_DATA and $FIGURINES_RUNS move the data and run folders; $FIGURINES_DATA_ROOTS (separated by
the system's path separator) lists the folders the app's folder chooser may reach (default: the data
folder and the user's home).
"""
import json
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


def inside_roots(path: str | os.PathLike, roots: list[Path] | None = None) -> Path:
    """`path` resolved (symlinks followed, whether or not it exists), if it lies inside an allowed root;
    else a UserError."""
    roots = roots if roots is not None else data_roots()
    try:
        real = Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a null byte, a name too long, a link loop
        raise UserError(f"not a usable path: {str(path)[:200]!r} ({e})") from None
    if not any(real == r or real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise UserError(f"{str(path)[:200]} is outside the folders this app may open ({allowed}); to open it, "
                        "start the app with that folder or one above it in FIGURINES_DATA_ROOTS")
    return real


def not_a_folder(path: Path) -> UserError:
    """Why `path` cannot be read as a dataset folder: it is a file, or nothing is there."""
    return UserError(f"{path} is a file, not a folder: choose the folder that holds one folder per culture"
                     if path.is_file() else f"dataset folder not found: {path}")


def within_roots(path: str, roots: list[Path] | None = None) -> Path:
    """The folder `path` (relative paths from the first root) resolved, if it lies inside an allowed root;
    else a UserError."""
    roots = roots if roots is not None else data_roots()
    text = str(path).strip()
    if not text:
        raise UserError("enter the path of a folder")
    try:
        p = Path(text).expanduser()
        real = inside_roots(p if p.is_absolute() else roots[0] / p, roots)
        found = real.is_dir()
    except (OSError, ValueError, RuntimeError) as e:  # a null byte, a name too long, an unknown ~user
        raise UserError(f"not a usable path: {text[:200]!r} ({e})") from None
    if not found:
        raise not_a_folder(real)
    return real


def _last() -> Path:
    return RUNS / ".last-dataset.json"


def remember_folder(path: str | os.PathLike) -> None:
    """Keep the dataset folder last chosen in the app (one per server, beside its runs) for the next session."""
    from .runs import atomic_write

    try:
        RUNS.mkdir(parents=True, exist_ok=True)
        atomic_write(_last(), json.dumps({"data": str(path)}).encode())
    except (OSError, UserError):
        pass  # a read-only runs folder: the choice holds for this session only


def remembered_folder() -> Path | None:
    """The dataset folder last chosen on this server, if it is still a folder the app may open."""
    from .runs import read_json

    try:
        return within_roots(read_json(_last(), 10_000)["data"])
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None
