"""Load for the hardening probe: a worker SIGKILLed, a SIGTERM drain, slow clients.

Each function drives a running server and returns counts; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.probe_cases import IRIS_ROW, V2_BODY
from bench.probe_wire import request
from bench.slowloris import slow_client

HANG_GUARD_SECONDS = 120.0
KEEP_ALIVE_REQUEST = request(
    "POST", "/v2/models/iris/infer", {"content-type": b"application/json"}, V2_BODY
).replace(b"connection: close\r\n", b"")


def workers_of(master: int) -> set[int]:
    """The worker processes gunicorn's master has forked."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


@dataclass
class KillRun:
    """Requests answered around a worker's SIGKILL (their request ids), and those cut off."""

    answered: set[str] = field(default_factory=set)
    cut_off: int = 0
    server_errors: int = 0


def kill_a_worker_under_load(url: str, master: int, threads: int = 8) -> KillRun:
    """Post records from `threads` clients; SIGKILL a worker after 500 answers, go on for 500."""
    run = KillRun()
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        limits = httpx.Limits(max_keepalive_connections=0)  # both workers get requests
        with httpx.Client(base_url=url, limits=limits, timeout=30) as http:
            while not stop.is_set():
                try:
                    answer = http.post("/models/iris/predict", json=IRIS_ROW)
                except httpx.HTTPError:
                    with lock:
                        run.cut_off += 1
                    continue
                with lock:
                    if answer.status_code == 200:
                        run.answered.add(answer.json()["request_id"])
                    elif answer.status_code >= 500:
                        run.server_errors += 1

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    _wait(lambda: len(run.answered) >= 500)
    killed = min(workers_of(master))
    os.kill(killed, signal.SIGKILL)
    _wait(lambda: len(workers_of(master) - {killed}) >= 2)  # gunicorn replaced it
    _wait(lambda: len(run.answered) >= 1000)
    stop.set()
    for thread in pool:
        thread.join(HANG_GUARD_SECONDS)
    return run


def logged_request_ids(database: Path) -> Counter[str]:
    """How many rows the prediction log holds for each request id."""
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT request_id FROM predictions"))
        ids = Counter(row[0] for row in rows)
    engine.dispose()
    return ids


@dataclass
class DrainRun:
    """What clients met around a SIGTERM, by outcome."""

    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1


def drain_under_load(process: subprocess.Popen[bytes], port: int, clients: int = 8) -> DrainRun:
    """`clients` keep-alive and `clients` new-connection clients, SIGTERM, until refused."""
    run = DrainRun()
    pool = [
        threading.Thread(target=_client, args=(port, run, keep_alive))
        for keep_alive in (True, False)
        for _ in range(clients)
    ]
    for thread in pool:
        thread.start()
    _wait(lambda: run.outcomes["answered"] >= 400)
    process.send_signal(signal.SIGTERM)
    for thread in pool:
        thread.join(HANG_GUARD_SECONDS)
    process.wait(HANG_GUARD_SECONDS)
    return run


def _client(port: int, run: DrainRun, keep_alive: bool) -> None:
    """Requests until refused: many on one connection (a new one after each closing
    answer) with `keep_alive`, else one per connection."""
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_SECONDS)
        except ConnectionRefusedError:
            run.add("refused at connect")
            return
        with sock:
            while True:
                outcome, closes = _one_answer(sock)
                run.add(outcome)
                if not keep_alive or outcome != "answered" or closes:
                    break


def _one_answer(sock: socket.socket) -> tuple[str, bool]:
    """Send one request; ("answered", closes) or how it failed after being sent."""
    try:
        sock.sendall(KEEP_ALIVE_REQUEST)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed unanswered", True
            buffer += chunk
        head, _, body = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            if not chunk:
                return "closed unanswered", True
            body += chunk
    except ConnectionResetError:
        return "reset", True
    except OSError as exc:
        return type(exc).__name__, True
    status = lines[0].split()[1]
    outcome = "answered" if status == "200" else f"status {status}"
    return outcome, headers.get("connection") == "close"


def latency_with_slow_clients(url: str, port: int, slow: int, requests: int) -> dict[str, str]:
    """p50/p99 (ms) of a normal client alone, then while `slow` clients hold connections."""
    return asyncio.run(_slowloris(url, port, slow, requests))


async def _slowloris(url: str, port: int, slow: int, requests: int) -> dict[str, str]:
    alone = await _normal_client(url, requests)
    results: list[tuple[str, float]] = []
    events = [asyncio.Event() for _ in range(slow)]
    tasks = [asyncio.create_task(slow_client(port, event, results)) for event in events]
    for event in events:
        await event.wait()
    loaded = await _normal_client(url, requests)
    await asyncio.gather(*tasks)
    outcomes = Counter(outcome for outcome, _ in results)
    return {
        "alone": _percentiles(alone),
        f"with {slow} slow clients": _percentiles(loaded),
        "slow connections": ", ".join(f"{n} {kind}" for kind, n in sorted(outcomes.items())),
    }


async def _normal_client(url: str, requests: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(requests):
            started = time.perf_counter()
            answer = await client.post("/models/iris/predict", json=IRIS_ROW)
            answer.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms"


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the probe's load stalled")
        time.sleep(0.05)
