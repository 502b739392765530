"""What to score: one CSV or Parquet file, or a folder of part files, read in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq

from tabserve.service.batch.errors import BatchError

Format = Literal["csv", "parquet"]
SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Inputs:
    """The files to score, in order, all of one format."""

    files: tuple[Path, ...]
    format: Format

    @property
    def textual(self) -> bool:
        """CSV cells arrive as text; Parquet columns keep their types."""
        return self.format == "csv"


@dataclass(frozen=True)
class Chunk:
    """Rows `first_row` onwards of `source` (a file's path)."""

    source: str
    first_row: int
    frame: pd.DataFrame


def find_inputs(path: Path) -> Inputs:
    """`path` itself, or the data files in the folder (and below), sorted by path.

    Files whose names start with `_` or `.` (`_SUCCESS`, `_metadata`, hidden files)
    are skipped, as Spark and Dask write them beside part files.
    """
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not p.name.startswith(("_", ".")) and not _hidden_under(p, path)
        )
        if not files:
            raise BatchError(f"{path}: no files to score in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise BatchError(f"{path}: no such file or folder")
    formats = {_format_of(p) for p in files}
    if len(formats) > 1:
        raise BatchError(f"{path}: holds both CSV and Parquet files; score one format at a time")
    return Inputs(tuple(files), formats.pop())


def check_columns(inputs: Inputs, wanted: Sequence[str]) -> None:
    """Raise BatchError naming the first file that lacks one of the `wanted` columns."""
    for file in inputs.files:
        present = set(columns_of(file, inputs.format))
        missing = [name for name in wanted if name not in present]
        if missing:
            raise BatchError(
                f"{file}: no column {', '.join(map(repr, missing))} "
                f"(expected the model's features and the columns named by --id-column "
                f"and --keep: {', '.join(wanted)})"
            )


def columns_of(file: Path, format: Format) -> list[str]:
    """The column names of a CSV header or a Parquet schema."""
    try:
        if format == "csv":
            return list(pd.read_csv(file, nrows=0, encoding="utf-8-sig").columns)
        return list(pq.read_schema(file).names)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BatchError(f"{file}: cannot read it as {format.upper()}: {exc}") from exc


def read_chunks(inputs: Inputs, columns: Sequence[str], rows: int) -> Iterator[Chunk]:
    """Each file's `columns`, `rows` at a time, so memory holds one chunk per step."""
    for file in inputs.files:
        first = 0
        for frame in _file_chunks(file, inputs.format, list(columns), rows):
            yield Chunk(str(file), first, frame)
            first += len(frame)


def _file_chunks(
    file: Path, format: Format, columns: list[str], rows: int
) -> Iterator[pd.DataFrame]:
    try:
        if format == "csv":
            yield from pd.read_csv(file, chunksize=rows, **csv_options(columns))
        else:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=rows, columns=columns):
                yield batch.to_pandas()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BatchError(f"{file}: cannot read it as {format.upper()}: {exc}") from exc


def csv_options(columns: list[str]) -> dict[str, object]:
    """How `pandas.read_csv` (and Dask's) read a CSV to score: every cell as text."""
    return {
        "usecols": columns,
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "encoding": "utf-8-sig",
    }


def _format_of(file: Path) -> Format:
    found = SUFFIXES.get(file.suffix.lower())
    if found is None:
        known = ", ".join(SUFFIXES)
        raise BatchError(f"{file}: unknown file type (expected a name ending in {known})")
    return found


def _hidden_under(file: Path, root: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in file.relative_to(root).parts[:-1])
