"""`python -m bench.instructions [--tree DIR] [--requests N]`: CPU instructions per request.

Serves a source tree (this one, or a checkout of another commit) under valgrind's
callgrind and counts the instructions its event-loop thread executes for exactly
`--requests` one-row requests (`--path`, the body of `make bench`) sent one at a
time on a keep-alive connection, after a warm-up. Requests are not batched (one model call
each), so timing does not change the work. The count moves by a percent or two from
run to run, where requests/s on this shared machine moves 15-20 % round to round:
it is how issue 19's HTTP gap was split between the HTTP guard, FastAPI's wrappers
and the lanes' route matching (`docs/benchmarks.md`). It counts work, not time:
cache misses and the inference thread are not in it.

Needs `valgrind` (Debian's package). Startup under valgrind takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.models import ensure_models
from bench.run import ROOT, records_body, v2_body


def send(port: int, path: str, requests: int) -> None:
    """`requests` requests, one at a time on one keep-alive connection (how many
    requests one loop iteration serves would otherwise vary with timing, valgrind's
    and the machine's, and with it the work per request)."""
    body = records_body(1) if path.endswith("/predict") else v2_body(1)
    head = f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    request = (head + f"content-length: {len(body)}\r\n\r\n").encode() + body
    asyncio.run(_client(port, request, requests))


async def _client(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"not answered 200: {head[:60]!r}")
        length = re.search(rb"(?i)content-length: *([0-9]{1,9})", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.instructions", description=__doc__)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to serve")
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--path", default="/v2/models/forest/infer")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    requests = args.requests
    work = Path(tempfile.mkdtemp(prefix="tabserve-instructions-"))
    out = work / "callgrind.out"
    serve = [sys.executable, "-m", "tabserve.service", "serve", "--log-level", "warning"]
    serve += ["--models-dir", str(args.models_dir), "--port", str(args.port)]
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
    valgrind.append(f"--callgrind-out-file={out}")
    env = {"PYTHONPATH": str(args.tree.resolve()), "PYTHONMALLOC": "malloc", "PATH": "/usr/bin"}
    # One request, one model call: how many requests share a call depends on timing
    # (and valgrind's), and each call costs the loop thread a hand-off and a wake-up.
    env["TABSERVE_BATCH_MAX_ROWS"] = "1"
    env["TABSERVE_GRPC_PORT"] = "0"  # HTTP is measured; two trees can then run at once
    with (work / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [*valgrind, *serve], cwd=args.tree, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(args.port, server)
        send(args.port, args.path, 160)  # warm-up: lanes built, caches filled
        control = ["callgrind_control"]
        subprocess.run([*control, "-i", "on", str(server.pid)], check=True, capture_output=True)
        send(args.port, args.path, requests)
        subprocess.run([*control, "-i", "off", str(server.pid)], check=True, capture_output=True)
        subprocess.run([*control, "-d", str(server.pid)], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
    main_thread = _total(Path(f"{out}.1-01"))
    print(f"tree {args.tree}: {args.path}, {requests} requests")
    print(f"event-loop thread: {main_thread / requests:,.0f} instructions per request")
    return 0


def _wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited during startup")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the server did not become ready")


def _total(dump: Path) -> int:
    """The instruction count of a callgrind dump (its `totals:` line; a dump made on
    request leaves `summary:` at 0)."""
    for line in reversed(dump.read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {dump}")


if __name__ == "__main__":
    raise SystemExit(main())
