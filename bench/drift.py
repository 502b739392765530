"""`python -m bench.drift`: what drift counting costs, in process and over HTTP.

1. In process, beside the model call itself (forest, 20 features, 3 classes): µs
   per call for the call listener (`DriftMonitor.observe`, which keeps the batch),
   for binning one call on its own (`DriftReference.count`), and the share of one
   flush (binning 100 kept calls at once, then the counter increments) per call.
2. Over HTTP, in one run: two servers on the same models, drift on and drift off
   (`TABSERVE_DRIFT_ENABLED=false`), measured in alternating rounds (on, off, off,
   on, ...) for forest at 1 and 64 rows per request on 64 connections, and at 1
   row on one connection (no coalescing: the worst case). Each run
   reports requests/s and the server's CPU time per request (from /proc, over
   the requests its own metrics counted): on a shared machine throughput swings
   with the neighbours' load, CPU per request less. The overhead is the median
   over rounds of CPU on / CPU off - 1, each pair measured back to back, or at
   the same time with `--together` (both servers then share CPU 0 and see the
   same neighbours). The servers run on CPU 0, wrk on CPU 1.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from bench.load import run_load, wrk_available
from bench.models import ensure_models, sample_rows
from bench.run import ROOT, SCENARIOS, Scenario, load_served, process, progress, v2_body
from tabserve.service.core.drift import DriftMonitor
from tabserve.service.core.drift_metrics import DriftMetrics
from tabserve.service.core.drift_reference import DriftReference
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.runtime import Prediction
from tabserve.service.settings import Settings

# forest at 1 and 64 rows on 64 connections (as in `make bench`), and 1 row on one
# connection: every request its own model call, so nothing amortises the drift work
HTTP_SCENARIOS = [Scenario("forest, 1 row, 1 conn", "forest", 1, 1), SCENARIOS[1], SCENARIOS[2]]


def free_port() -> int:
    """A TCP port nothing listens on right now (other benchmarks may hold the fixed ones)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def median_us(call: Callable[[], object], repeat: int) -> float:
    """Median µs of `call` over `repeat` runs, after a warm-up."""
    for _ in range(min(50, repeat)):
        call()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1e6


def in_process(models_dir: Path) -> list[tuple[str, float, float]]:
    """(what, µs at 1 row, µs at 64 rows) for the model call and the drift work."""
    settings = Settings(models_dir=models_dir)
    metrics = ServiceMetrics()
    model = load_served(settings, "forest")
    registry = ModelRegistry()
    reference = DriftReference(model.manifest)
    monitor = DriftMonitor(registry, metrics, DriftMetrics(metrics.registry), settings.drift)
    figures: dict[str, dict[int, float]] = {}
    for rows in (1, 64):
        batch = sample_rows(rows)
        prediction = model.runtime.predict(batch)
        repeat = 2000 if rows == 1 else 500
        figures.setdefault("model call (predict_proba)", {})[rows] = median_us(
            partial(model.runtime.predict, batch), repeat
        )
        figures.setdefault("call listener (DriftMonitor.observe: keep the batch)", {})[rows] = (
            median_us(partial(monitor.observe, model, batch, prediction), repeat)
        )
        monitor.flush()
        figures.setdefault("binning one call on its own (DriftReference.count)", {})[rows] = (
            median_us(partial(reference.count, batch, prediction), repeat)
        )

        def flush_after(calls: int, b: npt.NDArray[np.float64], p: Prediction) -> None:
            for _ in range(calls):
                monitor.observe(model, b, p)
            monitor.flush()

        # a timer tick after 100 calls: one pass over their rows, one inc() per filled bin
        tick = median_us(partial(flush_after, 100, batch, prediction), 50)
        observe = figures["call listener (DriftMonitor.observe: keep the batch)"][rows]
        figures.setdefault("flush, per call kept (100 calls per tick)", {})[rows] = (
            tick / 100 - observe
        )
    return [(what, by[1], by[64]) for what, by in figures.items()]


@dataclass
class Measured:
    """Load runs of one scenario on one server."""

    requests_per_s: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)


def over_http(
    models_dir: Path, seconds: float, rounds: int, together: bool
) -> list[tuple[str, Measured, Measured]]:
    """(scenario, drift on, drift off): alternating rounds, or both servers at once."""
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-drift-"))
    serve = [sys.executable, "-m", "tabserve.service", "serve", "--models-dir", str(models_dir)]
    quiet = ["--log-level", "warning"]
    results: dict[tuple[str, str], Measured] = {}
    with ExitStack() as stack:
        servers = {}
        for label, enabled in (("on", "true"), ("off", "false")):
            port = free_port()
            url = stack.enter_context(
                process(
                    [*serve, "--port", str(port), *quiet],
                    port,
                    "0",
                    work / f"drift-{label}.log",
                    env={"TABSERVE_DRIFT_ENABLED": enabled},
                )
            )
            (work / label).mkdir()
            servers[label] = (url, pid_listening(port), work / label)

        def run(label: str, scenario: Scenario) -> None:
            url, pid, folder = servers[label]
            body = v2_body(scenario.rows)
            target = f"{url}/v2/models/{scenario.model}/infer"
            run_load(target, body, scenario.connections, 1.0, folder, 1)  # warm-up
            # both scrapes lie outside the CPU interval: a drift-on exposition is longer
            rows, cpu = rows_served(url, scenario.model), cpu_seconds(pid)
            load = run_load(target, body, scenario.connections, seconds, folder, 1)
            used = cpu_seconds(pid) - cpu
            requests = (rows_served(url, scenario.model) - rows) / scenario.rows
            measured = results.setdefault((scenario.label, label), Measured())
            measured.requests_per_s.append(load.requests_per_s)
            measured.cpu_us_per_request.append(used / requests * 1e6)
            progress(
                f"drift {label:>3} | {scenario.label:<26} {load.requests_per_s:>7,.0f} "
                f"req/s {measured.cpu_us_per_request[-1]:>7,.0f} CPU µs/request"
            )

        for round_ in range(rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for scenario in HTTP_SCENARIOS:
                if together:
                    with ThreadPoolExecutor(max_workers=2) as pool:
                        list(pool.map(run, order, [scenario] * 2))
                else:
                    for label in order:
                        run(label, scenario)
    return [(s.label, results[(s.label, "on")], results[(s.label, "off")]) for s in HTTP_SCENARIOS]


def pid_listening(port: int) -> int:
    """The server process started with `--port PORT` (taskset execs it, same pid)."""
    wanted = f"--port\0{port}\0".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if wanted in cmdline.read_bytes() and b"service" in cmdline.read_bytes():
                return int(cmdline.parent.name)
        except OSError:
            continue
    raise RuntimeError(f"no server process for port {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows_served(url: str, model: str) -> float:
    """tabserve_inference_rows_total of `model`, from the server's own metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tabserve_inference_rows_total" and sample.labels["model"] == model
    )


def render(cpu: list[tuple[str, float, float]], http: list[tuple[str, Measured, Measured]]) -> str:
    """Both tables, in Markdown.

    Over HTTP: medians over the rounds, and the CPU overhead as the median (and
    range) of each round's ratio, on over off measured back to back, which cancels
    most of the neighbours' slower swings.
    """
    lines = [
        "| forest, in process | µs per call, 1 row | µs per call, 64 rows |",
        "|---|---:|---:|",
    ]
    lines += [f"| {what} | {one:,.1f} | {many:,.1f} |" for what, one, many in cpu]
    if not http:
        return "\n".join(lines)
    lines += [
        "",
        "| scenario | req/s on | req/s off | CPU µs/request on | CPU µs/request off | "
        "CPU overhead, median of rounds (range) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    median = statistics.median
    for label, on, off in http:
        ratios = [
            (a / b - 1) * 100
            for a, b in zip(on.cpu_us_per_request, off.cpu_us_per_request, strict=True)
        ]
        lines.append(
            f"| {label} | {median(on.requests_per_s):,.0f} | {median(off.requests_per_s):,.0f} | "
            f"{median(on.cpu_us_per_request):,.0f} | {median(off.cpu_us_per_request):,.0f} | "
            f"{median(ratios):+.1f} % ({min(ratios):+.0f} to {max(ratios):+.0f} %) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, then print the tables."""
    parser = argparse.ArgumentParser(prog="bench.drift", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per server")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--skip-http", action="store_true", help="in-process figures only")
    parser.add_argument(
        "--together",
        action="store_true",
        help="load both servers at the same time (same neighbours' noise for both)",
    )
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    progress("measuring the in-process cost")
    cpu = in_process(args.models_dir)
    http: list[tuple[str, Measured, Measured]] = []
    if not args.skip_http:
        progress(
            "load generator: "
            + ("wrk" if wrk_available() else "python fallback (install wrk for real figures)")
        )
        http = over_http(args.models_dir, args.seconds, args.rounds, args.together)
    print(render(cpu, http))
    return 0


if __name__ == "__main__":
    sys.exit(main())
