"""`tabserve predict`: send rows from a CSV or JSON file to a running service."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx

from tabserve.training.csv_table import is_missing, read_table
from tabserve.training.errors import TrainingError


class ClientError(Exception):
    """The file could not be read or the service refused the request."""


def key_headers(path: Path | None) -> dict[str, str]:
    """`Authorization: Bearer <key>` with the key read from `path` (docs/access-control.md);
    none without a path. A file keeps the key out of the command line and shell history."""
    if path is None:
        return {}
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ClientError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    if not key or any(c.isspace() for c in key):
        raise ClientError(f"API key file {path}: expected one key on one line")
    return {"Authorization": f"Bearer {key}"}


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a CSV (header row of feature names) or JSON (a record or a list).

    A CSV is read by training's rules (`training.csv_table`): the same cells
    (`NA`, `?`, empty, ...) are missing values, sent as null.
    """
    if path.suffix.lower() == ".csv":
        try:
            header, rows, _ = read_table(path)
        except TrainingError as exc:
            raise ClientError(str(exc)) from exc
        return [{k: _cell(v) for k, v in zip(header, row, strict=True)} for row in rows]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ClientError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(_not_json(path, exc)) from exc
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    records = data if isinstance(data, list) else [data]
    if not records or not all(isinstance(r, dict) for r in records):
        raise ClientError(f"{path}: expected a record object or a list of record objects")
    return records


def _not_json(path: Path, exc: json.JSONDecodeError) -> str:
    message = f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}"
    if exc.msg == "Extra data":
        # A second value after the first: one JSON document per line
        message += "; for JSON Lines (one record per line) add --stream"
    return message


def _cell(value: str | None) -> Any:
    if value is None or is_missing(value):
        return None
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return number if math.isfinite(number) else None


def fit_columns(
    url: str,
    model: str,
    version: int | None,
    records: list[dict[str, Any]],
    ignore_extra: bool,
    headers: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Leave out the model's target column, and with `ignore_extra` every non-feature.

    Returns the records and one note per column left out. A column that is no
    feature is refused here, once, rather than by the server on every row.
    """
    served = _describe(url, model, version, headers)
    features = {f["name"] for f in served["features"]}
    present = list(dict.fromkeys(k for record in records for k in record))
    extra = [c for c in present if c not in features]
    target = served.get("target")
    notes = []
    if target in extra:
        notes.append(f"column {target!r} left out: it is what {model} predicts")
        extra.remove(target)
    if extra and not ignore_extra:
        raise ClientError(
            f"columns {', '.join(map(repr, extra))} are not features of {model} version "
            f"{served['version']} (features: {', '.join(sorted(features))}); remove them "
            "or add --ignore-extra-columns"
        )
    if extra:
        notes.append(f"columns {', '.join(map(repr, extra))} left out: not features of {model}")
    dropped = set(extra) | ({target} if target in present else set())
    if not dropped:
        return records, notes
    return [{k: v for k, v in r.items() if k not in dropped} for r in records], notes


def _describe(
    url: str, model: str, version: int | None, headers: dict[str, str] | None
) -> dict[str, Any]:
    """The version the request would reach, from `GET /models/{model}`."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/models/{model}", headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise ClientError(f"{response.status_code} from /models/{model}: {response.text[:200]}")
    summary: dict[str, Any] = response.json()
    wanted = version if version is not None else summary["default_version"]
    for served in summary["versions"]:
        if served["version"] == wanted:
            found: dict[str, Any] = served
            return found
    known = ", ".join(str(v["version"]) for v in summary["versions"])
    raise ClientError(f"model {model!r} has no version {wanted}; versions: {known}")


def predict(
    url: str,
    model: str,
    records: list[dict[str, Any]],
    version: int | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST the records to the named-feature API; return the decoded answer."""
    path = f"/models/{model}/predict"
    if version is not None:
        path = f"/models/{model}/versions/{version}/predict"
    try:
        response = httpx.post(url.rstrip("/") + path, json=records, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise ClientError(f"{response.status_code} from {path}: {response.text[:200]}") from exc
    if response.status_code != 200:
        raise ClientError(f"{response.status_code} from {path}: {body.get('error', body)}")
    return body
