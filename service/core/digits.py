"""Whole numbers from text a client (or a peer) controls: paths, headers, queries.

`str.isdigit()` accepts superscripts, circled digits, Arabic-Indic and fullwidth
digits, and `int()` then raises on some ("²") and silently reads others (U+0661 as
1); `int()` also takes "+5", " 5 " and
"1_0", and raises past 4,300 digits. Everything here accepts ASCII digits only,
at most `max_digits` of them, and answers None for anything else, so each caller
turns a refusal into its own 4xx (or close code) naming the value.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

MAX_DIGITS = 18
"""Enough for any 63-bit value; a longer number is never a version, a length or a time."""

_DECIMAL = re.compile(r"[0-9]+")
_DECIMAL_BYTES = re.compile(rb"[0-9]+")
_HEX_BYTES = re.compile(rb"[0-9A-Fa-f]+")


def parse_digits(text: str | bytes, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of `text` when it is 1 to `max_digits` ASCII digits and nothing else."""
    if not 0 < len(text) <= max_digits:
        return None
    if isinstance(text, bytes):
        return int(text) if _DECIMAL_BYTES.fullmatch(text) else None
    return int(text) if _DECIMAL.fullmatch(text) else None


def parse_hex(text: bytes, max_digits: int = 16) -> int | None:
    """The value of `text` when it is 1 to `max_digits` ASCII hex digits (a chunk size)."""
    if not 0 < len(text) <= max_digits or not _HEX_BYTES.fullmatch(text):
        return None
    return int(text, 16)


def _digits_only(value: object) -> object:
    """Before pydantic's own int parsing: text must be plain ASCII digits."""
    if isinstance(value, str) and parse_digits(value) is None:
        raise ValueError(f"expected 1 to {MAX_DIGITS} ASCII digits (0-9)")
    return value


DigitsInt = Annotated[int, BeforeValidator(_digits_only)]
"""An int parsed from a query parameter: ASCII digits only (no sign, space, `_` or `²`)."""
