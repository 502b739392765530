"""Limits on the shape of JSON request bodies: nesting depth and string length.

The body size limit (middleware) bounds the bytes; these bound what a parsed body
can make the validators do: a 16 MiB body may be one string or thousands of
nested arrays. Each refusal is a 413 that names the limit, its setting, where in
the body it was passed and what was found there (never the offending value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from tabserve.service.api.app_state import app_state
from tabserve.service.core.errors import Problem, TooLargeError
from tabserve.service.web_config import WebConfig

_Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """`max_depth` levels of arrays/objects; `max_string` characters per key or string."""

    max_depth: int
    max_string: int


def check_document(document: Any, limits: JsonLimits) -> None:
    """Raise TooLargeError at the first container nested too deep or string too long."""
    if type(document) is str:
        _check_string(document, (), limits)
        return
    if type(document) is not list and type(document) is not dict:
        return
    stack: list[tuple[Any, int, _Path]] = [(document, 1, ())]
    longest = limits.max_string
    while stack:
        node, depth, path = stack.pop()
        if depth > limits.max_depth:
            raise _too_deep(path, depth, limits)
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            if type(key) is str and len(key) > longest:
                raise _too_long((*path, key), len(key), limits, "key")
            kind = type(value)
            if kind is str:
                if len(value) > longest:
                    raise _too_long((*path, key), len(value), limits, "string")
            elif kind is list or kind is dict:
                stack.append((value, depth + 1, (*path, key)))


def check_strings(name: str, data: np.ndarray[Any, Any], limits: JsonLimits) -> None:
    """Refuse a V2 BYTES tensor (object array of str) holding an element that is too long."""
    if data.size == 0:
        return
    flat = data.ravel()
    lengths = np.fromiter(map(len, flat), dtype=np.int64, count=flat.size)
    at = int(lengths.argmax())
    if lengths[at] > limits.max_string:
        raise TooLargeError(
            f"input {name!r} element {at} is {int(lengths[at])} characters long; "
            f"the limit is {limits.max_string} (TABSERVE_MAX_STRING_LENGTH)",
            [
                Problem(
                    field=f"input {name!r}",
                    row=at,
                    value=f"a string of {int(lengths[at])} characters",
                    expected=f"BYTES elements of at most {limits.max_string} characters",
                )
            ],
        )


def _check_string(value: str, path: _Path, limits: JsonLimits) -> None:
    if len(value) > limits.max_string:
        raise _too_long(path, len(value), limits, "string")


def _too_deep(path: _Path, depth: int, limits: JsonLimits) -> TooLargeError:
    where = _where(path)
    return TooLargeError(
        f"JSON body nests {depth} levels deep at {where}; the limit is {limits.max_depth} "
        "(TABSERVE_MAX_JSON_DEPTH)",
        [
            Problem(
                field=where,
                value=f"{depth} levels of arrays/objects",
                expected=f"at most {limits.max_depth} levels of nesting",
            )
        ],
    )


def _too_long(path: _Path, length: int, limits: JsonLimits, what: str) -> TooLargeError:
    where = _where(path)
    return TooLargeError(
        f"JSON {what} at {where} is {length} characters long; the limit is "
        f"{limits.max_string} (TABSERVE_MAX_STRING_LENGTH)",
        [
            Problem(
                field=where,
                value=f"a {what} of {length} characters",
                expected=f"at most {limits.max_string} characters",
            )
        ],
    )


def _where(path: _Path) -> str:
    """("records", 3, "age") -> `body.records[3].age`."""
    text = "body"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part[:40]}"
    return text


def json_limits(web: WebConfig) -> JsonLimits:
    """The configured limits on JSON bodies and messages."""
    return JsonLimits(web.max_json_depth, web.max_string_length)


async def enforce_json_limits(request: Request) -> None:
    """Route dependency: FastAPI has parsed the body by now; check it before validation."""
    web = app_state(request.app).web
    try:
        document = await request.json()  # cached: the body FastAPI already parsed
    except (ValueError, RecursionError):
        return  # not JSON, empty or absurdly deep: FastAPI's own parsing answers that
    check_document(document, json_limits(web))


JsonLimitsDep = Annotated[None, Depends(enforce_json_limits)]
