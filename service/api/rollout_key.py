"""The sticky key of a split rollout: the `X-Rollout-Key` header, read only when a split asks.

Routes hand `rollout_key` and their scope to `DataPlane.route`, which calls it only
for a model with a split rollout: a request pays nothing for offering a key.
"""

from __future__ import annotations

from starlette.types import Scope

from tabserve.service.api.asgi_io import header

ROLLOUT_KEY_HEADER = "X-Rollout-Key"
_NAME = ROLLOUT_KEY_HEADER.lower().encode()


def rollout_key(scope: Scope) -> str | None:
    """The request's `X-Rollout-Key` header, or None."""
    return header(scope, _NAME)
