"""`python -m bench.stream`: rows/s over one WebSocket stream against one HTTP request per row.

Same server process for every figure of a model (pinned to CPU 0, like `bench.run`),
same models (`bench/models.py`), one row per request or message, records API
(`/models/{m}/predict` and `/models/{m}/stream`), all in one run:

* HTTP, one connection, one request per row, each sent when the last was answered
  (httpx, keep-alive): what a simple client loop gets;
* the stream over ONE connection with window 1 (request/answer, no pipelining),
  8 and 32 (pipelined; 32 is the server's default window), without compression,
  and with window 32 and permessage-deflate (what clients negotiate by default);
* HTTP from wrk with 64 connections (one row per request), when wrk is installed,
  on the records route and on the V2 fast path: what a highly concurrent HTTP
  client gets, for scale.

The Python clients run pinned to CPU 1 in this process; wrk too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import connect

from bench.load import run_load, wrk_available
from bench.models import ensure_models, sample_rows
from bench.run import ROOT, process, progress, serve_command, v2_body

MODELS = ("forest", "logistic")
WINDOWS = (1, 8, 32)


@dataclass(frozen=True)
class Figure:
    """One measured line."""

    model: str
    client: str
    rows_per_s: float
    errors: int


def records(count: int) -> list[bytes]:
    """Encoded one-row records of the benchmark distribution."""
    rows = sample_rows(count)
    return [orjson.dumps({f"x{i}": float(v) for i, v in enumerate(row)}) for row in rows]


def http_sequential(url: str, bodies: list[bytes], seconds: float) -> tuple[float, int]:
    """One keep-alive connection, one row per request, one request at a time."""
    headers = {"content-type": "application/json"}
    done = errors = 0
    with httpx.Client(timeout=30) as client:
        for body in bodies[:50]:  # warm-up
            client.post(url, content=body, headers=headers)
        started = time.perf_counter()
        end = started + seconds
        while time.perf_counter() < end:
            response = client.post(url, content=bodies[done % len(bodies)], headers=headers)
            done += 1
            errors += response.status_code != 200
        elapsed = time.perf_counter() - started
    return done / elapsed, errors


async def stream_rows(
    url: str, bodies: list[bytes], seconds: float, window: int, deflate: bool = False
) -> tuple[float, int]:
    """One WebSocket; at most `window` messages unanswered; rows answered per second."""
    compression = "deflate" if deflate else None
    async with connect(url, max_size=None, compression=compression) as socket:
        for body in bodies[:50]:  # warm-up
            await socket.send(body.decode())
            await socket.recv()
        slots = asyncio.Semaphore(window)
        answered = errors = sent = 0
        finished = asyncio.Event()
        sending = True

        async def receive() -> None:
            nonlocal answered, errors
            while sending or answered < sent:
                reply = await socket.recv()
                slots.release()
                answered += 1
                errors += '"code"' in reply
            finished.set()

        receiver = asyncio.create_task(receive())
        started = time.perf_counter()
        end = started + seconds
        while time.perf_counter() < end:
            await slots.acquire()
            await socket.send(bodies[sent % len(bodies)].decode())
            sent += 1
        sending = False
        if answered < sent:
            await asyncio.wait_for(finished.wait(), 60)
        else:
            receiver.cancel()  # it waits for a reply that will not come
        elapsed = time.perf_counter() - started
    return answered / elapsed, errors


def measure(url: str, model: str, seconds: float, work: Path) -> list[Figure]:
    """Every client against one running server, for one model."""
    bodies = records(1000)
    predict = f"{url}/models/{model}/predict"
    stream = "ws://" + url.removeprefix("http://") + f"/models/{model}/stream"
    figures = []
    rate, errors = http_sequential(predict, bodies, seconds)
    figures.append(Figure(model, "HTTP, 1 connection, 1 row per request", rate, errors))
    for window in WINDOWS:
        rate, errors = asyncio.run(stream_rows(stream, bodies, seconds, window))
        figures.append(Figure(model, f"stream, 1 connection, window {window}", rate, errors))
    rate, errors = asyncio.run(stream_rows(stream, bodies, seconds, WINDOWS[-1], deflate=True))
    label = f"stream, 1 connection, window {WINDOWS[-1]}, permessage-deflate"
    figures.append(Figure(model, label, rate, errors))
    if wrk_available():
        v2 = f"{url}/v2/models/{model}/infer"
        for label, target, body in (
            ("HTTP records (wrk), 64 connections, 1 row per request", predict, bodies[0]),
            ("HTTP V2 fast path (wrk), 64 connections, 1 row per request", v2, v2_body(1)),
        ):
            run_load(target, body, 64, 1.0, work, 1)
            result = run_load(target, body, 64, seconds, work, 1)
            figures.append(Figure(model, label, result.requests_per_s, result.errors))
    for figure in figures:
        progress(f"{model:>9} | {figure.client:<58} {figure.rows_per_s:>9,.0f} rows/s")
    return figures


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(figures: list[Figure]) -> str:
    """A Markdown table with each figure against the model's sequential HTTP figure."""
    base = {f.model: f.rows_per_s for f in figures if f.client.startswith("HTTP, 1 connection")}
    lines = ["| model | client | rows/s | x HTTP 1 conn | errors |", "|---|---|---:|---:|---:|"]
    for f in figures:
        lines.append(
            f"| {f.model} | {f.client} | {f.rows_per_s:,.0f} | "
            f"{f.rows_per_s / base[f.model]:.1f}x | {f.errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start the server pinned to CPU 0, measure every client for each model, print a table."""
    parser = argparse.ArgumentParser(prog="bench.stream", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the Python clients; the server gets CPU 0
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-stream-"))
    port = free_port()  # other benchmarks may hold the fixed ports of bench.run
    serve = serve_command(args.models_dir)
    figures: list[Figure] = []
    with process([*serve, "--port", str(port)], port, "0", work / "server.log") as url:
        for model in MODELS:
            figures += measure(url, model, args.seconds, work)
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
