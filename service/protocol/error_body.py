"""The single error body: `{"error": str, "code": str, "details": [...]}`.

Each detail names the field, the row, the value given (bounded in size) and what was
expected. Built from a domain error (`ServiceError`) or from Pydantic's validation
errors, whose messages are reworded as the feature checks word theirs ("a number",
not "Input should be a valid number"); the web layer adds the HTTP status, the
streams a `request_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic_core import ErrorDetails

from tabserve.service.core.errors import (
    FeatureDisabledError,
    InvalidInputError,
    Problem,
    ServiceError,
    TooLargeError,
)

MAX_DETAILS = 20
"""A body of 10 000 wrong rows has 10 000 errors: the answer lists the first few."""
_SHOWN_IN_MESSAGE = 5
_UNION_TAGS = frozenset({"item", "items"})  # feedback's one-or-many body
_ECHO_ITEMS = 20
_ECHO_CHARS = 200
_ECHO_DEPTH = 4
_INT64 = 2**63


def error_body(
    message: str, code: str, problems: Sequence[Problem] = (), request_id: str | None = None
) -> bytes:
    """The encoded error; with `request_id`, that key comes first (a stream's reply)."""
    body: dict[str, Any] = {} if request_id is None else {"request_id": request_id}
    body["error"] = message
    body["code"] = code
    body["details"] = [_detail(p) for p in problems]
    return orjson.dumps(body, default=str)


def problems_of(exc: ServiceError) -> list[Problem]:
    """The problems a domain error names (none for errors about the model or the server)."""
    if isinstance(exc, InvalidInputError | TooLargeError | FeatureDisabledError):
        return exc.problems
    return []


@dataclass(frozen=True, slots=True)
class SchemaErrors:
    """Pydantic's validation errors as problems, and the message that lists the first few."""

    problems: list[Problem]
    message: str


def schema_errors(errors: Sequence[ErrorDetails]) -> SchemaErrors:
    """FastAPI's request validation errors as the error body reports them.

    Each `loc` starts with where the input was found ("body", "query"); the tags of
    a one-or-many union are not field names.
    """
    problems = [_schema_problem(err) for err in errors[:MAX_DETAILS]]
    message = "; ".join(p.describe() for p in problems[:_SHOWN_IN_MESSAGE])
    if len(errors) > _SHOWN_IN_MESSAGE:
        message += f" (and {len(errors) - _SHOWN_IN_MESSAGE} more)"
    return SchemaErrors(problems, message)


def _schema_problem(err: ErrorDetails) -> Problem:
    """`loc` like ("body", "items", 3, "truth") -> field "truth", row 3."""
    loc = list(err.get("loc", ()))
    names = [p for p in loc[1:] if isinstance(p, str) and p not in _UNION_TAGS]
    rows = [p for p in loc if isinstance(p, int)]
    missing = err.get("type") == "missing"
    return Problem(
        field=names[-1] if names else str(loc[0]) if loc else "body",
        expected=expectation(err),
        value=None if missing else err.get("input"),
        row=rows[0] if rows else None,
    )


_EXPECTED = {
    "missing": "a value (it is required)",
    "extra_forbidden": "only the documented fields (see /docs)",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "union_tag_invalid": "an object or a list of objects",
    "union_tag_not_found": "an object or a list of objects",
}
_BOUNDS = {
    "greater_than": ("gt", "a number greater than {}"),
    "greater_than_equal": ("ge", "a number of at least {}"),
    "less_than": ("lt", "a number less than {}"),
    "less_than_equal": ("le", "a number of at most {}"),
    "literal_error": ("expected", "one of {}"),
    "string_pattern_mismatch": ("pattern", "a string matching {}"),
    "string_too_long": ("max_length", "at most {} characters"),
    "string_too_short": ("min_length", "at least {} characters"),
    "too_long": ("max_length", "at most {} items"),
    "too_short": ("min_length", "at least {} items"),
}


def expectation(err: ErrorDetails) -> str:
    """What a Pydantic error says was expected, in the feature checks' words."""
    kind = err.get("type", "")
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        key, template = _BOUNDS[kind]
        return template.format(ctx[key])
    message = err.get("msg", "valid input")
    for prefix in ("Input should be ", "Value error, ", "expected "):
        message = message.removeprefix(prefix)
    return message


def _detail(p: Problem) -> dict[str, Any]:
    return {
        "field": p.field,
        "index": p.index,
        "row": p.row,
        "value": _echo(p.value, 0),
        "expected": p.expected,
    }


def _echo(value: Any, depth: int) -> Any:
    """The given value as the error body repeats it: bounded in size, always serializable.

    An error must not cost more than the request: a 16 MiB string or list comes back
    as its start; integers JSON can carry but orjson cannot (past 64 bits) as text.
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, str):
        return value if len(value) <= _ECHO_CHARS else value[:_ECHO_CHARS] + "..."
    if depth >= _ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())
        shown = {str(k)[:_ECHO_CHARS]: _echo(v, depth + 1) for k, v in items[:_ECHO_ITEMS]}
        if len(items) > _ECHO_ITEMS:
            shown["..."] = f"{len(items) - _ECHO_ITEMS} more"
        return shown
    if isinstance(value, list | tuple):
        shown_list = [_echo(v, depth + 1) for v in value[:_ECHO_ITEMS]]
        if len(value) > _ECHO_ITEMS:
            shown_list.append(f"... {len(value) - _ECHO_ITEMS} more")
        return shown_list
    return _echo(str(value), depth)
