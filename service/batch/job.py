"""One scoring run as the command line describes it, and what it did."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tabserve.service.batch.errors import BatchError
from tabserve.service.batch.scoring import OnError
from tabserve.service.batch.sources import Format
from tabserve.service.protocol.records import PREDICTION, PROBABILITY_PREFIX


@dataclass(frozen=True)
class ScoreJob:
    """Score `input` into `output`; `carried` columns (id first) go along with the answers."""

    input: Path
    output: Path
    format: Format
    carried: tuple[str, ...] = ()
    on_error: OnError = "fail"
    refused: Path | None = None
    """The side file (or folder, on Dask) for refused rows; None: beside the output."""
    chunk_rows: int = 65_536
    """Rows read, checked and predicted at a time in-process (memory stays bounded)."""

    @property
    def refused_path(self) -> Path:
        """Where refused rows go with `--on-error skip`."""
        if self.refused is not None:
            return self.refused
        stem = self.output.name.removesuffix(self.output.suffix)
        return self.output.with_name(f"{stem}.refused{self.output.suffix}")

    def check(self) -> None:
        """Refuse a carried column that an answer column would hide, and existing outputs."""
        for name in self.carried:
            if name == PREDICTION or name.startswith(PROBABILITY_PREFIX):
                raise BatchError(f"column {name!r} cannot be kept: the answers use that name")
        for path in (self.output, self.refused_path):
            if path.exists() or path.is_symlink():
                raise BatchError(f"{path} exists; remove it or name another output")


@dataclass(frozen=True)
class DaskCounts:
    """What the Dask workers did: how often they loaded the model, how much they scored."""

    workers: int
    loads: int
    partitions: int

    def describe(self) -> str:
        """`on Dask: 2 workers loaded the model 2 times and scored 8 partitions`."""
        return (
            f"on Dask: {self.workers} workers loaded the model {self.loads} times "
            f"and scored {self.partitions} partitions"
        )


@dataclass(frozen=True)
class ScoreReport:
    """What a run wrote."""

    scored: int
    refused: int
    output: Path
    refused_path: Path | None
    """The side file, when rows were refused."""
    dask: DaskCounts | None = None
    """Set for a run on Dask."""


@contextmanager
def written_in_place(path: Path) -> Iterator[Path]:
    """A hidden path beside `path`, renamed to it when the block succeeds, else removed,
    so a failed run leaves no half-written output."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"{path.parent}: cannot create the output's folder: {exc}") from exc
    _remove(partial)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    if partial.exists():
        partial.rename(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
