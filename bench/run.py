"""`make bench`: tabserve against the seed-style baseline, same models, same core.

The server runs pinned to CPU 0 and wrk to CPU 1 (when there are two); every
figure in one table comes from one run, so ratios are fair on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import orjson

from bench.load import LoadResult, run_load, wrk_available
from bench.models import SPECS, ensure_models, sample_rows
from tabserve.service.core.loading import load_version
from tabserve.service.core.served import ServedModel
from tabserve.service.settings import Settings
from tabserve.service.state import AppState, loading_config

ROOT = Path(__file__).resolve().parent.parent
BARE = "bare ASGI stack (bench/bare.py)"
BARE_UVICORN = "bare ASGI stack, uvicorn's own writes"


@dataclass(frozen=True)
class Scenario:
    """One load shape."""

    label: str
    model: str
    rows: int
    connections: int
    records: bool = False
    """Rows by feature name to POST /models/{m}/predict, instead of V2 infer."""


RECORDS = Scenario("forest, 1 record by name, 64 conn", "forest", 1, 64, records=True)
SCENARIOS = [
    Scenario("forest, 1 row, 16 conn", "forest", 1, 16),
    Scenario("forest, 1 row, 64 conn", "forest", 1, 64),
    Scenario("forest, 64 rows, 64 conn", "forest", 64, 64),
    Scenario("logistic, 1 row, 64 conn", "logistic", 1, 64),
    Scenario("hgb, 1 row, 64 conn", "hgb", 1, 64),
]


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    scenario: str
    server: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    rows_per_s: float
    errors: int


def v2_body(rows: int) -> bytes:
    """A V2 JSON request with one [rows, 20] FP64 tensor."""
    data = sample_rows(rows)
    tensor = {"name": "x", "shape": list(data.shape), "datatype": "FP64", "data": data.ravel()}
    return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)


def records_body(rows: int) -> bytes:
    """The same rows as records keyed by feature name (x0 ... x19), for the records route."""
    data = sample_rows(rows)
    records = [{f"x{i}": value for i, value in enumerate(row)} for row in data.tolist()]
    return orjson.dumps(records[0] if rows == 1 else records)


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def serve_command(models_dir: Path, *extra: str) -> list[str]:
    """`tabserve serve` on `models_dir` from this interpreter, with `extra` arguments."""
    return [
        sys.executable,
        "-m",
        "tabserve.service",
        "serve",
        "--models-dir",
        str(models_dir),
        *extra,
    ]


@contextmanager
def process(
    command: list[str],
    port: int,
    cpus: str | None,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[str]:
    """Start a server process (pinned to `cpus`) in `cwd`, wait until ready, stop it afterwards."""
    if cpus is not None and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", cpus, *command]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            command, stdout=sink, stderr=sink, cwd=cwd, env={**os.environ, **(env or {})}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited {proc.returncode}; see {log}")
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{command} not ready in 120 s; see {log}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(
    url: str, scenario: Scenario, server: str, seconds: float, work: Path, cpu: int | None
) -> Row:
    """Warm up, then one timed load run."""
    if scenario.records:
        body = records_body(scenario.rows)
        target = f"{url}/models/{scenario.model}/predict"
    else:
        body = v2_body(scenario.rows)
        target = f"{url}/v2/models/{scenario.model}/infer"
    run_load(target, body, scenario.connections, 1.0, work, cpu)
    result: LoadResult = run_load(target, body, scenario.connections, seconds, work, cpu)
    progress(f"{server:>22} | {scenario.label:<26} {result.requests_per_s:>9,.0f} req/s")
    return Row(
        scenario.label,
        server,
        result.requests_per_s,
        result.p50_ms,
        result.p99_ms,
        result.requests_per_s * scenario.rows,
        result.errors,
    )


def engine_costs(models_dir: Path) -> dict[str, dict[str, float]]:
    """Median µs per predict call at 1 and 64 rows, for the engine tabserve picks and sklearn."""
    costs: dict[str, dict[str, float]] = {}
    for name in SPECS:
        for engine in ("auto", "sklearn"):
            settings = _settings(models_dir, engine)
            model = load_served(settings, name)
            for rows in (1, 64):
                batch = sample_rows(rows)
                for _ in range(20):
                    model.runtime.predict(batch)
                runs = []
                for _ in range(200 if rows == 1 else 50):
                    started = time.perf_counter()
                    model.runtime.predict(batch)
                    runs.append(time.perf_counter() - started)
                key = f"{name}/{model.runtime.engine if engine == 'auto' else 'sklearn'}"
                costs.setdefault(key, {})[f"{rows}"] = statistics.median(runs) * 1e6
    return costs


def load_served(settings: Settings, name: str) -> ServedModel:
    """Version 1 of `name` loaded as the server loads it, outside any server."""
    state = AppState.build(settings)
    path = settings.models_dir / name / "1"
    entry = load_version(path, name, 1, loading_config(settings), state.dataplane)
    if entry.served is None:
        raise RuntimeError(f"{name} version 1 failed to load: {entry.error}")
    state.registry.add(entry)
    return entry.served


def _settings(models_dir: Path, engine: str) -> Settings:
    values: dict[str, object] = {"models_dir": models_dir}
    if "engine" in Settings.model_fields:
        values["engine"] = engine
    return Settings.model_validate(values)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, print one table, save the figures as JSON."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench-results.json")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    progress(
        "load generator: "
        + ("wrk" if wrk_available() else "python fallback (install wrk for real figures)")
    )
    ensure_models(args.models_dir)
    progress("measuring in-process engine cost")
    costs = engine_costs(args.models_dir)
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-"))
    serve = serve_command(args.models_dir)
    port = 8700
    with process([*serve, "--port", str(port)], port, "0", work / "tabserve.log") as url:
        rows += [measure(url, s, "tabserve", args.seconds, work, 1) for s in [*SCENARIOS, RECORDS]]
    port += 1
    quiet = ["--port", str(port), "--log-level", "warning"]
    with process([*serve, *quiet], port, "0", work / "tabserve-quiet.log") as url:
        rows.append(measure(url, SCENARIOS[1], "tabserve, no access log", args.seconds, work, 1))
    port += 1
    general = {"TABSERVE_FAST_PATH": "false"}
    log = work / "tabserve-general.log"
    with process([*serve, "--port", str(port)], port, "0", log, general) as url:
        rows.append(measure(url, RECORDS, "tabserve, fast paths off", args.seconds, work, 1))
    port += 1
    own_writes = {"TABSERVE_COALESCE_WRITES": "false"}
    log = work / "tabserve-uvicorn-writes.log"
    with process([*serve, "--port", str(port)], port, "0", log, own_writes) as url:
        label = "tabserve, uvicorn's own writes"
        rows.append(measure(url, SCENARIOS[1], label, args.seconds, work, 1))
    for label, protocol in ((BARE, []), (BARE_UVICORN, ["uvicorn"])):
        port += 1
        bare = [sys.executable, "-m", "bench.bare", str(port), *protocol]
        with process(bare, port, "0", work / f"bare{len(protocol)}.log") as url:
            rows.append(measure(url, SCENARIOS[3], label, args.seconds, work, 1))
    if not args.skip_baseline:
        for model in SPECS:
            port += 1
            folder = args.models_dir / model / "1"
            command = [sys.executable, "-m", "bench.baseline", str(folder), str(port)]
            with process(command, port, "0", work / f"baseline-{model}.log") as url:
                rows += [
                    measure(url, s, "seed-style baseline", args.seconds, work, 1)
                    for s in SCENARIOS
                    if s.model == model
                ]
    for workers in (1, 2):
        port += 1
        with process(
            [*serve, "--port", str(port), "--workers", str(workers)],
            port,
            None,
            work / f"w{workers}.log",
        ) as url:
            rows.append(
                measure(
                    url,
                    SCENARIOS[1],
                    f"tabserve, {workers} worker(s), 2 cores",
                    args.seconds,
                    work,
                    None,
                )
            )
    print(render(rows, costs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "engine_us": costs}, indent=2)
    )
    progress(f"figures saved to {args.out}")
    return 0


def render(rows: list[Row], costs: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table, with ratios to the baseline and to the bare stack.

    "of bare stack" compares one-row scenarios on one pinned core with the bare ASGI
    app (whose model costs nothing): how near tabserve comes to the HTTP stack's
    own limit.
    """
    baseline = {r.scenario: r for r in rows if r.server == "seed-style baseline"}
    stack = next((r for r in rows if r.server == BARE), None)
    lines = [
        "| scenario | server | requests/s | p50 ms | p99 ms | rows/s | engine µs per call "
        "| x baseline | of bare stack | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        engine = _engine_cost(r, costs)
        base = baseline.get(r.scenario)
        ratio = f"{r.requests_per_s / base.requests_per_s:.1f}x" if base and r is not base else ""
        share = ""
        pinned = r.server.startswith("tabserve") and "worker" not in r.server
        if stack is not None and pinned and ("1 row" in r.scenario or "1 record" in r.scenario):
            share = f"{r.requests_per_s / stack.requests_per_s:.0%}"
        lines.append(
            f"| {r.scenario} | {r.server} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.rows_per_s:,.0f} | {engine} | {ratio} | {share} | {r.errors} |"
        )
    lines += ["", "| model/engine | µs per call, 1 row | µs per call, 64 rows |", "|---|---:|---:|"]
    for key, by_rows in costs.items():
        lines.append(f"| {key} | {by_rows['1']:,.1f} | {by_rows['64']:,.1f} |")
    return "\n".join(lines)


def _engine_cost(row: Row, costs: dict[str, dict[str, float]]) -> str:
    """In process, µs per call of the engine serving `row` (scikit-learn for the baseline)."""
    scenario = next((s for s in [*SCENARIOS, RECORDS] if s.label == row.scenario), None)
    if scenario is None or not row.server.startswith(("tabserve", "seed-style")):
        return ""
    sklearn = f"{scenario.model}/sklearn"
    if row.server.startswith("seed-style"):
        key: str | None = sklearn
    else:
        key = next((k for k in costs if k.startswith(f"{scenario.model}/") and k != sklearn), None)
    cost = costs.get(key, {}).get(str(scenario.rows)) if key else None
    if key is None or cost is None:
        return ""
    return f"{key.split('/', 1)[1]} {cost:,.1f}"


if __name__ == "__main__":
    sys.exit(main())
