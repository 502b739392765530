"""One model's rollout: champion, challenger, mode and share, and the arm of each request.

A split sends a request that names no version to the challenger with probability
`share`. With a sticky key (a user id, say) the arm is a stable hash of the key, the
model and the challenger instead of a coin, so one key always sees one version, and
raising the share only moves more keys to the challenger (a key's hash never changes,
only the threshold it is compared with). A shadow answers every request with the
champion; `shadow.ShadowRunner` copies them to the challenger.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from prometheus_client import Counter

S = TypeVar("S")
KeyReader = Callable[[S], str | None]
"""Reads a request's sticky key from what its transport holds (an ASGI scope, a gRPC
context); a split calls it, nothing else does, so a request pays nothing to offer one."""

_HASH_SPAN = float(2**64)


class Mode(StrEnum):
    """How the challenger takes part."""

    SPLIT = "split"
    """Answers a share of the requests that name no version."""
    SHADOW = "shadow"
    """Predicts copies of the champion's requests in the background; answers none."""


@dataclass(frozen=True, slots=True)
class Arms:
    """The routed-requests counters of a rollout's two arms, bound once."""

    champion: Counter
    challenger: Counter


@dataclass(frozen=True, slots=True, eq=False)
class Rollout:
    """A model's champion (its default version, pinned while the rollout runs) and challenger."""

    model: str
    champion: int
    challenger: int
    mode: Mode
    share: float
    """Fraction of the requests naming no version the challenger answers (0 for a shadow)."""
    started: float
    """When it started (epoch seconds)."""
    pinned_before: int | None
    """The default version pinned before the rollout (None: the highest), put back at its end."""
    arms: Arms
    coin: Callable[[], float] = field(default=random.random)
    """Uniform in [0, 1): the split's draw for a request without a sticky key."""

    def version_for(self, key: KeyReader[S] | None = None, source: S | None = None) -> int:
        """The version that answers a request naming none, counted under its arm.

        `key(source)` is the request's sticky key, if it has one.
        """
        if self.mode is Mode.SPLIT and self._challenger_takes(key, source):
            self.arms.challenger.inc()
            return self.challenger
        self.arms.champion.inc()
        return self.champion

    def _challenger_takes(self, key: KeyReader[S] | None, source: S | None) -> bool:
        sticky = key(source) if key is not None and source is not None else None
        if sticky is None:
            return self.coin() < self.share
        return self.position(sticky) < self.share

    def position(self, key: str) -> float:
        """Where `key` falls in [0, 1): stable across processes, restarts and share changes."""
        text = f"{self.model}\0{self.challenger}\0{key}".encode()
        digest = hashlib.blake2b(text, digest_size=8).digest()
        return int.from_bytes(digest, "big") / _HASH_SPAN
