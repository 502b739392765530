"""Reading a gRPC call's invocation metadata: one value by its (lower-case) name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def metadata_value(metadata: Iterable[tuple[str, Any]] | None, name: str) -> str | None:
    """The first value of `name` in `metadata` as text, or None when the call sent none.

    Keys not ending in `-bin` carry ASCII text, which grpc.aio gives as `str`; bytes
    are decoded as latin-1 all the same, as HTTP header values are.
    """
    for key, value in metadata or ():
        if key == name:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None
