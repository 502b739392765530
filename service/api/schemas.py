"""Response models shared by several routers (for typed docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ProblemBody(BaseModel):
    """One thing wrong with the input."""

    field: str = Field(description="The feature, tensor or field at fault.")
    index: int | None = Field(default=None, description="The feature's position, if one.")
    row: int | None = Field(default=None, description="The row in the request, if one.")
    value: Any = Field(default=None, description="The value that was given.")
    expected: str = Field(description="What was expected instead.")


class ErrorBody(BaseModel):
    """Every error has this shape (the V2 protocol's `error` string, plus detail)."""

    error: str = Field(description="What went wrong, for people.")
    code: str = Field(description="A stable identifier, for programs.")
    details: list[ProblemBody] = Field(default_factory=list)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for `statuses`."""
    described = {
        400: "Invalid input: the body names the feature, the value and what was expected.",
        401: "No credentials: send Authorization: Bearer <token>.",
        403: "Wrong credentials.",
        404: "No such model or version.",
        409: "The feature is off (`feature_disabled`); the body names the setting that "
        "turns it on.",
        413: "The request is larger than the configured limits.",
        422: "The request body does not match the documented schema.",
        503: "The model is not ready, or its queue is full (retry after `Retry-After` s).",
        504: "No model call took the request before its deadline; its work was dropped.",
    }
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}
