"""`tabserve predict`: send rows from a CSV or JSON file to a running service."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import httpx


class ClientError(Exception):
    """The file could not be read or the service refused the request."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a CSV (header row of feature names) or JSON (a record or a list)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ClientError(f"{path}: cannot read: {exc.strerror}") from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            raise ClientError(f"{path}: no data rows")
        return [{k: _cell(v) for k, v in row.items()} for row in rows]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    records = data if isinstance(data, list) else [data]
    if not records or not all(isinstance(r, dict) for r in records):
        raise ClientError(f"{path}: expected a record object or a list of record objects")
    return records


def _cell(value: str | None) -> Any:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else None


def predict(
    url: str, model: str, records: list[dict[str, Any]], version: int | None = None
) -> dict[str, Any]:
    """POST the records to the named-feature API; return the decoded answer."""
    path = f"/models/{model}/predict"
    if version is not None:
        path = f"/models/{model}/versions/{version}/predict"
    try:
        response = httpx.post(url.rstrip("/") + path, json=records, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise ClientError(f"{response.status_code} from {path}: {response.text[:200]}") from exc
    if response.status_code != 200:
        raise ClientError(f"{response.status_code} from {path}: {body.get('error', body)}")
    return body
