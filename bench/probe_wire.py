"""Raw HTTP/1.1 for the hardening probe: one request per connection, outcome by kind.

The probe sends what no HTTP library would (non-ASCII header bytes, 50,000
headers, bodies that lie about their length), so it writes bytes to sockets and
reads what comes back: a status, or how the connection failed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

READ_SECONDS = 30.0  # more than the server's read timeout: a stall gets its 408 first
LARGE = 256 * 1024  # bodies above this are sent from a thread while the answer is read


@dataclass
class Tally:
    """Outcomes by kind ("200", "413", "reset", "no answer", ...), thread-safe."""

    outcomes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    by_label: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, label: str = "") -> None:
        """Count one outcome; keep the first label seen for each (to show a 5xx's cause)."""
        with self.lock:
            self.outcomes[outcome] += 1
            self.examples.setdefault(outcome, label)
            self.by_label[label] = outcome

    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for kind, n in self.outcomes.items() if kind.startswith("5"))


def request(
    method: str, path: str, headers: dict[str, bytes] | None = None, body: bytes = b""
) -> bytes:
    """A whole request that asks the server to close after answering."""
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"host: probe"]
    for name, value in (headers or {}).items():
        lines.append(name.encode("latin-1") + b": " + value)
    if body and not any(
        n.lower() in ("content-length", "transfer-encoding") for n in headers or {}
    ):
        lines.append(b"content-length: %d" % len(body))
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(method: str, path: str, size: int, content_type: bytes) -> bytes:
    """A chunked request whose body is `size` bytes of JSON-ish filler."""
    chunk = b"[" + b"1," * 32_000 + b"1]"
    pieces = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(size // len(chunk) + 1)]
    head = request(method, path, {"content-type": content_type, "transfer-encoding": b"chunked"})
    return head + b"".join(pieces) + b"0\r\n\r\n"


def exchange(port: int, raw: bytes, read_seconds: float = READ_SECONDS) -> str:
    """Send `raw` on a new connection; the answer's status, or how the connection ended."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=read_seconds)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        sender = None
        try:
            if len(raw) > LARGE:
                sender = threading.Thread(target=_send_quietly, args=(sock, raw), daemon=True)
                sender.start()
            else:
                sock.sendall(raw)
            return _status(_read_all(sock))
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "no answer"
        except OSError as exc:
            return type(exc).__name__
        finally:
            if sender is not None:
                sender.join(read_seconds)


def abort_upload(port: int, declared: int, sent: bytes) -> None:
    """Send a head declaring `declared` body bytes, `sent` of them, and leave."""
    head = request("POST", "/v1/models/iris:predict", {"content-type": b"application/json"})
    head = head.replace(b"connection: close", b"content-length: %d" % declared)
    with socket.create_connection(("127.0.0.1", port), timeout=READ_SECONDS) as sock:
        sock.sendall(head + sent)


def _send_quietly(sock: socket.socket, raw: bytes) -> None:
    # The server may answer and close before taking it all, as it should.
    with contextlib.suppress(OSError):
        sock.sendall(raw)


def _read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            if data:
                return bytes(data)  # the answer arrived; the reset came after it
            raise
        if not chunk:
            return bytes(data)
        data += chunk


def _status(answer: bytes) -> str:
    if not answer:
        return "closed unanswered"
    first = answer.split(b"\r\n", 1)[0].split()
    if len(first) < 2 or not first[0].startswith(b"HTTP/"):
        return "garbled answer"
    return first[1].decode("latin-1")
