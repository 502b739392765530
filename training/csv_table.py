"""How a CSV file is read, for training and for `tabserve predict` alike.

The rules live apart from `datasets` so the prediction client can read a file
the way training did without importing scikit-learn: blank lines skipped, a
header of unique names, every row as wide as the header, and the same cells
(`NA`, `?`, empty, ...) taken as missing values.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tabserve.training.errors import TrainingError

MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
"""Cells (compared stripped and lower-cased) that are missing values."""


def read_table(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the non-blank rows and the file line each of those rows starts on.

    Raises TrainingError naming the file (and line) for anything unreadable.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            # The header is the first row with a cell: blank lines may come before it.
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
            start = reader.line_num + 1
            for row in reader:
                # Blank lines are skipped and a quoted cell may span lines, so a row's
                # position in `rows` is not its line in the file.
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(start)
                start = reader.line_num + 1
    except FileNotFoundError as exc:
        raise TrainingError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise TrainingError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, csv.Error) as exc:
        raise TrainingError(f"{path}: cannot read CSV: {exc}") from exc
    if not header or not any(h.strip() for h in header):
        raise TrainingError(f"{path}: empty file; expected a header row and data rows")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise TrainingError(f"{path}: duplicate column names: {', '.join(dupes)}")
    if not rows:
        raise TrainingError(f"{path}: no data rows after the header")
    for line, row in zip(lines, rows, strict=True):
        if len(row) != len(header):
            raise TrainingError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
    return header, rows, lines


def is_missing(cell: str) -> bool:
    """Whether a CSV cell is a missing value."""
    return cell.strip().lower() in MISSING_MARKERS
