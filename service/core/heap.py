"""Keep the garbage collector's full passes off the loaded models.

Loaded models are a few hundred thousand long-lived objects (the three benchmark
models: 222,000), and each of CPython's oldest-generation collections walks them
all: 50-125 ms pauses while requests wait, which set the p99 latency (wrk -c64 on
the forest: p99 94 ms, against 22 ms with them frozen). After models load or
unload, `settle()` collects once and freezes what is alive (`gc.freeze`), so
later collections walk only the objects requests create. In a preloaded master it
also keeps forked workers from writing to (and so copying) the shared pages.

Frozen objects are exempt from cycle collection. After an unload, `settle(full=True)`
thaws everything first, so the version's cyclic garbage is collected; one that
requests still held at that moment gives it back at the next unload.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("tabserve.models")


def settle(*, full: bool = False) -> None:
    """Collect the garbage (all of it if `full`, else what is not frozen), freeze the rest."""
    started = time.perf_counter()
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug(
        "heap settled: %d objects frozen out of collections in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
