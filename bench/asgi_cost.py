"""`python -m bench.asgi_cost MODELS SCENARIO`: CPU µs per request through the whole ASGI app.

No sockets and no load generator: 64 concurrent in-process clients call the app
(lifespan run, models loaded) with the one-row body of `make bench`, and the
process's CPU time (`time.process_time`, the model calls' threads included) is
divided by the requests. On a shared machine this moves far less than wrk's
requests/s, so it is the figure to compare two source trees with (run each tree
with `PYTHONPATH=<tree>` from inside it, interleaved).
SCENARIO is `forest` or `logistic` (V2 infer) or `records` (forest, by feature name).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp, Message

from bench.models import sample_rows
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

CLIENTS = 64


def request_of(scenario: str) -> tuple[str, bytes]:
    """The path and body of one request."""
    row = sample_rows(1)[0].tolist()
    if scenario == "records":
        return "/models/forest/predict", orjson.dumps({f"x{i}": v for i, v in enumerate(row)})
    tensor = {"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}
    return f"/v2/models/{scenario}/infer", orjson.dumps({"inputs": [tensor]})


def scope_for(path: str, method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


def requester(
    app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> Callable[[], Awaitable[None]]:
    """One request of `body` to `path` through `app`, as a client that never leaves;
    raises unless answered 200."""

    async def one() -> None:
        given = False
        status = 0

        async def receive() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never leaves
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope_for(path, "POST", headers), receive, send)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")

    return one


async def measure(
    models: Path,
    scenario: str,
    per_client: int,
    make_app: Callable[[Path], ASGIApp] | None = None,
) -> float:
    """CPU µs per request, after a warm-up; `make_app(models)` builds the app (default:
    `create_app` with default settings)."""
    app = make_app(models) if make_app is not None else create_app(Settings(models_dir=models))
    path, body = request_of(scenario)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    one = requester(app, path, headers, body)

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    life = asyncio.create_task(app(lifespan, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"start-up failed: {started}")
    await asyncio.gather(*(client(20) for _ in range(CLIENTS)))
    cpu = time.process_time()
    await asyncio.gather(*(client(per_client) for _ in range(CLIENTS)))
    cpu = time.process_time() - cpu
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await life
    return cpu * 1e6 / (CLIENTS * per_client)


def main(argv: list[str] | None = None) -> int:
    """Print CPU µs per request for MODELS SCENARIO [REQUESTS_PER_CLIENT]."""
    args = sys.argv[1:] if argv is None else argv
    logging.disable(logging.CRITICAL)  # the access log would measure the terminal
    per_client = int(args[2]) if len(args) > 2 else 60
    print(f"{asyncio.run(measure(Path(args[0]), args[1], per_client)):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
