"""POSTs to one URL over kept-alive HTTP/1.1 connections: all a sink needs, cheaply.

A sink's sender shares the GIL with the serving code, so its cost per event is
what serving loses. On the benchmark machine (docs/payload-sink.md) one POST
cost 1.8 ms of CPU through `httpx.AsyncClient` and 0.18 ms through asyncio
streams, so the sender writes requests itself: a fixed request head, the
event's headers, `content-length`, the body; the answer's status is read and its
body (`content-length`, chunked, or up to the close) discarded.
"""

from __future__ import annotations

import asyncio
import ssl
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from tabserve.service.core.digits import parse_digits, parse_hex

MAX_HEAD_BYTES = 64 * 1024


class ReceiverError(ConnectionError):
    """The receiver closed the connection early or answered something that is not HTTP/1.x."""


class ClosedBeforeAnswerError(ReceiverError):
    """The connection ended before any byte of an answer (on a kept-alive one: it went stale)."""


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


class HttpPoster:
    """POSTs to `url`; keeps up to `max_idle` connections open between requests."""

    def __init__(self, url: str, timeout: float, max_idle: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
        self.timeout = timeout
        self.max_idle = max_idle
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self._host}]" if ":" in self._host else self._host
        head = f"POST {target} HTTP/1.1\r\nhost: {host}"
        head += f":{parts.port}\r\n" if parts.port else "\r\n"
        if parts.username is not None:  # https://user:password@collector/: basic auth
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            head += f"authorization: Basic {b64encode(pair.encode()).decode()}\r\n"
        self._head = head.encode("ascii")
        self._idle: list[_Connection] = []

    async def post(self, headers: Mapping[str, str], body: bytes) -> int:
        """Send one request; its answer's status code.

        TimeoutError past `timeout` (connecting included); OSError (ReceiverError
        among them) when there is no connection or no valid answer. A kept-alive
        connection the receiver had closed is replaced once, transparently.
        """
        request = self._request(headers, body)
        async with asyncio.timeout(self.timeout):
            while self._idle:
                connection = self._idle.pop()
                try:
                    return await self._exchange(connection, request)
                except ClosedBeforeAnswerError:
                    pass  # closed by the receiver while idle; try the next one
            return await self._exchange(await self._connect(), request)

    def close(self) -> None:
        """Close the idle connections."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _request(self, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return b"".join(
            (self._head, lines.encode("latin-1"), b"content-length: %d\r\n\r\n" % len(body), body)
        )

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=self._tls,
            server_hostname=self._host if self._tls else None,
            limit=MAX_HEAD_BYTES,
        )
        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, request: bytes) -> int:
        try:
            connection.writer.write(request)
            status, keep = await _read_response(connection.reader)
        except BaseException:
            connection.close()
            raise
        if keep and len(self._idle) < self.max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return status


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer (skipping 1xx ones): its status and whether the connection stays open."""
    while True:
        head = await _read_head(reader)
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        found = parse_digits(rest[:3], max_digits=3)
        if not (version.startswith(b"HTTP/1.") and found is not None):
            raise ReceiverError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = found
        if status >= 200:
            break
    length: int | None = None
    chunked = False
    keep = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = parse_digits(value)
            if length is None:
                raise ReceiverError(f"bad Content-Length {value[:20]!r}")
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            keep = b"keep-alive" in value if version != b"HTTP/1.1" else b"close" not in value
    if status in (204, 304):
        return status, keep
    if chunked:
        await _skip_chunks(reader)
    elif length is not None:
        await _read_exactly(reader, length)
    else:
        await reader.read()  # the body ends with the connection
        keep = False
    return status, keep


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return (await reader.readuntil(b"\r\n\r\n"))[:-4]
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ClosedBeforeAnswerError(
                "the receiver closed the connection before answering"
            ) from exc
        raise ReceiverError("the receiver closed the connection mid-answer") from exc
    except ConnectionResetError as exc:
        raise ClosedBeforeAnswerError("the receiver reset the connection") from exc
    except asyncio.LimitOverrunError as exc:
        raise ReceiverError(f"answer headers longer than {MAX_HEAD_BYTES} bytes") from exc


async def _read_exactly(reader: asyncio.StreamReader, size: int) -> None:
    try:
        await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ReceiverError("the receiver closed the connection mid-answer") from exc


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = (await _read_line(reader)).split(b";")[0].strip()
        size = parse_hex(size_line)
        if size is None:
            raise ReceiverError(f"bad chunk size {size_line[:20]!r}")
        if size == 0:
            break
        await _read_exactly(reader, size + 2)
    while await _read_line(reader):  # trailers, up to the empty line
        pass


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return (await reader.readuntil(b"\r\n"))[:-2]
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise ReceiverError("the receiver closed the connection mid-answer") from exc
