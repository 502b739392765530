"""The sticky key of a split rollout: the `X-Rollout-Key` header, read only when a split asks."""

from __future__ import annotations

from starlette.types import Scope

from tabserve.service.api.asgi_io import header
from tabserve.service.core.rollout.plan import StickyKey

ROLLOUT_KEY_HEADER = "X-Rollout-Key"
_NAME = ROLLOUT_KEY_HEADER.lower().encode()


def sticky_key(scope: Scope) -> StickyKey:
    """Reads the request's `X-Rollout-Key` (None without one) when the data plane calls it."""
    return lambda: header(scope, _NAME)
