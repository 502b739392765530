"""Reading a request and writing a JSON answer in plain ASGI, for the fast paths."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from tabserve.service.scope_keys import HEADERS


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives `body` once more, then whatever the client sends next."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def send_json(send: Send, payload: bytes) -> None:
    """A 200 with a JSON body: the headers Starlette's Response would send."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(payload)).encode("latin-1")),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def request_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the first of a repeated name), built
    on first use and kept in the scope: one pass for every header anyone reads.

    They are the headers as received: `json_bodies` rewrites `scope["headers"]`'s
    Content-Type for FastAPI's body parsing after this is built, and nothing reads
    Content-Type from here."""
    heads: dict[bytes, bytes] | None = scope.get(HEADERS)
    if heads is None:
        heads = scope[HEADERS] = dict(reversed(scope["headers"]))
    return heads


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (`name` in lower case), or None."""
    value = request_headers(scope).get(name)
    return None if value is None else value.decode("latin-1")


def route_path(scope: Scope) -> str:
    """The path the router matches: without the `root_path` a proxy mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
