"""The prediction log's cost on the request path: forest, 1 row, log `all` vs `off`.

`python -m bench.predlog --seconds 8 --rounds 2`: the same server (pinned to CPU 0,
wrk on CPU 1, as `make bench`) runs with the log off and on, alternating, so the
spread between rounds shows next to the difference. With the log on, the SQLite
writer thread shares CPU 0 with the server: that is the real cost. After each
logged run, the rows written and dropped (from /metrics) are printed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.models import ensure_models
from bench.run import ROOT, SCENARIOS, Row, measure, process, progress

SCENARIO = SCENARIOS[1]  # forest, 1 row, 64 connections


def _series(url: str) -> dict[str, float]:
    """Prediction-log counters summed over labels: written, dropped, queue."""
    totals: dict[str, float] = {}
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("tabserve_prediction_log_"):
                key = sample.name + "".join(f"{{{v}}}" for v in sample.labels.values())
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def main(argv: list[str] | None = None) -> int:
    """Alternate log off / all for `--rounds` rounds; print one Markdown table."""
    parser = argparse.ArgumentParser(prog="bench.predlog", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-bench-predlog-"))
    serve = [sys.executable, "-m", "service", "serve", "--models-dir", str(args.models_dir)]
    rows: list[tuple[str, Row]] = []
    port = 8790
    for round_ in range(1, args.rounds + 1):
        for mode in ("off", "all"):
            port += 1
            data = work / f"data-{round_}-{mode}"
            env = {"TABSERVE_PREDLOG_MODE": mode, "TABSERVE_DATA_DIR": str(data)}
            command = [*serve, "--port", str(port), "--log-level", "warning"]
            with process(command, port, "0", work / f"{mode}-{round_}.log", env) as url:
                label = f"tabserve, log {mode}"
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
