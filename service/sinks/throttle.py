"""Warnings that cannot storm: at most one per kind of problem per interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class ThrottledLog:
    """Logs the first occurrence of each kind, then at most one per `interval` seconds.

    The one after a quiet spell says how many occurrences were not logged, so the
    log still tells how bad it was. Safe to call from several threads.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *, exc_info: bool = False) -> None:
        """Log `message` unless a `kind` warning was logged less than `interval` ago.

        `exc_info`: add the exception being handled (with its traceback).
        """
        now = self._clock()
        with self._lock:
            if now < self._next.get(kind, now):
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._next[kind] = now + self.interval
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} more since the last such warning)"
        self.logger.warning(message, exc_info=exc_info)
