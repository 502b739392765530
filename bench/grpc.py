"""`python -m bench.grpc`: one-row requests/s over gRPC against HTTP, and gRPC's cost to HTTP.

Two servers run side by side, both pinned to CPU 0 (like `bench.run`), on the
benchmark models (`bench/models.py`): one with the gRPC server on
(`TABSERVE_GRPC_PORT`), one with it off (`TABSERVE_GRPC_PORT=0`). Rounds alternate
so drift in the machine's speed hits every figure alike. Per model (forest,
logistic) and round:

* gRPC vs HTTP, both against the gRPC-on server, one row per request (a [1, 20]
  FP64 tensor), one connection, each request sent when the last was answered, from
  Python clients pinned to CPU 1: grpcio's stub with `raw_input_contents` (as
  tritonclient sends) and httpx with the V2 JSON body. Each figure includes its
  client's own cost per request;
* gRPC with 16 calls in flight on one channel (grpc.aio): what pipelining gets a
  Python client;
* HTTP V2 with 64 connections (wrk on CPU 1, else `bench.load`'s Python client)
  against the gRPC-on and the gRPC-off server, in the order off, on, on, off: what
  having the gRPC server listening costs HTTP requests (it should be nothing: an
  idle gRPC server only waits on its sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import grpc
import httpx

from bench.load import run_load, wrk_available
from bench.models import ensure_models, sample_rows
from bench.run import ROOT, process, progress, serve_command, v2_body
from bench.stream import free_port
from tabserve.service.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb

MODELS = ("forest", "logistic")
IN_FLIGHT = 16
LOAD = "HTTP V2, 64 connections (wrk)" if wrk_available() else "HTTP V2, 64 connections"


def grpc_request(model: str) -> pb.ModelInferRequest:
    """One benchmark row as tritonclient sends it: raw little-endian FP64."""
    row = sample_rows(1)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP64", shape=list(row.shape))
    request.raw_input_contents.append(row.astype("<f8").tobytes())
    return request


def grpc_sequential(target: str, model: str, seconds: float) -> float:
    """Requests/s on one channel, one at a time."""
    request = grpc_request(model)
    with grpc.insecure_channel(target) as channel:
        infer = GRPCInferenceServiceStub(channel).ModelInfer
        for _ in range(50):
            infer(request)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            infer(request)
            done += 1
        return done / (time.perf_counter() - started)


def http_sequential(url: str, model: str, seconds: float) -> float:
    """Requests/s on one keep-alive connection, one at a time."""
    body, target = v2_body(1), f"{url}/v2/models/{model}/infer"
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        for _ in range(50):
            client.post(target, content=body, headers=headers).raise_for_status()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            client.post(target, content=body, headers=headers).raise_for_status()
            done += 1
        return done / (time.perf_counter() - started)


async def _loop(call: object, seconds: float) -> float:
    """`IN_FLIGHT` tasks each awaiting `call()` in turn; completed calls per second."""
    done = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() - started < seconds:
            await call()  # type: ignore[operator]
            done += 1

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return done / (time.perf_counter() - started)


async def grpc_concurrent(target: str, model: str, seconds: float) -> float:
    """Requests/s with `IN_FLIGHT` calls outstanding on one channel."""
    request = grpc_request(model)
    async with grpc.aio.insecure_channel(target) as channel:
        infer = GRPCInferenceServiceStub(channel).ModelInfer
        for _ in range(50):
            await infer(request)
        return await _loop(lambda: infer(request), seconds)


def one_round(
    on: str, off: str, target: str, seconds: float, work: Path
) -> dict[tuple[str, str], float]:
    """Every figure once, for each model."""
    figures: dict[tuple[str, str], float] = {}
    for model in MODELS:
        figures[model, "gRPC, 1 channel, 1 at a time"] = grpc_sequential(target, model, seconds)
        figures[model, "HTTP, 1 connection, 1 at a time"] = http_sequential(on, model, seconds)
        figures[model, f"gRPC, 1 channel, {IN_FLIGHT} in flight"] = asyncio.run(
            grpc_concurrent(target, model, seconds)
        )
        body = v2_body(1)
        # off, on, on, off: each server measured once early and once late in the round
        runs: dict[str, list[float]] = defaultdict(list)
        for label, url in (("off", off), ("on", on), ("on", on), ("off", off)):
            run_load(f"{url}/v2/models/{model}/infer", body, 64, 1.0, work, 1)
            result = run_load(f"{url}/v2/models/{model}/infer", body, 64, seconds, work, 1)
            runs[label].append(result.requests_per_s)
        for label, rates in runs.items():
            figures[model, f"{LOAD}, gRPC server {label}"] = statistics.mean(rates)
    return figures


def render(rounds: list[dict[tuple[str, str], float]]) -> str:
    """Median over rounds, each figure against the model's sequential HTTP figure."""
    medians: dict[tuple[str, str], float] = {}
    collected: dict[tuple[str, str], list[float]] = defaultdict(list)
    for figures in rounds:
        for key, value in figures.items():
            collected[key].append(value)
    for key, values in collected.items():
        medians[key] = statistics.median(values)
    lines = [
        f"| model | client | req/s (median of {len(rounds)}) | x HTTP 1 conn |",
        "|---|---|---:|---:|",
    ]
    for (model, client), value in medians.items():
        base = medians[model, "HTTP, 1 connection, 1 at a time"]
        lines.append(f"| {model} | {client} | {value:,.0f} | {value / base:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start both servers pinned to CPU 0, alternate rounds, print one table."""
    parser = argparse.ArgumentParser(prog="bench.grpc", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the Python clients; the servers get CPU 0
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-grpc-"))
    http_on, http_off, grpc_port = free_port(), free_port(), free_port()
    serve = serve_command(args.models_dir)
    with ExitStack() as stack:
        on = stack.enter_context(
            process(
                [*serve, "--port", str(http_on)],
                http_on,
                "0",
                work / "on.log",
                env={"TABSERVE_GRPC_PORT": str(grpc_port)},
            )
        )
        off = stack.enter_context(
            process(
                [*serve, "--port", str(http_off)],
                http_off,
                "0",
                work / "off.log",
                env={"TABSERVE_GRPC_PORT": "0"},
            )
        )
        rounds = []
        for number in range(args.rounds):
            progress(f"round {number + 1} of {args.rounds}")
            rounds.append(one_round(on, off, f"127.0.0.1:{grpc_port}", args.seconds, work))
    print(render(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
