"""Run a function over chunks of work on all cores, reporting progress as chunks finish; share a memory
budget between the workers."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Sequence

from filelock import FileLock, Timeout


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a live trainer from a reused pid); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return ""
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""


def map_chunks(fn: Callable, chunks: Sequence, sizes: Sequence[int], workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> Iterator:
    """Yield fn(chunk) for each chunk, in order; progress(done, total) counts the chunks' sizes.

    Uses worker processes when there is more than one chunk and core: `fork` from a single-threaded
    program (fast, and safe for scripts without a main guard), `spawn` from a threaded one (the app).
    """
    total, done = sum(sizes), 0
    if progress:
        progress(0, total)
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers > 1:
        method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
            results = pool.map(fn, chunks)
            for n, r in zip(sizes, results):
                done += n
                if progress:
                    progress(done, total)
                yield r
        return
    for chunk, n in zip(chunks, sizes):
        r = fn(chunk)
        done += n
        if progress:
            progress(done, total)
        yield r


def available_memory() -> int:
    """Bytes of memory free for new work: MemAvailable on Linux, else the free pages, else 4 GB."""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


class MemorySlots:
    """At most `n` holders at once across threads and processes (each holds one of n lock files in
    `folder`): a memory budget for jobs that each need up to a known amount."""

    def __init__(self, folder: str | os.PathLike, n: int):
        self.folder, self.n = Path(folder), max(1, int(n))

    @contextmanager
    def hold(self, nbytes: int = 0):
        """Wait for a free slot and hold it (`nbytes`: what the holder needs, at most a slot's share)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            for i in range(self.n):
                lock = FileLock(self.folder / f"slot-{i}.lock")
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                try:
                    yield
                finally:
                    lock.release()
                return
            time.sleep(0.05)
