"""Score on a Dask cluster: read with dask.dataframe, score each partition, write part files.

Each worker loads the model once, when `ModelPlugin` is registered (and on any
worker that joins later); a task carries only the plugin's name and the column
names, never the model, so the model is neither pickled per task nor loaded per
partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, Worker, WorkerPlugin, get_worker

from tabserve.service.batch.errors import BatchError
from tabserve.service.batch.job import DaskCounts, ScoreJob, ScoreReport, written_in_place
from tabserve.service.batch.model import BatchModel, open_model
from tabserve.service.batch.scoring import OnError, Scorer
from tabserve.service.batch.sources import Format, Inputs, check_columns, csv_options, find_inputs
from tabserve.service.core.loading import LoadingConfig

PLUGIN = "tabserve-batch-model"
BLOCK_SIZE = "64MiB"
"""Bytes of CSV per partition (Parquet partitions follow the files' row groups)."""


class ModelPlugin(WorkerPlugin):
    """Loads the model once on each worker; tasks find it by the plugin's name."""

    name = PLUGIN

    def __init__(self, config: LoadingConfig, model: str, version: int) -> None:
        self.config = config
        self.model_name = model
        self.version = version
        self.loads = 0
        self.partitions = 0
        self._model: BatchModel | None = None

    def setup(self, worker: Worker) -> None:
        """Load, verify and warm up the model, as the service does.

        A worker that cannot (another models folder, an edited artifact) fails the run
        with the reason, naming the worker.
        """
        try:
            self._model = open_model(self.config, self.model_name, self.version)
        except BatchError as exc:
            raise BatchError(f"Dask worker {worker.address}: {exc.message}") from exc
        self.loads += 1

    def teardown(self, worker: Worker) -> None:
        """Release the model."""
        if self._model is not None:
            self._model.runtime.unload()
            self._model = None

    @property
    def model(self) -> BatchModel:
        """The worker's model (set up before any task runs)."""
        if self._model is None:
            raise RuntimeError(f"plugin {PLUGIN} was not set up on this worker")
        return self._model


@dataclass(frozen=True)
class PartitionScorer:
    """What each task runs: small and picklable, it holds no model."""

    carried: tuple[str, ...]
    on_error: OnError
    textual: bool
    refused: Path
    format: Format

    def __call__(self, frame: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> Any:
        """Score one partition; its refused rows go to the side folder as one part file."""
        number = partition_info["number"] if partition_info else 0
        plugin = cast(ModelPlugin, get_worker().plugins[PLUGIN])
        scorer = Scorer(plugin.model, self.carried, self.on_error, textual=self.textual)
        scored = scorer.score(frame, f"partition {number}")
        plugin.partitions += 1
        if not scored.refused.empty:
            self.refused.mkdir(parents=True, exist_ok=True)
            part = self.refused / f"part.{number}.{self.format}"
            if self.format == "csv":
                scored.refused.to_csv(part, index=False)
            else:
                scored.refused.to_parquet(part, index=False)
        return scored.output


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, else of a local cluster of `workers` processes."""
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=30)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise BatchError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def score_on_dask(
    job: ScoreJob, model: BatchModel, config: LoadingConfig, client: Client
) -> ScoreReport:
    """Score `job` on the cluster `client` talks to; `model` (loaded here) gives the meta.

    The workers hold the model for this run only: the plugin is unregistered (its
    teardown drops the model) when the run ends, so a shared cluster keeps nothing.
    """
    inputs = find_inputs(job.input)
    columns = list(dict.fromkeys([*model.schema.names, *job.carried]))
    check_columns(inputs, columns)
    frame = read_frame(inputs, columns)
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in frame.dtypes.items()})
    meta = Scorer(model, job.carried, job.on_error, textual=inputs.textual).output_meta(empty)
    client.register_plugin(ModelPlugin(config, model.name, model.version))
    try:
        with (
            written_in_place(job.output) as output,
            written_in_place(job.refused_path) as side,
        ):
            task = PartitionScorer(job.carried, job.on_error, inputs.textual, side, job.format)
            scored = frame.map_partitions(task, meta=meta)  # type: ignore[no-untyped-call]
            write_parts(scored, output, job.format)
        counts = list(client.run(worker_stats).values())
    finally:
        client.unregister_worker_plugin(PLUGIN)  # type: ignore[no-untyped-call]
    refused = count_rows(job.refused_path, job.format)
    return ScoreReport(
        count_rows(job.output, job.format),
        refused,
        job.output,
        job.refused_path if refused else None,
        DaskCounts(
            len(counts), sum(c["loads"] for c in counts), sum(c["partitions"] for c in counts)
        ),
    )


def write_parts(scored: dd.DataFrame, folder: Path, format: Format) -> None:
    """Compute `scored` into part files; Arrow's refusals (types that differ between
    partitions) become a BatchError."""
    try:
        if format == "csv":
            scored.to_csv(str(folder / "part.*.csv"), index=False)  # type: ignore[no-untyped-call]
        else:
            scored.to_parquet(str(folder), write_index=False)  # type: ignore[no-untyped-call]
    except pa.ArrowException as exc:
        raise BatchError(f"cannot write {format.upper()} parts: {exc}") from exc


def read_frame(inputs: Inputs, columns: list[str]) -> dd.DataFrame:
    """The input as a Dask frame of `columns` (the pyarrow engine for Parquet)."""
    files = [str(f) for f in inputs.files]
    frame: dd.DataFrame
    if inputs.format == "csv":
        frame = dd.read_csv(files, blocksize=BLOCK_SIZE, **csv_options(columns))
    else:
        frame = dd.read_parquet(files, columns=columns)
    return frame


def count_rows(folder: Path, format: Format) -> int:
    """Rows in the part files of `folder` (0 if it was not written)."""
    if not folder.is_dir():
        return 0
    parts = sorted(folder.glob(f"*.{format}"))
    if format == "parquet":
        return sum(pq.read_metadata(p).num_rows for p in parts)
    return sum(len(chunk) for p in parts for chunk in pd.read_csv(p, chunksize=65_536))


def worker_stats(dask_worker: Worker) -> dict[str, int]:
    """How often this worker loaded the model and how many partitions it scored."""
    plugin = cast(ModelPlugin, dask_worker.plugins[PLUGIN])
    return {"loads": plugin.loads, "partitions": plugin.partitions}
