"""Resident (RSS) and proportional (PSS) memory per process, with 1 and 2 workers.

PSS divides each shared page among the processes sharing it, so when forked
workers share the preloaded models their PSS stays well below their RSS.
`python -m bench.memory` prints one table (Linux: reads /proc/PID/smaps_rollup).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.models import ensure_models
from bench.run import ROOT, process, progress, serve_command, v2_body


def memory_of(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in {"Rss:", "Pss:"}:
            fields[parts[0][:-1]] = int(parts[1]) / 1024
    return fields["Rss"], fields["Pss"]


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def server_pid(port: int) -> int:
    """The pid of the process listening on `port` (the supervisor when there are workers)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].split(":")[1], 16) == port and cols[3] == "0A":
            inode = cols[9]
            break
    candidates = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    candidates.append(int(entry.name))
                    break
            except OSError:
                continue
    return min(candidates)  # the supervisor was started first


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="bench.memory", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-memory-"))
    lines = ["| workers | process | RSS MiB | PSS MiB |", "|---|---|---:|---:|"]
    for workers in (1, 2):
        port = 8790 + workers
        command = serve_command(args.models_dir)
        command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
        with process(command, port, None, work / f"memory-{workers}.log") as url:
            for model in ("forest", "logistic", "hgb"):  # touch every model in every worker
                for _ in range(20):
                    httpx.post(f"{url}/v2/models/{model}/infer", content=v2_body(1))
            time.sleep(1)
            top = server_pid(port)
            procs = [("server" if workers == 1 else "supervisor", top)]
            procs += [(f"worker {i + 1}", pid) for i, pid in enumerate(sorted(children(top)))]
            total_pss = 0.0
            for label, pid in procs:
                rss, pss = memory_of(pid)
                total_pss += pss
                lines.append(f"| {workers} | {label} | {rss:,.0f} | {pss:,.0f} |")
            lines.append(f"| {workers} | **all** | | **{total_pss:,.0f}** |")
            progress(f"{workers} worker(s): total PSS {total_pss:,.0f} MiB")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
