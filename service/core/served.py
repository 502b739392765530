"""A model version that serves: everything a request needs, all present, never changed.

The registry keeps one entry per version in any state (`registry.ModelVersion`:
what `GET /models` and the health checks list); once a version is loaded, verified
and warmed up, the data plane builds its `ServedModel` (`DataPlane.serve`) and the
entry carries it. Requests take the served model from `registry.ready` and finish
on it, whatever the registry does meanwhile: a swap replaces the entry, never the
served model a request holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from tabserve.artifact.manifest import Manifest
from tabserve.service.core.batching import Batcher
from tabserve.service.core.metrics import ModelMetrics
from tabserve.service.core.runtime import Runtime
from tabserve.service.core.validation import FeatureSchema

T = TypeVar("T")


class LaneKey(Generic[T]):
    """Names one thing the web layer builds once per version; `T` is its type."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"LaneKey({self.name!r})"


class Lanes:
    """One version's cache of what the APIs precompute for it (express lanes, record checks)
    and what features build for it on first use (the explainer).

    Keyed by `LaneKey`s that their users declare, so the data plane never learns what
    they hold and every read is typed.
    """

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: dict[LaneKey[Any], object] = {}

    def get(self, key: LaneKey[T], build: Callable[[], T]) -> T:
        """What `build()` gives, built on first use and kept for this version."""
        built = self._built
        if key not in built:
            built[key] = build()
        return cast(T, built[key])


@dataclass(frozen=True, slots=True, eq=False)
class ServedModel:
    """A ready model version with its manifest, schema, runtime, metrics and batcher.

    Compared and hashed by identity: each load makes a new one.
    """

    name: str
    version: int
    path: Path
    manifest: Manifest
    schema: FeatureSchema
    """The manifest's checks, turning request values into the model's numpy rows."""
    runtime: Runtime
    metrics: ModelMetrics
    """This version's series, bound once."""
    batcher: Batcher
    """Every prediction goes through it. With batching off (`TABSERVE_BATCH_MAX_ROWS=1`)
    it still bounds the queue and honours deadlines; it just takes one request per call."""
    batch_rows: int
    """Most rows one model call takes (the model's own limit, else the global one)."""
    lanes: Lanes
    """What the APIs (and features such as explanations) build for this version on first use."""
