"""The hardening probe of issue #17, rerun: `python -m bench.probe` (a few minutes).

One real server (gunicorn, 2 workers, prediction log on in durability `journal`,
admin token set, 1 MiB body limit, 10 s read timeout) gets, in turn:

1. the issue's failure cases: huge integers on V1, records and feedback,
   non-ASCII digit versions and timeout headers, chunked bodies over the limit on
   every lane, 1e308 truths, text/plain bodies on both record paths, 50,000
   headers and a 64 MiB header, 50 aborted uploads, a manifest edited after export;
2. `--malformed` random malformed requests (seeded mutations of valid ones);
3. a normal client's latency alone, then while 200 slow clients hold connections;
4. a worker SIGKILLed under load: answered rows missing from the log afterwards;
5. SIGTERM with 8 keep-alive and 8 new-connection clients under load;
then a one-process server gets step 5 again. Printed: every figure, and the 5xx
answers with the request that drew them. A bench, not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.probe_cases import huge_heads, issue_cases, malformed
from bench.probe_load import (
    drain_under_load,
    kill_a_worker_under_load,
    latency_with_slow_clients,
    logged_request_ids,
)
from bench.probe_wire import Tally, abort_upload, exchange
from bench.run import progress, serve_command
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train

TOKEN = "probe-admin-token"
BODY_LIMIT = 1 << 20


@dataclass
class Server:
    """A server process in its own process group."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def build_models(root: Path) -> None:
    """iris v1 (forest) and v2 (logistic), diabetes (ridge), and `edited`: iris with two
    feature names swapped in its manifest after export."""
    iris = load_bundled("iris")
    train(TrainRequest(iris, "random_forest", root, "iris", params={"n_estimators": 10}))
    train(TrainRequest(iris, "logistic_regression", root, "iris"))
    train(TrainRequest(load_bundled("diabetes"), "ridge", root, "diabetes"))
    train(TrainRequest(iris, "logistic_regression", root, "edited"))
    manifest = root / "edited" / "1" / "model.json"
    document = json.loads(manifest.read_text())
    first, second = document["features"][0], document["features"][1]
    first["name"], second["name"] = second["name"], first["name"]
    manifest.write_text(json.dumps(document, indent=2))


@contextmanager
def serving(models: Path, work: Path, workers: int, log_on: bool) -> Iterator[Server]:
    """Start a server; kill its process group afterwards if it is still there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "TABSERVE_ADMIN_TOKEN": TOKEN,
        "TABSERVE_MAX_BODY_BYTES": str(BODY_LIMIT),
        "TABSERVE_REQUEST_READ_TIMEOUT_SECONDS": "10",
        "TABSERVE_LOG_LEVEL": "warning",
        "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{workers}"),
    }
    if log_on:
        env |= {
            "TABSERVE_PREDLOG_MODE": "all",
            "TABSERVE_PREDLOG_DURABILITY": "journal",
            "TABSERVE_DATA_DIR": str(work / "data"),
        }
    command = serve_command(models, "--port", str(port), "--workers", str(workers))
    with (work / f"server-{workers}.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
    server = Server(process, port)
    try:
        _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited {server.process.returncode}")
        try:
            if httpx.get(server.url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server was not ready within 120 s")


def a_logged_prediction(url: str, models: Path) -> str:
    """The request id of one diabetes prediction (feedback needs one)."""
    manifest = json.loads((models / "diabetes" / "1" / "model.json").read_text())
    row = {feature["name"]: 0.01 for feature in manifest["features"]}
    answer = httpx.post(url + "/models/diabetes/predict", json=row, timeout=30)
    answer.raise_for_status()
    request_id: str = answer.json()["request_id"]
    return request_id


def send_all(port: int, cases: list[tuple[str, bytes]], tally: Tally, threads: int) -> None:
    """Send every case on its own connection, `threads` at a time."""

    def one(case: tuple[str, bytes]) -> None:
        label, raw = case
        tally.add(exchange(port, raw), label)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, cases))


def server_errors_counted(url: str) -> Counter[str]:
    """`tabserve_http_requests_total` of 5xx and 499 statuses, by status, all workers summed."""
    counted: Counter[str] = Counter()
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("tabserve_http_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            if status.startswith("5") or status == "499":
                counted[status] += int(float(line.rsplit(" ", 1)[1]))
    return counted


def unrouted_counted(url: str) -> dict[str, int]:
    """`tabserve_http_requests_total{route="<unrouted>"}` by method and status."""
    counted = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("tabserve_http_requests_total{") and 'route="<unrouted>"' in line:
            labels = line.split("{", 1)[1].split("}", 1)[0]
            counted[labels] = int(float(line.rsplit(" ", 1)[1]))
    return counted


def quality_mae(url: str) -> object:
    """The diabetes model's live MAE as `/quality` reports it (null once poisoned)."""
    return httpx.get(url + "/models/diabetes/quality", timeout=30).json()


def manifest_edit(url: str) -> dict[str, object]:
    """What became of the edited version: GET /models, and a load through the admin API."""
    listing = {m["name"]: m for m in httpx.get(url + "/models", timeout=30).json()}
    load = httpx.post(
        url + "/v2/repository/models/edited/load",
        json={"version": 1},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    listed = listing.get("edited", {}).get("versions", [{}])
    return {
        "GET /models": [(v.get("state"), v.get("error")) for v in listed],
        "admin load": (load.status_code, load.text[:300]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.probe", description=__doc__)
    parser.add_argument("--malformed", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tabserve-probe-"))
    try:
        models = work / "models"
        progress("training the probe's models")
        build_models(models)
        with serving(models, work, workers=2, log_on=True) as server:
            figures = probe_two_workers(server, models, work, args)
        with serving(models, work, workers=1, log_on=False) as server:
            progress("SIGTERM under load, one process")
            figures["drain, 1 process"] = dict(
                drain_under_load(server.process, server.port).outcomes
            )
        print(json.dumps(figures, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def probe_two_workers(
    server: Server, models: Path, work: Path, args: argparse.Namespace
) -> dict[str, object]:
    """Steps 1-5 on the two-worker server; it has stopped when this returns."""
    figures: dict[str, object] = {}
    port, url = server.port, server.url
    ids = [a_logged_prediction(url, models) for _ in range(5)]
    feedback_id = ids.pop()
    progress("the issue's failure cases")
    cases = Tally()
    # One at a time: the feedback truths must arrive in order (the sane one first).
    send_all(port, issue_cases(ids, BODY_LIMIT), cases, threads=1)
    send_all(port, huge_heads(), cases, threads=2)
    figures["issue cases, by answer"] = dict(cases.outcomes)
    figures["issue cases, each"] = cases.by_label
    figures["quality after 1e308 truths"] = quality_mae(url)
    figures["manifest edit"] = manifest_edit(url)
    before = server_errors_counted(url)
    for _ in range(50):
        abort_upload(port, declared=1000, sent=b'{"instances": [[1')
    time.sleep(1.0)  # the workers see the disconnects
    figures["50 aborted uploads added, by status"] = dict(server_errors_counted(url) - before)
    progress(f"{args.malformed} random malformed requests")
    random_cases = Tally()
    send_all(port, malformed(args.malformed, args.seed, feedback_id, TOKEN), random_cases, 16)
    figures["random malformed"] = dict(random_cases.outcomes)
    figures["5xx answers seen by clients"] = cases.server_errors() + random_cases.server_errors()
    figures["5xx examples"] = {
        k: v for t in (cases, random_cases) for k, v in t.examples.items() if k.startswith("5")
    }
    figures["5xx and 499 counted in /metrics"] = dict(server_errors_counted(url))
    progress(f"a normal client alone, then with {args.slow} slow clients")
    figures["slowloris"] = latency_with_slow_clients(url, port, args.slow, args.requests)
    figures["refusals counted in /metrics (route <unrouted>)"] = unrouted_counted(url)
    progress("SIGKILL of a worker under load (durability journal)")
    killed = kill_a_worker_under_load(url, server.process.pid)
    progress("SIGTERM under load, two workers")
    figures["drain, 2 workers"] = dict(drain_under_load(server.process, port).outcomes)
    logged = logged_request_ids(work / "data" / "predictions.db")
    figures["SIGKILL, journal"] = {
        "answered": len(killed.answered),
        "answered but not in the log": len(killed.answered - set(logged)),
        "logged twice": sum(1 for n in logged.values() if n > 1),
        "requests cut off by the kill (never answered)": killed.cut_off,
        "5xx": killed.server_errors,
    }
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
