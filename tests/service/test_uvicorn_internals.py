"""uvicorn's internals that tabserve's HTTP protocols rely on still have the expected shape.

`GuardedHttpProtocol` (`service/http_guard.py`) and `TabserveHttpProtocol` above it
subclass uvicorn's `HttpToolsProtocol`, which is not public API. pyproject.toml pins
uvicorn to the minor release they were written against; when that pin moves, this
file says exactly which assumption broke instead of the server writing answers wrongly.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tabserve.service.http_guard import GuardedHttpProtocol
from tabserve.service.http_protocol import TabserveHttpProtocol

OURS = {"configured"}
"""Public methods of the subclasses that are theirs alone (the rest override uvicorn's)."""

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def _source(function: object) -> str:
    return inspect.getsource(function)  # type: ignore[arg-type]


def test_installed_uvicorn_is_inside_the_pinned_minor_range() -> None:
    pin = re.search(r'"uvicorn\[standard\]>=(\d+)\.(\d+),<(\d+)\.(\d+)"', PYPROJECT.read_text())
    assert pin is not None, "pyproject.toml no longer pins uvicorn to a minor range"
    low, high = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    installed = tuple(int(part) for part in version("uvicorn").split(".")[:2])
    assert low <= installed < high, (
        f"uvicorn {version('uvicorn')} is outside the pinned range {low}..{high}: "
        "check service/http_protocol.py against its HttpToolsProtocol first"
    )


def test_the_overridden_methods_exist_with_the_signatures_the_subclass_uses() -> None:
    expected = {
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "on_headers_complete": ["self"],
        "handle_websocket_upgrade": ["self"],
    }
    for name, parameters in expected.items():
        method = getattr(HttpToolsProtocol, name, None)
        assert method is not None, f"HttpToolsProtocol.{name} is gone"
        assert list(inspect.signature(method).parameters) == parameters, (
            f"HttpToolsProtocol.{name} now takes {inspect.signature(method)}"
        )
        assert name in vars(TabserveHttpProtocol), f"the subclass no longer overrides {name}"


def test_every_method_the_subclasses_override_exists_with_the_same_parameters() -> None:
    for subclass in (GuardedHttpProtocol, TabserveHttpProtocol):
        for name, method in vars(subclass).items():
            if name.startswith("_") or name in OURS or not callable(method):
                continue
            base = getattr(HttpToolsProtocol, name, None)
            assert base is not None, f"{subclass.__name__}.{name} overrides nothing in uvicorn"
            ours, theirs = inspect.signature(method), inspect.signature(base)
            assert list(ours.parameters) == list(theirs.parameters), (
                f"HttpToolsProtocol.{name} now takes {theirs}; {subclass.__name__} takes {ours}"
            )


def test_the_guard_finds_the_attributes_and_constants_it_reads() -> None:
    assert httptools_impl.STATUS_LINE[408].startswith(b"HTTP/1.1 408"), "STATUS_LINE changed"
    source = _source(HttpToolsProtocol)
    for attribute in ("self.url", "self.headers", "self.cycle", "self.flow", "self.client"):
        assert re.search(rf"{re.escape(attribute)}(: [^=]+)? = ", source), (
            f"HttpToolsProtocol no longer sets {attribute}"
        )


def test_the_protocol_keeps_loop_transport_and_a_per_request_scope() -> None:
    init = _source(HttpToolsProtocol.__init__)
    assert "self.loop =" in init, "HttpToolsProtocol no longer keeps its loop in self.loop"
    assert "self.transport" in init, "HttpToolsProtocol no longer keeps self.transport"
    begin = _source(HttpToolsProtocol.on_message_begin)
    assert "self.scope = {" in begin, "each request no longer gets a new self.scope dict"


def test_the_request_cycle_shares_the_protocol_scope_and_transport() -> None:
    # The subclass adds CLIENT_LEFT to self.scope after super().on_headers_complete():
    # the cycle (and the app's task) must see that same dict, and write to the
    # coalescing transport set in connection_made.
    headers = _source(HttpToolsProtocol.on_headers_complete)
    assert "scope=self.scope" in headers, "the request cycle no longer shares self.scope"
    assert "transport=self.transport" in headers, "the cycle no longer writes to self.transport"
    assert "self._start_asgi_task(" in headers, "the app is no longer started as a task"
    start = _source(HttpToolsProtocol._start_asgi_task)
    assert "create_task(" in start, "the app would run before the scope gets CLIENT_LEFT"
    assert "transport" in inspect.signature(RequestResponseCycle.__init__).parameters


def test_a_websocket_upgrade_hands_self_transport_to_the_websocket_protocol() -> None:
    upgrade = _source(HttpToolsProtocol.handle_websocket_upgrade)
    assert "protocol.connection_made(self.transport)" in upgrade, (
        "the WebSocket protocol no longer takes self.transport: the subclass unwraps it there"
    )


def test_the_draining_server_finds_what_it_reads_in_uvicorn_and_uvicorn_worker() -> None:
    # service/http_listener.py: DrainingServer.shutdown runs before uvicorn's, reading its
    # listeners and lifespan state; TabserveWorker._serve replaces uvicorn_worker's.
    from uvicorn.server import Server
    from uvicorn_worker import UvicornWorker

    startup = _source(Server.startup)
    assert "self.servers" in startup, "uvicorn's server no longer keeps its listeners"
    assert "app_state=self.lifespan.state" in startup, "protocols no longer get lifespan state"
    assert "self.force_exit" in _source(Server), "a second signal no longer sets force_exit"
    assert list(inspect.signature(Server.shutdown).parameters) == ["self", "sockets"]
    serve = _source(UvicornWorker._serve)
    for line in (
        "self.config.app = self.wsgi",
        "Server(config=self.config)",
        "self._install_sigquit_handler()",
        "await server.serve(sockets=self.sockets)",
    ):
        assert line in serve, f"uvicorn_worker's _serve changed: {line!r} is gone"
