"""Run a function over chunks of work on all cores, reporting progress as chunks finish."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable, Iterator, Sequence


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
