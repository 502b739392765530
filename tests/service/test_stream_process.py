"""Streams against real `tabserve serve` processes, with a real WebSocket client and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.slow

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
SHUTTING_DOWN = "server is shutting down; reconnect"


def iris_records(count: int, seed: int) -> list[dict[str, float]]:
    """Records spread over the iris feature ranges."""
    rng = np.random.default_rng(seed)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    rows = rng.uniform(low, high, size=(count, 4)).round(2)
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]


def ws_url(url: str, path: str) -> str:
    return "ws://" + url.removeprefix("http://") + path


def receive_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    replies = []
    while True:
        try:
            replies.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed as closed:
            return replies, closed


def test_a_real_client_pipelines_messages_over_one_connection(server: Any) -> None:
    records = iris_records(60, seed=5)
    messages = [json.dumps({"request_id": f"p{i}", "records": r}) for i, r in enumerate(records)]
    messages[30] = '{"request_id": "bad", "records": {"sepal_length_cm": "long"}}'
    path = "/models/iris/stream"
    with connect(ws_url(server.url, path), additional_headers={"x-request-id": "real-1"}) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "real-1"
        for message in messages:  # all at once: the server reads them a window at a time
            ws.send(message)
        replies = [json.loads(ws.recv(timeout=60)) for _ in messages]
    assert [r["request_id"] for r in replies] == ["bad" if i == 30 else f"p{i}" for i in range(60)]
    assert replies[30]["code"] == "invalid_input"
    answered = [r for i, r in enumerate(replies) if i != 30]
    sent = [r for i, r in enumerate(records) if i != 30]
    direct = httpx.post(server.url + "/models/iris/predict", json=sent, timeout=30).json()
    assert [a["predictions"][0]["prediction"] for a in answered] == [
        p["prediction"] for p in direct["predictions"]
    ]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'tabserve_stream_messages_total{code="ok",model="iris"} 59.0' in metrics


def test_unknown_model_closes_with_4404_on_a_real_server(server: Any) -> None:
    with connect(ws_url(server.url, "/models/nope/stream")) as ws:
        replies, closed = receive_until_closed(ws)
    assert replies == []
    assert closed.rcvd is not None
    assert closed.rcvd.code == 4404
    assert "nope" in closed.rcvd.reason


def predict_stream(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`tabserve predict --stream ARGS` in a subprocess."""
    command = [sys.executable, "-m", "tabserve.service", "predict", "--stream", *args]
    return subprocess.run(command, capture_output=True, text=True, input=stdin, timeout=120)


def test_cli_streams_json_lines_and_prints_answers_in_order(server: Any, tmp_path: Path) -> None:
    records = iris_records(25, seed=6)
    lines = [json.dumps({"request_id": f"l{i}", "records": r}) for i, r in enumerate(records)]
    lines[7] = json.dumps({"request_id": "l7", "records": {"petal_length_cm": 1.0}})
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n\n")
    done = predict_stream(str(source), "--model", "iris", "--url", server.url, "--window", "3")
    assert done.returncode == 1, done.stderr  # one message was refused
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["request_id"] for r in replies] == [f"l{i}" for i in range(25)]
    assert replies[7]["code"] == "invalid_input"
    assert all("predictions" in r for i, r in enumerate(replies) if i != 7)
    assert "25 messages, 24 answered, 1 refused" in done.stderr


def test_cli_streams_csv_rows_and_stdin(server: Any, tmp_path: Path) -> None:
    records = iris_records(5, seed=7)
    source = tmp_path / "rows.csv"
    source.write_text(
        ",".join(FEATURES)
        + "\n"
        + "".join(",".join(str(r[f]) for f in FEATURES) + "\n" for r in records)
    )
    from_csv = predict_stream(str(source), "--model", "iris", "--version", "1", "--url", server.url)
    assert from_csv.returncode == 0, from_csv.stderr
    replies = [json.loads(line) for line in from_csv.stdout.splitlines()]
    assert [r["version"] for r in replies] == [1] * 5
    direct = httpx.post(server.url + "/models/iris/versions/1/predict", json=records).json()
    assert [r["predictions"][0]["prediction"] for r in replies] == [
        p["prediction"] for p in direct["predictions"]
    ]
    piped = predict_stream(
        "-", "--model", "iris", "--url", server.url, stdin="\n".join(json.dumps(r) for r in records)
    )
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 5


def test_cli_reports_a_closed_stream(server: Any, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps(iris_records(1, seed=8)[0]) + "\n")
    done = predict_stream(str(source), "--model", "nope", "--url", server.url)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "closed the stream (code 4404: model 'nope' not found" in done.stderr
    assert "; 0 replies to" in done.stderr  # the close may come before or after the send


def drain_on_sigterm(url: str, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM mid-stream: what was read is answered in order, then a 1012 close from the app."""
    records = iris_records(400, seed=9)
    with connect(ws_url(url, "/models/iris/stream")) as ws:
        for index, record in enumerate(records):
            ws.send(json.dumps({"request_id": f"s{index}", "records": [record] * 20}))
        first = json.loads(ws.recv(timeout=60))
        process.send_signal(signal.SIGTERM)
        replies, closed = receive_until_closed(ws)
    replies.insert(0, first)
    assert [r["request_id"] for r in replies] == [f"s{i}" for i in range(len(replies))]
    assert all("predictions" in r for r in replies)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1012, SHUTTING_DOWN)
    assert process.wait(timeout=60) == 0


def test_sigterm_drains_streams_before_the_server_stops(
    launch: Callable[..., Any], models_dir: Path
) -> None:
    running = launch(models_dir)
    drain_on_sigterm(running.url, running.process)
    assert "draining 1 stream(s)" in running.log.read_text()


def test_streams_work_and_drain_with_two_workers(
    launch: Callable[..., Any], models_dir: Path
) -> None:
    running = launch(models_dir, "--workers", "2")
    with connect(ws_url(running.url, "/models/iris/versions/2/stream")) as ws:
        ws.send(json.dumps(iris_records(3, seed=10)))
        answer = json.loads(ws.recv(timeout=60))
    assert (answer["version"], len(answer["predictions"])) == (2, 3)
    drain_on_sigterm(running.url, running.process)
