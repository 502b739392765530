"""A CPU budget for a background thread, so it cannot take the serving code's share."""

from __future__ import annotations

import time

WINDOW_SECONDS = 1.0


class CpuBudget:
    """Keeps the calling thread's CPU time under `share` of wall time.

    Two runnable threads of one process split the GIL about evenly, so a sender
    that always has work would otherwise take half of what serving needs. Measured
    per window of about a second: a burst after a quiet spell is not paid back later.
    """

    def __init__(self, share: float, window: float = WINDOW_SECONDS) -> None:
        self.share = share
        self.window = window
        self._start = time.monotonic()
        self._cpu = time.thread_time()

    def overdraft(self) -> float:
        """Seconds to sleep now to be back within budget (0.0 when within it)."""
        if self.share >= 1.0:
            return 0.0
        now, cpu = time.monotonic(), time.thread_time()
        elapsed = now - self._start
        if elapsed >= self.window:
            self._start, self._cpu = now, cpu
            return 0.0
        over = (cpu - self._cpu) - self.share * elapsed
        return over / self.share if over > 0 else 0.0
