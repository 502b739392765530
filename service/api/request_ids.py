"""Request ids for requests that come without one: unique, cheap, not secret.

`uuid.uuid4().hex` reads the kernel's random source on every call, which was 5 %
of a V2 request's CPU. An id here is a random 64-bit prefix drawn once per
process (again in each forked worker) followed by a counter: 32 hex digits, like
a UUID's, unique across workers and restarts as long as prefixes do not collide
(2^-64 per pair). Ids are predictable within a process; nothing relies on them
being secret.
"""

from __future__ import annotations

import itertools
import os
import secrets


class RequestIds:
    """`next()` gives a new id; a forked child starts a new prefix."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new id: 16 hex digits of prefix, 16 of counter."""
        return f"{self._prefix}{next(self._counter):016x}"


_IDS = RequestIds()


def new_request_id() -> str:
    """An id for a request that came without X-Request-ID."""
    return _IDS.next()
