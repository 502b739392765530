"""What the CloudEvents payload sink costs the serving path: `python -m bench.sink`.

One table from one run: V2 load (wrk when installed) on the logistic model with
the sink off, on with a receiver that answers 202 at once (with the default CPU
share, with 0.1 and without a limit), and on with nobody listening (every event
fails). The five servers run side by side, pinned to CPU 0, and take the load in
interleaved rounds (medians reported), so a busy spell on a shared machine hits
them all; wrk and the receiver share CPU 1. Each row also gives what the sink
did with its events per second of load, read from the server's /metrics.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from bench.load import LoadResult, run_load
from bench.models import ensure_models
from bench.run import ROOT, process, progress, v2_body

RECEIVER_PORT = 8790


async def receiver(scope: Scope, receive: Receive, send: Send) -> None:
    """A receiver that reads each event and answers 202 (run with uvicorn)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def wait_for_receiver(url: str) -> None:
    """Until the receiver answers (it takes any path)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"{}")
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"no receiver at {url}")


def settle(url: str, limit: float = 15.0) -> None:
    """Until the server's sink has sent what it had queued (its counts stop moving)."""
    deadline = time.monotonic() + limit
    last = sink_counts(url)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sink_counts(url)
        if now == last:
            return
        last = now


def sink_counts(url: str) -> dict[str, float]:
    """Events sent, dropped and failed so far, from the server's exposition."""
    text = httpx.get(url + "/metrics").text
    counts = {}
    for outcome in ("sent", "dropped", "failed"):
        pattern = rf"^tabserve_sink_events_{outcome}_total{{[^}}]*}} ([\d.e+]+)$"
        counts[outcome] = sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))
    return counts


def main(argv: list[str] | None = None) -> int:
    """Measure each configuration in interleaved rounds and print one Markdown table."""
    parser = argparse.ArgumentParser(prog="bench.sink", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-sink-"))
    receiving = f"http://127.0.0.1:{RECEIVER_PORT}/"
    nobody = f"http://127.0.0.1:{RECEIVER_PORT + 1}/"
    configurations = {
        "sink off": {},
        "sink on, receiver up": {"TABSERVE_SINK_URL": receiving},
        "sink on, receiver down": {"TABSERVE_SINK_URL": nobody},
        "sink on, receiver up, CPU share 0.1": {
            "TABSERVE_SINK_URL": receiving,
            "TABSERVE_SINK_CPU_SHARE": "0.1",
        },
        "sink on, receiver up, no CPU limit": {
            "TABSERVE_SINK_URL": receiving,
            "TABSERVE_SINK_CPU_SHARE": "1",
        },
    }
    body = v2_body(1)
    results: dict[str, list[tuple[LoadResult, dict[str, float]]]] = {c: [] for c in configurations}
    with ExitStack() as stack:
        receiver_process = subprocess.Popen(
            [
                *("taskset", "-c", "1"),
                *(sys.executable, "-m", "uvicorn", "bench.sink:receiver"),
                *("--port", str(RECEIVER_PORT), "--log-level", "warning", "--no-access-log"),
            ],
            cwd=ROOT,
            stdout=stack.enter_context((work / "receiver.log").open("ab")),
            stderr=subprocess.STDOUT,
        )
        stack.callback(receiver_process.wait, 30)
        stack.callback(receiver_process.terminate)
        wait_for_receiver(receiving)
        urls = {}
        for port, (label, env) in enumerate(configurations.items(), start=8780):
            command = [sys.executable, "-m", "tabserve.service", "serve"]
            command += ["--models-dir", str(args.models_dir), "--port", str(port)]
            command += ["--log-level", "warning"]
            urls[label] = stack.enter_context(
                process(command, port, "0", work / f"{port}.log", env)
            )
        for url in urls.values():  # warm up
            run_load(f"{url}/v2/models/logistic/infer", body, args.connections, 1.0, work, 1)
        for _ in range(args.rounds):  # interleaved, so a busy spell hits every configuration
            for label, url in urls.items():
                before = sink_counts(url)
                target = f"{url}/v2/models/logistic/infer"
                result = run_load(target, body, args.connections, args.seconds, work, 1)
                after = sink_counts(url)
                events = {k: after[k] - before[k] for k in after}
                settle(url)  # its backlog would otherwise take CPU 0 from the next run
                progress(f"{label:<36} {result.requests_per_s:>9,.0f} req/s {events}")
                results[label].append((result, events))
    print(render(results, args.connections, args.seconds))
    return 0


def render(
    results: dict[str, list[tuple[LoadResult, dict[str, float]]]], connections: int, seconds: float
) -> str:
    """Medians per configuration (events per second of load), as a Markdown table."""
    lines = [
        f"| configuration ({connections} conn, 1 row, logistic) | requests/s (runs) | p50 ms "
        "| p99 ms | events sent/s | dropped/s | failed/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results.items():
        rates = [r.requests_per_s for r, _ in runs]

        def per_run(key: str, runs: list[tuple[LoadResult, dict[str, float]]] = runs) -> float:
            return statistics.median(e[key] for _, e in runs)

        lines.append(
            f"| {label} | {statistics.median(rates):,.0f} ({', '.join(f'{x:,.0f}' for x in rates)})"
            f" | {statistics.median(r.p50_ms for r, _ in runs):.2f}"
            f" | {statistics.median(r.p99_ms for r, _ in runs):.2f}"
            f" | {per_run('sent') / seconds:,.0f} | {per_run('dropped') / seconds:,.0f}"
            f" | {per_run('failed') / seconds:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
