"""Step-by-step progress on stderr, with a ticking elapsed time for slow steps."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

TICK_SECONDS = 1.0


class Progress:
    """Prints `[k/n] step ... done (1.2s)`; a step still running after a second ticks."""

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._total = total
        self._done = 0
        self._stream = stream or sys.stderr
        self._quiet = quiet

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Run the body as one numbered step."""
        self._done += 1
        prefix = f"[{self._done}/{self._total}] {label}"
        self._write(f"{prefix} ...\n")
        started = time.monotonic()
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(prefix, started, stop), daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
        self._write(f"{prefix} done ({time.monotonic() - started:.1f}s)\n")

    def _tick(self, prefix: str, started: float, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            self._write(f"{prefix} ... {time.monotonic() - started:.0f}s\n")

    def _write(self, text: str) -> None:
        if not self._quiet:
            self._stream.write(text)
            self._stream.flush()
