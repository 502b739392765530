"""`python -m bench.auth`: what access control costs per request, on against off, in one run.

1. The access layer alone (`api/access.py` around an app that answers nothing):
   µs per request for a request with a valid key and its scope, one on an open route
   (a probe), and a refusal (no key); against the same call with no layer (off: the
   layer is not added at all). Best of `--rounds` runs of `--requests` calls each.
2. The whole app in process (lifespan run, models loaded, 64 concurrent in-process
   clients, the one-row forest V2 body of `make bench`, as `bench.asgi_cost`): CPU µs
   per request with a key file and a valid key against no key file, in alternating
   rounds (on, off, off, on, ...); the ratio is the median of the rounds' on/off.
   Python function calls per request (cProfile, as `bench/asgi_calls.py`) for both:
   a count does not move with the machine's load, so it shows what the layer adds
   where the timings are too noisy to.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.asgi_cost import requester, scope_for
from bench.models import ensure_models, sample_rows
from tabserve.service.api.access import AccessControl
from tabserve.service.api.access_policy import AccessPolicy
from tabserve.service.app import create_app
from tabserve.service.auth.key_store import KeyStore
from tabserve.service.auth.keys_file import entry_for, new_key, write_keys
from tabserve.service.auth.metrics import AuthMetrics
from tabserve.service.auth.scopes import Scope as KeyScope
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.settings import Settings

CLIENTS = 64
ROOT = Path(__file__).resolve().parents[1]


async def _nothing(scope: Scope, receive: Receive, send: Send) -> None:
    """The innermost app of part 1: answers nothing, costs nothing."""


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


async def layer_cost(keys_file: Path, key: str, requests: int, rounds: int) -> dict[str, float]:
    """µs per call of the access layer alone, by case; `off` is the bare call."""
    store = KeyStore(keys_file, AuthMetrics(ServiceMetrics().registry))
    layer = AccessControl(_nothing, store, AccessPolicy(metrics_open=True, docs_open=True))
    bearer = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]
    cases: dict[str, tuple[ASGIApp, str, list[tuple[bytes, bytes]]]] = {
        "off (no layer)": (_nothing, "/v2/models/forest/infer", bearer),
        "on, key with the scope": (layer, "/v2/models/forest/infer", bearer),
        "on, open route (probe)": (layer, "/v2/health/ready", []),
        "on, refused (no key)": (layer, "/v2/models/forest/infer", []),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (app, path, headers) in cases.items():
            started = time.perf_counter()
            for _ in range(requests):
                await app(scope_for(path, "POST", headers), _receive, _send)
            seconds = time.perf_counter() - started
            best[name] = min(best.get(name, float("inf")), seconds * 1e6 / requests)
    return best


async def app_cost(models: Path, keys_file: Path | None, key: str, per_client: int) -> float:
    """CPU µs per request through the whole app (as `bench.asgi_cost`)."""
    settings = Settings(models_dir=models, auth_keys_file=keys_file, grpc_port=0)
    app = create_app(settings)
    row = sample_rows(1)[0].tolist()
    tensor = {"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": row}
    body = orjson.dumps({"inputs": [tensor]})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    one = requester(app, "/v2/models/forest/infer", headers, body)
    async with _lifespan(app):
        await asyncio.gather(*(_repeat(one, 20) for _ in range(CLIENTS)))
        cpu = time.process_time()
        await asyncio.gather(*(_repeat(one, per_client) for _ in range(CLIENTS)))
        cpu = time.process_time() - cpu
    return cpu * 1e6 / (CLIENTS * per_client)


async def _repeat(one: Callable[[], Awaitable[None]], count: int) -> None:
    for _ in range(count):
        await one()


class _lifespan:  # noqa: N801  (reads as the context it is)
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        await self.inbox.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        started = await self.outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"start-up failed: {started}")

    async def __aexit__(self, *_: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        assert self.task is not None
        await self.task


def calls_per_request(models: Path, keys_file: Path | None, key: str, per_client: int) -> float:
    """Python function calls per request of `app_cost`'s measured phase."""
    profile = cProfile.Profile()
    real = time.process_time
    profiling = False

    def boundary() -> float:
        nonlocal profiling
        profile.disable() if profiling else profile.enable()
        profiling = not profiling
        return real()

    time.process_time = boundary  # type: ignore[assignment]
    try:
        asyncio.run(app_cost(models, keys_file, key, per_client))
    finally:
        time.process_time = real  # type: ignore[assignment]
    calls: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return calls / (CLIENTS * per_client)


def main(argv: list[str] | None = None) -> int:
    """Print both parts' figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__)
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--requests", type=int, default=20_000, help="part 1: calls per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each part")
    parser.add_argument("--per-client", type=int, default=60, help="part 2: requests per client")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the access log would measure the terminal
    models = ensure_models(args.models)
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        key = new_key()
        others = [entry_for(f"other-{i}", new_key(), frozenset({KeyScope.READ})) for i in range(9)]
        write_keys(keys_file, [*others, entry_for("bench", key, frozenset({KeyScope.PREDICT}))])
        print("1. the access layer alone, µs per request (best round):")
        for name, micros in asyncio.run(
            layer_cost(keys_file, key, args.requests, args.rounds)
        ).items():
            print(f"   {name:<28} {micros:6.2f}")
        print("2. whole app, forest V2 1 row, CPU µs per request (rounds on/off):")
        ratios = []
        for index in range(args.rounds):
            order = (keys_file, None) if index % 2 == 0 else (None, keys_file)
            cost = {f: asyncio.run(app_cost(models, f, key, args.per_client)) for f in order}
            ratios.append(cost[keys_file] / cost[None])
            print(f"   round {index}: on {cost[keys_file]:.0f}, off {cost[None]:.0f}")
        print(f"   median on/off: {statistics.median(ratios):.3f}")
        on = calls_per_request(models, keys_file, key, args.per_client)
        off = calls_per_request(models, None, key, args.per_client)
        print(f"   Python calls per request: on {on:.1f}, off {off:.1f} (+{on - off:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
