"""Domain errors. Each carries a stable identifier (`code`); the API maps codes to HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where, what was given, what was expected."""

    field: str
    expected: str
    value: Any = None
    index: int | None = None
    row: int | None = None

    def describe(self) -> str:
        """`feature 'age' (index 3), row 0: expected a finite number, got 'abc'`."""
        where = f"feature {self.field!r}" if self.index is not None else self.field
        if self.index is not None:
            where += f" (index {self.index})"
        if self.row is not None:
            where += f", row {self.row}"
        return f"{where}: expected {self.expected}, got {_show(self.value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ServiceError(Exception):
    """Base of the errors a client can be told about."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFoundError(ServiceError):
    """No model (or version) by that name."""

    code = "model_not_found"


class ModelNotReadyError(ServiceError):
    """The model exists but failed to load or is still loading."""

    code = "model_not_ready"


class InvalidInputError(ServiceError):
    """The request's data does not fit the model. `reason` labels the metric."""

    code = "invalid_input"

    def __init__(self, message: str, reason: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.problems = problems or []

    @classmethod
    def of(cls, reason: str, problems: list[Problem]) -> InvalidInputError:
        """An error whose message lists the first few problems."""
        shown = "; ".join(p.describe() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return cls(shown + more, reason, problems)


class TooLargeError(ServiceError):
    """The request is larger than the configured limits (body bytes, rows, nesting, strings)."""

    code = "too_large"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class OverloadedError(ServiceError):
    """The model's queue is full: the client should retry later (503 + Retry-After)."""

    code = "overloaded"


class DeadlineExceededError(ServiceError):
    """No model call started before the request's deadline; its work was dropped (504)."""

    code = "deadline_exceeded"


class FeatureDisabledError(ServiceError):
    """A route of a feature that is off; the message and details name the setting (409)."""

    code = "feature_disabled"

    def __init__(self, feature: str, setting: str, expected: str, value: Any) -> None:
        super().__init__(f"{feature} is off: set {setting} to {expected} to turn it on")
        self.setting = setting
        self.problems = [Problem(field=setting, expected=expected, value=value)]
