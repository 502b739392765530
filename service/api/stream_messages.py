"""The messages of a prediction stream: what a client sends and what it gets back.

A client message is JSON (text or binary frame), one of:

* a record object keyed by feature name;
* a list of records;
* an envelope `{"request_id": "...", "records": <record or list>}` (an object with a
  `records` or `request_id` key is always read as an envelope).

Each message gets exactly one reply, in the order the messages came: the answer
of `POST /models/{m}/predict` (`model`, `version`, `request_id`, `predictions`), or
the error shape `{"request_id", "error", "code", "details"}`. Records are checked
exactly as the named-feature API checks them: the common shape by the records
express lane (`records_express.py`), anything else by `FeatureSchema.from_records`,
so a mistake is worded as on every HTTP API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from tabserve.service.api.limits import JsonLimits, check_document
from tabserve.service.api.records_express import RecordsExpress
from tabserve.service.core.errors import InvalidInputError, Problem, ServiceError, TooLargeError
from tabserve.service.core.runtime import Prediction
from tabserve.service.core.served import ServedModel
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.protocol.error_body import error_body, problems_of
from tabserve.service.protocol.records import records_answer

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ENVELOPE_KEYS = frozenset({"request_id", "records"})
SHAPE = 'a record object, a list of records, or {"request_id": ..., "records": [...]}'


class MessageError(InvalidInputError):
    """A message that is not a request at all: malformed JSON or the wrong shape."""

    code = "invalid_request"

    def __init__(self, message: str, code: str, problems: list[Problem], reason: str) -> None:
        super().__init__(message, reason, problems)
        self.code = code


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message read as a request: its id and its records, not yet checked."""

    request_id: str
    records: list[Any]


def read_message(
    raw: str | bytes, fallback_id: str, max_bytes: int, limits: JsonLimits
) -> tuple[str, Inbound | ServiceError]:
    """The request id and the request a message carries, or the error to answer it with.

    `fallback_id` is the id when the message names none (or cannot be read).
    """
    size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode())
    if size > max_bytes:
        return fallback_id, TooLargeError(
            f"message is {size} bytes; the limit is {max_bytes} "
            "(TABSERVE_STREAM_MAX_MESSAGE_BYTES)",
            [Problem("message", f"at most {max_bytes} bytes", f"{size} bytes")],
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return fallback_id, MessageError(
            f"message is not valid JSON: {exc}",
            "malformed_json",
            [Problem("message", "a JSON document", _start(raw))],
            "malformed",
        )
    try:
        check_document(document, limits)
        return _unwrap(document, fallback_id)
    except ServiceError as exc:
        return fallback_id, exc


def _unwrap(document: Any, fallback_id: str) -> tuple[str, Inbound | ServiceError]:
    if isinstance(document, list):
        return fallback_id, Inbound(fallback_id, document)
    if not isinstance(document, dict):
        return fallback_id, _shape_error("message", document)
    if not ENVELOPE_KEYS.intersection(document):
        return fallback_id, Inbound(fallback_id, [document])
    given = document.get("request_id")
    request_id = fallback_id
    if given is not None:
        if not isinstance(given, str) or not REQUEST_ID.match(given):
            return fallback_id, _shape_error(
                "request_id", given, "1 to 128 characters of A-Z a-z 0-9 . _ : -"
            )
        request_id = given
    extra = sorted(set(document) - ENVELOPE_KEYS)
    if extra:
        return request_id, _shape_error(
            "envelope", extra[0], 'only the keys "request_id" and "records"'
        )
    records = document.get("records")
    if isinstance(records, dict):
        return request_id, Inbound(request_id, [records])
    if isinstance(records, list):
        return request_id, Inbound(request_id, records)
    return request_id, _shape_error("records", records, "a record object or a list of records")


def _shape_error(field: str, value: Any, expected: str = SHAPE) -> MessageError:
    problem = Problem(field, expected, value)
    return MessageError(problem.describe(), "invalid_request", [problem], "schema")


def _start(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
    return text[:200]


class RecordChecker:
    """One model version's record checks, as the named-feature API runs them."""

    def __init__(self, model: ServedModel, express: RecordsExpress | None = None) -> None:
        self.model = model
        self.schema = model.schema
        self.express = express
        self.classes = [str(c) for c in model.manifest.target.classes or []]

    def check(self, records: list[Any]) -> ValidatedBatch:
        """The rows ready for the model, or InvalidInputError / TooLargeError / MessageError.

        Records of the common shape (exactly the feature names, numbers in range) are
        taken by the records express lane, as on `POST /models/{m}/predict`; the rest,
        and every error, through `FeatureSchema.from_records`.
        """
        if self.express is not None:
            accepted = self.express.accept(records)
            if accepted is not None:
                return accepted
        limit = self.schema.max_rows
        if len(records) > limit:
            raise TooLargeError(
                f"message has {len(records)} rows; at most {limit} are allowed per message",
                [Problem("records", f"at most {limit} rows", f"{len(records)} rows")],
            )
        return self.schema.from_records(records)

    def answer(self, request_id: str, prediction: Prediction) -> bytes:
        """The encoded answer: the body `POST /models/{m}/predict` would return."""
        return records_answer(
            self.model.name,
            self.model.version,
            request_id,
            prediction.predict,
            prediction.proba,
            self.classes,
        )


def error_reply(request_id: str, exc: ServiceError) -> bytes:
    """The encoded error: the HTTP API's error body, plus the message's request id."""
    return error_body(exc.message, exc.code, problems_of(exc), request_id)


def rejection_reason(exc: ServiceError) -> str | None:
    """The `tabserve_validation_errors_total` reason of a refused message, if it is one."""
    if isinstance(exc, InvalidInputError):
        return exc.reason
    if isinstance(exc, TooLargeError):
        return "too_large"
    return None
