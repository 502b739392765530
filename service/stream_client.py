"""`tabserve predict --stream`: records over one WebSocket, answers printed as they arrive.

Every input line (JSON lines) or record (CSV row, JSON file) is one message. At
most `window` messages are unanswered at a time, so a large file never piles up
in the server or in this process; answers come back in the order sent.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tabserve.service.client import ClientError, _cell, read_records

MAX_REPLY_BYTES = 64 * 1024 * 1024


@dataclass
class StreamSummary:
    """What a stream run did."""

    sent: int = 0
    answered: int = 0
    errors: int = 0
    connection_id: str = ""


def stream_url(url: str, model: str, version: int | None) -> str:
    """`http://host:8000` -> `ws://host:8000/models/{model}[/versions/{v}]/stream`."""
    base = url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    path = f"/models/{model}/stream"
    if version is not None:
        path = f"/models/{model}/versions/{version}/stream"
    return base + path


def read_messages(path: Path, stdin: TextIO | None = None) -> Iterator[str]:
    """Messages from a file: one per CSV row or JSON record, or one per JSON line.

    `-` reads JSON lines from stdin as they come, so a pipe can feed a stream.
    """
    if str(path) == "-":
        yield from _lines(stdin or sys.stdin)
        return
    suffix = path.suffix.lower()
    if suffix == ".json":
        for record in read_records(path):
            yield json.dumps(record)
        return
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ClientError(f"{path}: cannot read: {exc.strerror}") from exc
    with handle:
        if suffix == ".csv":
            for row in csv.DictReader(handle):
                yield json.dumps({k: _cell(v) for k, v in row.items()})
        else:
            yield from _lines(handle)


def _lines(handle: TextIO) -> Iterator[str]:
    for line in handle:
        if line.strip():
            yield line.strip()


def stream(
    url: str,
    messages: Iterator[str],
    window: int,
    on_reply: Callable[[dict[str, Any]], None],
    headers: dict[str, str] | None = None,
) -> StreamSummary:
    """Send every message over one WebSocket at `url`; `on_reply` sees each reply in order."""
    try:
        return asyncio.run(_stream(url, messages, window, on_reply, headers or {}))
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise ClientError(f"cannot stream to {url}: {exc}") from exc


async def _stream(
    url: str,
    messages: Iterator[str],
    window: int,
    on_reply: Callable[[dict[str, Any]], None],
    headers: dict[str, str],
) -> StreamSummary:
    summary = StreamSummary()
    slots = asyncio.Semaphore(window)
    total: int | None = None
    # No permessage-deflate: replies are small, and compressing them costs the server
    # CPU that predictions need (docs/benchmarks.md, bench.stream).
    async with connect(
        url,
        max_size=MAX_REPLY_BYTES,
        open_timeout=30,
        compression=None,
        additional_headers=headers,
    ) as socket:
        if socket.response is not None:
            summary.connection_id = socket.response.headers.get("x-request-id", "")

        async def receive() -> None:
            while total is None or summary.answered + summary.errors < total:
                reply = json.loads(await socket.recv())
                slots.release()
                if "error" in reply:
                    summary.errors += 1
                else:
                    summary.answered += 1
                on_reply(reply)

        receiver = asyncio.create_task(receive())
        try:
            while True:
                # The next line may be slow to come (a pipe): read it off the event loop.
                message = await asyncio.to_thread(next, messages, None)
                if message is None:
                    break
                await _acquire(slots, receiver)
                await socket.send(message)
                summary.sent += 1
            total = summary.sent
            if summary.answered + summary.errors >= total:
                receiver.cancel()
            await asyncio.wait({receiver})
            if not receiver.cancelled():
                receiver.result()  # raises what stopped it early, if anything did
        except ConnectionClosed as exc:
            raise ClientError(_closed(exc, summary)) from exc
        finally:
            receiver.cancel()
    return summary


async def _acquire(slots: asyncio.Semaphore, receiver: asyncio.Task[None]) -> None:
    """A window slot; fails at once if the receiver stopped (the server closed)."""
    if slots.locked():
        waiter = asyncio.ensure_future(slots.acquire())
        await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            receiver.result()  # raises what stopped it
            raise ClientError("the server stopped answering")
        return
    await slots.acquire()


def _closed(exc: ConnectionClosed, summary: StreamSummary) -> str:
    close = exc.rcvd
    how = f"code {close.code}: {close.reason}" if close is not None else "without a close frame"
    replies = summary.answered + summary.errors
    return f"the server closed the stream ({how}); {replies} replies to {summary.sent} messages"
