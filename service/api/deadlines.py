"""Per-request deadlines and disconnect detection, for the core's queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import Receive, Scope

from tabserve.service.api.app_state import app_state
from tabserve.service.api.middleware import request_id_of
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.digits import MAX_DIGITS, parse_digits
from tabserve.service.core.errors import InvalidInputError, Problem
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.scope_keys import CLIENT_LEFT
from tabserve.service.web_config import Deadlines

TIMEOUT_HEADER = "X-Request-Timeout-Ms"


def deadline_for(header: str | None, deadlines: Deadlines) -> float:
    """Event-loop time by which a model call must take the request.

    The default is `deadlines.default_ms`; a client may ask for another timeout with
    the `X-Request-Timeout-Ms` header, capped at `deadlines.max_ms`.
    """
    timeout = deadlines.default_ms
    if header is not None:
        asked = parse_digits(header.strip())
        if not asked:  # None (not ASCII digits) or 0
            raise InvalidInputError.of(
                "malformed",
                [
                    Problem(
                        TIMEOUT_HEADER,
                        f"a positive whole number of milliseconds (1 to {MAX_DIGITS} ASCII digits)",
                        header,
                    )
                ],
            )
        timeout = min(asked, deadlines.max_ms)
    return asyncio.get_running_loop().time() + timeout / 1000


async def client_gone(receive: Receive) -> None:
    """Returns when the client disconnects (call it after the body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def client_left(scope: Scope) -> Callable[[], bool] | None:
    """The server's free check for a client that has left, when it offers one.

    tabserve's HTTP protocol puts it in every scope; other ASGI servers (and test
    clients) do not, and then only watching `receive` notices a client leaving.
    """
    left = scope.get(CLIENT_LEFT)
    return left if callable(left) else None


async def predict_watched(
    dataplane: DataPlane,
    model: ServedModel,
    batch: ValidatedBatch,
    *,
    deadline: float,
    scope: Scope,
    receive: Receive,
) -> Prediction:
    """`dataplane.predict` for the request of `scope`, under its request id.

    The request is dropped if its client leaves while it is queued: a model call
    skips it when the server's free check (`client_left`) says so, and after
    `watch_after` in the queue, watching `receive` notices too.
    """
    return await dataplane.predict(
        model,
        batch,
        deadline=deadline,
        abandoned=lambda: client_gone(receive),
        left=client_left(scope),
        request_id=request_id_of(scope),
    )


async def predict_for(
    request: Request, dataplane: DataPlane, model: ServedModel, batch: ValidatedBatch
) -> Prediction:
    """`dataplane.predict` with the request's deadline, dropped if its client leaves."""
    deadlines = app_state(request.app).web.deadlines
    return await predict_watched(
        dataplane,
        model,
        batch,
        deadline=deadline_for(request.headers.get(TIMEOUT_HEADER), deadlines),
        scope=request.scope,
        receive=request.receive,
    )
