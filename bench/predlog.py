"""The prediction log's cost on the request path: forest, 1 row, log `all` vs `off`.

`python -m bench.predlog --seconds 8 --rounds 2`. First, in-process CPU costs: the
listener's enqueue per request (and with durability `journal`, enqueue plus the
journal's append), and the writer's conversion and SQLite insert per row. Then
the HTTP runs: the same server (pinned to CPU 0, wrk on CPU 1, as `make bench`)
runs with the log off, on, and on with the journal, in turn, so the spread
between rounds shows next to the difference. With the log on, the SQLite
writer thread shares CPU 0 with the server: that is the real cost. After each
logged run, the rows written and dropped (from /metrics) are printed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.models import ensure_models, sample_rows
from bench.run import ROOT, SCENARIOS, Row, load_served, measure, process, progress, serve_command
from tabserve.service.core.dataplane import Served
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.predlog.journal import Journal
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.predlog.writer import PredictionLogWriter, WriterPolicy
from tabserve.service.settings import Settings

SCENARIO = SCENARIOS[1]  # forest, 1 row, 64 connections


def _series(url: str) -> dict[str, float]:
    """Prediction-log counters summed over labels: written, dropped, queue."""
    totals: dict[str, float] = {}
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.startswith("tabserve_prediction_log_") and not name.endswith("_created"):
                key = sample.name + "".join(f"{{{v}}}" for v in sample.labels.values())
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def in_process_costs(models_dir: Path, work: Path) -> dict[str, float]:
    """CPU µs of the event loop's part (enqueue) and of the writer thread's part, per row.

    CPU time (`time.thread_time`) rather than wall time: on a shared machine it moves
    far less with what else runs, and it is what the log takes from the server's core.
    """
    model = load_served(_settings(models_dir), "forest")
    features = sample_rows(1)
    prediction = model.runtime.predict(features)
    served = Served("bench-0", model, features, prediction, time.time(), 0.001)
    store = PredictionStore(f"sqlite:///{work / 'in-process.db'}")
    store.migrate()
    calls = 100_000
    series = PredictionLogMetrics(ServiceMetrics().registry)
    writer = PredictionLogWriter(store, WriterPolicy(queue_rows=calls + 1), series)
    started = time.thread_time()
    for _ in range(calls):
        writer(served)
    enqueue = (time.thread_time() - started) / calls * 1e6
    journaled = _journaled_enqueue(store, served, work)
    rows = 20_000
    many = [
        Served(f"bench-{i}", model, features, prediction, time.time(), 0.001) for i in range(rows)
    ]
    started = time.thread_time()
    wall = time.perf_counter()
    logged = [row for item in many for row in writer._rows(item)]
    for start in range(0, rows, 1000):
        store.write(logged[start : start + 1000])
    cost = {
        "enqueue_us_per_request": enqueue,
        "enqueue_with_journal_us_per_request": journaled,
        "write_cpu_us_per_row": (time.thread_time() - started) / rows * 1e6,
        "write_wall_us_per_row": (time.perf_counter() - wall) / rows * 1e6,
    }
    store.dispose()
    return cost


def _journaled_enqueue(store: PredictionStore, served: Served, work: Path) -> float:
    """CPU µs per request of the listener in journal mode: enqueue, rows, one file write."""
    calls = 20_000
    journal = Journal(work / "journal")
    journal.open()
    policy = WriterPolicy(queue_rows=calls + 1)
    series = PredictionLogMetrics(ServiceMetrics().registry)
    writer = PredictionLogWriter(store, policy, series, journal=journal)
    started = time.thread_time()
    for _ in range(calls):
        writer(served)
    return (time.thread_time() - started) / calls * 1e6


def _settings(models_dir: Path) -> Settings:
    return Settings(models_dir=models_dir)


def main(argv: list[str] | None = None) -> int:
    """Alternate log off / all for `--rounds` rounds; print one Markdown table."""
    parser = argparse.ArgumentParser(prog="bench.predlog", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-predlog-"))
    costs = in_process_costs(args.models_dir, work)
    progress(", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    serve = serve_command(args.models_dir)
    rows: list[tuple[str, Row]] = []
    port = 8790
    for round_ in range(1, args.rounds + 1):
        for mode, durability in (("off", "queued"), ("all", "queued"), ("all", "journal")):
            port += 1
            data = work / f"data-{round_}-{mode}-{durability}"
            env = {
                "TABSERVE_PREDLOG_MODE": mode,
                "TABSERVE_PREDLOG_DURABILITY": durability,
                "TABSERVE_DATA_DIR": str(data),
            }
            command = [*serve, "--port", str(port), "--log-level", "warning"]
            logfile = work / f"{mode}-{durability}-{round_}.log"
            with process(command, port, "0", logfile, env) as url:
                label = f"tabserve, log {mode}" + (", journal" if durability == "journal" else "")
                row = measure(url, SCENARIO, label, args.seconds, work, 1)
                counters = _series(url) if mode == "all" else {}
            rows.append((f"{round_}", row))
            if counters:
                database = data / "predictions.db"
                size = database.stat().st_size if database.exists() else 0
                progress(f"round {round_}: {counters}; predictions.db {size / 1e6:.1f} MB")
    print("| round | server | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for round_, r in rows:
        print(
            f"| {round_} | {r.server} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.errors} |"
        )
    print()
    print("| in-process cost (forest, 20 features, 1 row per request) | µs |")
    print("|---|---:|")
    for key, value in costs.items():
        print(f"| {key} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
