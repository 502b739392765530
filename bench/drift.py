"""`python -m bench.drift`: what drift counting costs, in process and over HTTP.

1. In process: µs per model call for binning a batch (`DriftReference.count`), for the
   whole call listener (`DriftMonitor.observe`), and for one flush of a busy
   second's buffer, beside the model call itself (forest, 20 features, 3 classes).
2. Over HTTP, in one run: two servers on the same models, drift on and drift off
   (`TABSERVE_DRIFT_ENABLED=false`), measured in alternating rounds (on, off, on,
   off, ...) for forest at 1 and 64 rows per request; the overhead is
   1 - median(on) / median(off). The servers share CPU 0 (one is idle while the
   other is loaded) and wrk runs on CPU 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.load import wrk_available
from bench.models import ensure_models, sample_rows
from bench.run import ROOT, SCENARIOS, Row, measure, process, progress
from service.core.drift import DriftMonitor
from service.core.drift_reference import DriftReference
from service.core.loading import load_version
from service.core.metrics import ServiceMetrics
from service.core.registry import ModelRegistry
from service.core.runtime import Prediction
from service.settings import Settings

HTTP_SCENARIOS = [SCENARIOS[1], SCENARIOS[2]]  # forest at 1 and 64 rows, 64 connections


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
    model = load_version(models_dir / "forest" / "1", "forest", 1, settings, metrics)
    assert model.manifest is not None
    registry = ModelRegistry()
    registry.add(model)
    reference = DriftReference(model.manifest)
    monitor = DriftMonitor(registry, metrics, settings)
    figures: dict[str, dict[int, float]] = {}
    for rows in (1, 64):
        batch = sample_rows(rows)
        prediction = model.runtime.predict(batch)
        repeat = 2000 if rows == 1 else 500
        figures.setdefault("model call (predict_proba)", {})[rows] = median_us(
            partial(model.runtime.predict, batch), repeat
        )
        figures.setdefault("bin the batch (DriftReference.count)", {})[rows] = median_us(
            partial(reference.count, batch, prediction), repeat
        )
        figures.setdefault("call listener (DriftMonitor.observe)", {})[rows] = median_us(
            partial(monitor.observe, model, batch, prediction), repeat
        )

        def observe_and_flush(
            b: npt.NDArray[np.float64] = batch, p: Prediction = prediction
        ) -> None:
            monitor.observe(model, b, p)
            monitor.flush()

        # one inc() per bin the batch filled: an upper bound of one timer tick per call
        figures.setdefault("observe, then flush its bins", {})[rows] = median_us(
            observe_and_flush, 200
        )
    return [(what, by[1], by[64]) for what, by in figures.items()]


def over_http(models_dir: Path, seconds: float, rounds: int) -> list[tuple[str, float, float]]:
    """(scenario, median req/s drift on, median req/s drift off), alternating rounds."""
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-drift-"))
    serve = [sys.executable, "-m", "service", "serve", "--models-dir", str(models_dir)]
    quiet = ["--log-level", "warning"]
    results: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        urls = {}
        for port, (label, enabled) in enumerate((("on", "true"), ("off", "false")), start=8790):
            urls[label] = stack.enter_context(
                process(
                    [*serve, "--port", str(port), *quiet],
                    port,
                    "0",
                    work / f"drift-{label}.log",
                    env={"TABSERVE_DRIFT_ENABLED": enabled},
                )
            )
        for round_ in range(rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for scenario in HTTP_SCENARIOS:
                for label in order:
                    row: Row = measure(urls[label], scenario, f"drift {label}", seconds, work, 1)
                    results.setdefault((scenario.label, label), []).append(row.requests_per_s)
    return [
        (
            s.label,
            statistics.median(results[(s.label, "on")]),
            statistics.median(results[(s.label, "off")]),
        )
        for s in HTTP_SCENARIOS
    ]


def render(cpu: list[tuple[str, float, float]], http: list[tuple[str, float, float]]) -> str:
    """Both tables, in Markdown."""
    lines = [
        "| forest, in process | µs per call, 1 row | µs per call, 64 rows |",
        "|---|---:|---:|",
    ]
    lines += [f"| {what} | {one:,.1f} | {many:,.1f} |" for what, one, many in cpu]
    lines += [
        "",
        "| scenario | drift on, req/s | drift off, req/s | overhead |",
        "|---|---:|---:|---:|",
    ]
    for label, on, off in http:
        lines.append(f"| {label} | {on:,.0f} | {off:,.0f} | {(1 - on / off) * 100:+.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, then print the tables."""
    parser = argparse.ArgumentParser(prog="bench.drift", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--skip-http", action="store_true", help="in-process figures only")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    progress("measuring the in-process cost")
    cpu = in_process(args.models_dir)
    http: list[tuple[str, float, float]] = []
    if not args.skip_http:
        progress(
            "load generator: "
            + ("wrk" if wrk_available() else "python fallback (install wrk for real figures)")
        )
        http = over_http(args.models_dir, args.seconds, args.rounds)
    print(render(cpu, http))
    return 0


if __name__ == "__main__":
    sys.exit(main())
