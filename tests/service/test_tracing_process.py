"""A real server exports its spans over OTLP/HTTP, and those still held are sent on SIGTERM.

The test runs its own OTLP/HTTP receiver (`POST /v1/traces`, protobuf bodies decoded
with opentelemetry-proto) and sets the batch processor's delay far beyond the test's
life, so the spans can only arrive through the flush at shutdown.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.service.conftest import start_server

pytestmark = pytest.mark.slow

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.spans: list[tuple[str, Span]] = []
        """(service.name, span) for each span received."""
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _ExportHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        self.server.paths.append(self.path)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((resource["service.name"], span))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what arrived, not the receiver's log."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spans_held_by_the_batch_processor_are_exported_on_sigterm(
    models_dir: Path, receiver: Receiver
) -> None:
    server = start_server(
        models_dir,
        env={
            "TABSERVE_TRACING_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "tabserve-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "3600000",  # an hour: only the shutdown can send them
        },
    )
    try:
        response = httpx.post(
            f"{server.url}/v2/models/iris/infer",
            json={
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
                ]
            },
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        )
        assert response.status_code == 200
        assert receiver.spans == []  # held by the batch processor
    finally:
        assert server.stop() == 0
    by_name = {span.name: (service, span) for service, span in receiver.spans}
    service, request = by_name["POST /v2/models/{model}/infer"]
    assert service == "tabserve-under-test"
    assert request.kind == Span.SPAN_KIND_SERVER
    assert (request.trace_id.hex(), request.parent_span_id.hex()) == (TRACE_ID, CALLER_SPAN)
    for step in ("tabserve.queue", "tabserve.predict"):
        assert by_name[step][1].parent_span_id == request.span_id
    assert set(receiver.paths) == {"/v1/traces"}
