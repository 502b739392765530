"""Write scored chunks, one after another, to one Parquet or CSV file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tabserve.service.batch.errors import BatchError
from tabserve.service.batch.sources import Format


class FrameWriter:
    """Appends frames of one shape to `path`; with no rows, writes `empty` (or, if it
    is None, no file at all).

    The Parquet schema is the first frame's, so every chunk is written with the same
    column types (a chunk's text column that happens to be all missing included).
    """

    def __init__(
        self, path: Path, format: Format, empty: pd.DataFrame | None, *, shown: Path | None = None
    ) -> None:
        self.path = path
        # Errors name the final file; `path` is where it is written until the run succeeds.
        self.shown = shown or path
        self.format = format
        self.rows = 0
        self._empty = empty
        self._parquet: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append `frame` (nothing happens for a frame without rows)."""
        if frame.empty:
            return
        if self.format == "csv":
            first = self.rows == 0
            frame.to_csv(self.path, mode="w" if first else "a", header=first, index=False)
        else:
            if self._parquet is None:
                self._schema = pa.Schema.from_pandas(frame, preserve_index=False)
                self._parquet = pq.ParquetWriter(self.path, self._schema)
            try:
                table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            except pa.ArrowException as exc:
                raise BatchError(
                    f"{self.shown}: a chunk's column types differ from the first chunk's "
                    f"({exc}); give the kept columns one type, or write CSV"
                ) from exc
            self._parquet.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        """Finish the file."""
        if self._parquet is not None:
            self._parquet.close()
        elif self.rows == 0 and self._empty is not None:
            if self.format == "csv":
                self._empty.to_csv(self.path, index=False)
            else:
                self._empty.to_parquet(self.path, index=False)
