"""`python bench/asgi_calls.py MODELS SCENARIO`: Python function calls per request, whole ASGI app.

The same requests as `bench.asgi_cost` (64 in-process clients, the one-row body of
`make bench`), counted by cProfile instead of timed. A count does not move with
what else runs on the machine, so two source trees compare exactly where CPU time
is too noisy to tell a few percent apart (run each tree with `PYTHONPATH=<tree>`
from inside it). It counts calls, not their cost: equal counts mean no step was
added to the request path, not that the steps cost the same.

It profiles the phase `asgi_cost.measure` times: between its two `process_time()`
reads (after the warm-up, before the shutdown), so it works with any tree's
`bench.asgi_cost` that measures that way.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import pstats
import sys
import time
from pathlib import Path
from unittest import mock

from bench import asgi_cost

PER_CLIENT = 20


async def calls_per_request(models: Path, scenario: str) -> float:
    """Function calls per request in the measured phase."""
    profile = cProfile.Profile()
    clock = time.process_time
    profiling = False

    def boundary() -> float:
        # measure() reads process_time once before and once after the measured requests.
        nonlocal profiling
        if profiling:
            profile.disable()
        else:
            profile.enable()
        profiling = not profiling
        return clock()

    with mock.patch("time.process_time", boundary):
        await asgi_cost.measure(models, scenario, PER_CLIENT)
    calls: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return calls / (asgi_cost.CLIENTS * PER_CLIENT)


def main(argv: list[str] | None = None) -> int:
    """Print the calls per request for MODELS SCENARIO."""
    args = sys.argv[1:] if argv is None else argv
    logging.disable(logging.CRITICAL)
    print(f"{asyncio.run(calls_per_request(Path(args[0]), args[1])):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
