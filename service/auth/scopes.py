"""The scopes a key may hold: what each lets a client do."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    """One permission; a key holds one or more, none implies another."""

    PREDICT = "predict"
    """Inference: records predict, V2 infer, V1 predict, streams, explain, feedback."""
    READ = "read"
    """Reading what is served: catalog, model metadata and readiness, quality, drift,
    logged predictions (and /metrics or the docs when they are not open)."""
    ADMIN = "admin"
    """Changing what is served: the model repository API (load, unload, default)."""


SCOPE_NAMES = ", ".join(s.value for s in Scope)
