"""CPU per V2 request inside the app, without sockets or an HTTP parser.

`python -m bench.inprocess [--model forest] [--rows 1] [--concurrency 64]` builds
the real app (`create_app`, real lifespan, the benchmark models), then calls it as
an ASGI app from `--concurrency` tasks on one uvloop loop, each sending the same
V2 JSON request as `make bench` and waiting for its answer, and prints µs of CPU
per request. `--compare-bare` also runs `bench/bare.py`'s app the same way: the
difference is what tabserve's own code costs per request (validation, batching,
the thread hop, metrics, request ids, the access log when `--log-level info`).
This is the measurement to iterate with: round to round it moves a few percent,
where HTTP load on this shared machine moves 20.

Run it pinned to one core (`taskset -c 0`), as the server is in `make bench`, and
under `py-spy record -- python -m bench.inprocess ...` to see where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import bare
from bench.models import ensure_models
from bench.run import ROOT, v2_body
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

App = Any


async def drive(app: App, path: str, body: bytes, requests: int, concurrency: int) -> float:
    """CPU seconds per request for `requests` requests from `concurrency` tasks."""
    statuses: list[int] = []
    left = requests
    length = str(len(body)).encode()

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.Event().wait()  # the client stays connected
                raise AssertionError("unreachable")

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", b"bench"),
                    (b"content-type", b"application/json"),
                    (b"content-length", length),
                ],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
                "state": {},
            }
            await app(scope, receive, send)

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    spent = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses: {sorted(set(statuses))}")
    return spent / requests


async def measure(app: App, path: str, body: bytes, args: argparse.Namespace) -> list[float]:
    await drive(app, path, body, args.requests // 4, args.concurrency)  # warm-up
    return [
        await drive(app, path, body, args.requests, args.concurrency) for _ in range(args.rounds)
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure and print µs of CPU per request, per round."""
    parser = argparse.ArgumentParser(prog="bench.inprocess", description=__doc__)
    parser.add_argument("--model", default="logistic", choices=["forest", "logistic", "hgb"])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-level", default="warning", choices=["info", "warning"])
    parser.add_argument("--compare-bare", action="store_true")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    body = v2_body(args.rows)
    path = f"/v2/models/{args.model}/infer"
    app = create_app(Settings(models_dir=args.models_dir, log_level=args.log_level))

    async def run() -> list[float]:
        async with app.router.lifespan_context(app):
            return await measure(app, path, body, args)

    rounds = uvloop.run(run())
    label = f"{args.model}, {args.rows} row(s), {args.concurrency} concurrent"
    print(f"tabserve  | {label}: " + ", ".join(f"{s * 1e6:.1f}" for s in rounds) + " µs/request")
    if args.compare_bare:
        plain = uvloop.run(measure(bare.app, path, body, args))
        print(f"bare ASGI | {label}: " + ", ".join(f"{s * 1e6:.1f}" for s in plain) + " µs/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
