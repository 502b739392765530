"""Soak: steady load for a long time while sampling the server's memory.

`python -m bench.soak --minutes 10` serves the benchmark models, drives load
(wrk when installed) in rounds, samples RSS/PSS of every server process every
few seconds, and reports the growth between the first minute and the end.
A leak shows as growth that keeps climbing; allocator warm-up levels off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.load import run_load
from bench.memory import children, memory_of, server_pid
from bench.models import ensure_models
from bench.run import ROOT, process, progress, serve_command, v2_body


def total_memory(top: int) -> tuple[float, float]:
    """RSS and PSS summed over the server and its workers, MiB."""
    rss = pss = 0.0
    for pid in [top, *children(top)]:
        r, p = memory_of(pid)
        rss += r
        pss += p
    return rss, pss


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the samples' summary."""
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-soak-"))
    port = 8795
    command = serve_command(args.models_dir)
    command += ["--port", str(port), "--workers", str(args.workers), "--log-level", "warning"]
    samples: list[tuple[float, float, float]] = []
    requests = 0.0
    with process(command, port, None, work / "soak.log") as url:
        top = server_pid(port)
        stop = threading.Event()
        started = time.monotonic()

        def sampler() -> None:
            while not stop.wait(args.sample_seconds):
                rss, pss = total_memory(top)
                samples.append((time.monotonic() - started, rss, pss))
                progress(f"t={samples[-1][0]:6.0f}s  RSS {rss:7.1f} MiB  PSS {pss:7.1f} MiB")

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        end = started + args.minutes * 60
        bodies = [("forest", v2_body(1)), ("logistic", v2_body(8)), ("hgb", v2_body(1))]
        round_number = 0
        while time.monotonic() < end:
            model, body = bodies[round_number % len(bodies)]
            seconds = float(round(min(20.0, max(1.0, end - time.monotonic()))))
            result = run_load(f"{url}/v2/models/{model}/infer", body, 32, seconds, work, None)
            requests += result.requests_per_s * seconds
            round_number += 1
        stop.set()
        thread.join()
    first = [s for s in samples if s[0] <= 60] or samples[:1]
    last = samples[-max(1, len(samples) // 10) :]
    base_rss = statistics.median(s[1] for s in first)
    end_rss = statistics.median(s[1] for s in last)
    print("| minutes | requests | RSS first minute MiB | RSS last tenth MiB | growth |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {args.minutes:g} | {requests:,.0f} | {base_rss:,.1f} | {end_rss:,.1f} | "
        f"{(end_rss - base_rss) / base_rss * 100:+.1f}% |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
