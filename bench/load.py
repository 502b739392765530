"""Drive HTTP load: wrk when installed (the figures we record), a Python fallback otherwise."""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


def wrk_available() -> bool:
    """Whether wrk is on PATH (Debian package `wrk`)."""
    return shutil.which("wrk") is not None


def run_load(
    url: str, body: bytes, connections: int, seconds: float, workdir: Path, cpu: int | None
) -> LoadResult:
    """POST `body` to `url` from `connections` connections for `seconds`.

    It first pauses briefly: when a run ends, its clients drop the requests they
    have in flight, and the server computes queued requests whose clients left
    less than 0.25 s ago (watching costs more than the work, see
    `tabserve.service.core.batching`); without the pause the next run would start against
    a queue still full of them.
    """
    time.sleep(SETTLE_SECONDS)
    if wrk_available():
        return _wrk(url, body, connections, seconds, workdir, cpu)
    return asyncio.run(_python_load(url, body, connections, seconds))


def _wrk(
    url: str, body: bytes, connections: int, seconds: float, workdir: Path, cpu: int | None
) -> LoadResult:
    body_file = workdir / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    script = workdir / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\n'
        "wrk.body = f:read('*a')\n"
        "f:close()\n"
    )
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return LoadResult(
        requests_per_s=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_millis(_find(r"50%\s+([\d.]+\w+)", out)),
        p99_ms=_millis(_find(r"99%\s+([\d.]+\w+)", out)),
        errors=_errors(out),
        tool="wrk",
    )


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return match.group(1)


def _millis(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _errors(text: str) -> int:
    total = 0
    for match in re.finditer(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        total += int(match.group(1))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket:
        total += sum(int(g) for g in socket.groups())
    return total


async def _python_load(url: str, body: bytes, connections: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        errors=errors,
        tool="python",
    )
