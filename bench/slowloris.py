"""A normal client's latency while 200 slow clients hold connections (slowloris).

`python -m bench.slowloris --slow 200 --requests 300`. One server process pinned to
CPU 0 (`TABSERVE_REQUEST_READ_TIMEOUT_SECONDS`, 10 s here); this process (the
clients) on CPU 1. A normal client sends `--requests` one-row V2 requests (forest)
one after the other, first alone, then while `--slow` connections each send the
start of a request head and one more byte every second. Printed: the normal
client's p50/p99/max latency in both phases and its errors, then what became of
the slow connections: how many the server answered 408 and closed, and after how
long. Before the read timeout existed, they were held open for as long as they
kept sending.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.models import ensure_models
from bench.run import ROOT, process, progress, v2_body

TIMEOUT_SECONDS = 10.0


async def normal_client(url: str, requests: int) -> tuple[list[float], int]:
    """Latencies (ms) of sequential requests, and how many failed."""
    body = v2_body(1)
    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                answer = await client.post("/v2/models/forest/infer", content=body, headers=headers)
                if answer.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies, errors


async def slow_client(port: int, opened: asyncio.Event, results: list[tuple[str, float]]) -> None:
    """Send a head one byte a second until the server answers or closes; record which."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v2/models/forest/infer HTTP/1.1\r\nhost: t\r\nx-slow: ")
    opened.set()
    outcome = "still open"
    try:
        while time.monotonic() - started < 3 * TIMEOUT_SECONDS:
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=1.0)
            except TimeoutError:
                writer.write(b"a")
                await writer.drain()
                continue
            outcome = "408" if data.startswith(b"HTTP/1.1 408") else ("closed" if not data else "?")
            break
    except (ConnectionError, OSError):
        outcome = "reset"
    results.append((outcome, time.monotonic() - started))
    writer.close()


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):.2f} | {p99:.2f} | {ordered[-1]:.2f}"


async def scenario(url: str, port: int, slow: int, requests: int) -> None:
    alone, alone_errors = await normal_client(url, requests)
    results: list[tuple[str, float]] = []
    events = [asyncio.Event() for _ in range(slow)]
    tasks = [asyncio.create_task(slow_client(port, e, results)) for e in events]
    for event in events:
        await event.wait()
    loaded, loaded_errors = await normal_client(url, requests)
    await asyncio.gather(*tasks)
    print("| normal client | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|")
    print(f"| alone | {summary(alone)} | {alone_errors} |")
    print(f"| with {slow} slow clients holding connections | {summary(loaded)} | {loaded_errors} |")
    print()
    outcomes: dict[str, list[float]] = {}
    for outcome, seconds in results:
        outcomes.setdefault(outcome, []).append(seconds)
    print("| slow connections | count | closed after (s), min-max |")
    print("|---|---:|---|")
    for outcome, times in sorted(outcomes.items()):
        print(f"| {outcome} | {len(times)} | {min(times):.1f}-{max(times):.1f} |")


def main(argv: list[str] | None = None) -> int:
    """Run both phases against one server and print two Markdown tables."""
    parser = argparse.ArgumentParser(prog="bench.slowloris", description=__doc__)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-slowloris-"))
    command = [sys.executable, "-m", "tabserve.service", "serve"]
    command += ["--models-dir", str(args.models_dir), "--port", str(args.port)]
    command += ["--log-level", "warning"]
    env = {"TABSERVE_REQUEST_READ_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)}
    with process(command, args.port, "0", work / "server.log", env) as url:
        progress(f"{args.slow} slow clients, {args.requests} normal requests per phase")
        asyncio.run(scenario(url, args.port, args.slow, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
