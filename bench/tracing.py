"""`python -m bench.tracing`: what tracing costs per request, off vs on (sampling 1.0 and 0.0).

The same in-process measure as `bench.asgi_cost`: 64 concurrent clients call the whole
ASGI app (lifespan run, models loaded) with the one-row body of `make bench`, and the
process's CPU time (inference threads and the span processor's thread included) is
divided by the requests. Three apps per round, in turn, so drift in the machine's speed
hits each alike: tracing off (the default), on with every trace kept
(`OTEL_TRACES_SAMPLER=traceidratio`, `OTEL_TRACES_SAMPLER_ARG=1.0`) and on with none kept
(`..._ARG=0.0`: spans are started, not recorded). Requests carry no `traceparent`, so
every trace is a root the sampler decides.

Spans go to an exporter that encodes each batch as the OTLP exporter does
(`encode_spans`, protobuf) and drops it: the export's CPU is counted, a collector's
network round trip is not. It counts the spans, so a batch processor that dropped
spans (its queue full) would show.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.types import ASGIApp

from bench.asgi_cost import CLIENTS, measure
from bench.models import ensure_models
from bench.run import ROOT
from tabserve.service.app import create_app
from tabserve.service.settings import Settings

SCENARIOS = ("forest", "logistic")
MODES = {"off": None, "on, sampled 1.0": "1.0", "on, sampled 0.0": "0.0"}
"""Mode -> OTEL_TRACES_SAMPLER_ARG (None: tracing off)."""


class EncodingExporter(SpanExporter):
    """Encodes spans to OTLP protobuf as the OTLP/HTTP exporter would, then drops them."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


def app_maker(ratio: str | None, exporter: EncodingExporter) -> object:
    """`make_app` for `measure`: tracing off, or on with the sampler at `ratio`."""

    def make(models: Path) -> ASGIApp:
        # No gRPC server: HTTP is measured, and another server may hold the port.
        settings = Settings(models_dir=models, grpc_port=0, tracing_enabled=ratio is not None)
        if ratio is None:
            return create_app(settings)
        os.environ["OTEL_TRACES_SAMPLER"] = "traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = ratio
        return create_app(settings, span_exporter=exporter)

    return make


def run(models: Path, rounds: int, per_client: int) -> dict[tuple[str, str], list[float]]:
    """CPU µs per request for each scenario and mode, one figure per round."""
    figures: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        for scenario in SCENARIOS:
            for mode, ratio in MODES.items():
                exporter = EncodingExporter()
                make = app_maker(ratio, exporter)
                cpu = asyncio.run(measure(models, scenario, per_client, make))  # type: ignore[arg-type]
                figures.setdefault((scenario, mode), []).append(cpu)
                spans = f", {exporter.spans / (CLIENTS * (per_client + 20)):.2f} spans/request"
                print(
                    f"round {round_ + 1} {scenario:8} {mode:16} {cpu:7.1f} µs" + spans, flush=True
                )
    return figures


def table(figures: dict[tuple[str, str], list[float]]) -> str:
    """Median CPU µs per request, and each mode against off."""
    lines = [
        "| model | tracing | CPU µs/request (median) | vs off |",
        "|---|---|---:|---:|",
    ]
    for scenario in SCENARIOS:
        base = statistics.median(figures[(scenario, "off")])
        for mode in MODES:
            value = statistics.median(figures[(scenario, mode)])
            extra = f"{value / base:.2f}x (+{value - base:.1f} µs)"
            lines.append(f"| {scenario} | {mode} | {value:.1f} | {extra} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every mode in turn for `--rounds` rounds and print the table."""
    parser = argparse.ArgumentParser(prog="bench.tracing", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=60, help="per client, per run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    logging.disable(logging.CRITICAL)  # the access log would measure the terminal
    print(table(run(args.models_dir, args.rounds, args.requests)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
