"""`tabserve score` on a real Dask cluster: the same rows as in-process, one load per worker.

One two-process `LocalCluster` serves the whole module (small data, one thread each).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster, Worker

from tabserve.service.batch.cluster import PLUGIN
from tests.service.batch.conftest import Score, iris_rows, read_scored, scored_line

PARTS = 4


def plugin_names(dask_worker: Worker) -> list[str]:
    """The worker plugins a worker holds."""
    return sorted(dask_worker.plugins)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    """Two worker processes, one thread each, no dashboard."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


@pytest.fixture
def parts(models_dir: Path, tmp_path: Path) -> Path:
    """Iris as a Parquet folder of four part files (four partitions)."""
    rows = iris_rows(models_dir)
    folder = tmp_path / "rows"
    folder.mkdir()
    size = -(-len(rows) // PARTS)
    for k in range(PARTS):
        rows.iloc[k * size : (k + 1) * size].to_parquet(folder / f"part.{k}.parquet", index=False)
    return folder


def test_a_cluster_scores_the_same_rows_as_in_process_loading_once_per_worker(
    cluster: Client, parts: Path, models_dir: Path, tmp_path: Path, score: Score
) -> None:
    common = ("--models-dir", models_dir, "--model", "iris", "--version", 1, "--id-column", "id")
    address = cluster.scheduler.address
    status, err = score(parts, tmp_path / "dask", *common, "--scheduler", address)
    assert (status, scored_line(err)) == (0, f"150 rows scored into {tmp_path / 'dask'}")
    assert score(parts, tmp_path / "local.parquet", *common)[0] == 0
    on_dask = read_scored(tmp_path / "dask")
    in_process = read_scored(tmp_path / "local.parquet")
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == [
        f"part.{k}.parquet" for k in range(PARTS)
    ]
    pd.testing.assert_frame_equal(on_dask, in_process, check_exact=True)
    # Two workers, four partitions: one load per worker, and nothing left on them after.
    assert f"on Dask: 2 workers loaded the model 2 times and scored {PARTS} partitions" in err
    assert [PLUGIN in names for names in cluster.run(plugin_names).values()] == [False, False]


def test_a_refused_row_on_a_cluster_names_its_partition_and_row(
    cluster: Client, parts: Path, models_dir: Path, tmp_path: Path, score: Score
) -> None:
    part = pd.read_parquet(parts / "part.2.parquet")
    part.loc[3, "petal_length_cm"] = float("inf")
    part.to_parquet(parts / "part.2.parquet", index=False)
    common = ("--models-dir", models_dir, "--model", "iris", "--version", 1, "--id-column", "id")
    address = cluster.scheduler.address
    status, err = score(parts, tmp_path / "out", *common, "--scheduler", address)
    assert status == 1
    assert (
        "error: refused: partition 2, row 3: feature 'petal_length_cm' (index 2): "
        "expected a finite number, got 'inf'"
    ) in err
    assert not (tmp_path / "out").exists()
    status, err = score(
        parts, tmp_path / "out", *common, "--scheduler", address, "--on-error", "skip"
    )
    assert status == 0
    assert scored_line(err) == f"149 rows scored into {tmp_path / 'out'}"
    assert err.splitlines()[-1] == f"1 rows refused, with reasons in {tmp_path / 'out.refused'}"
    refused = pd.read_parquet(tmp_path / "out.refused")
    assert refused[["source", "row", "id", "feature", "value"]].values.tolist() == [
        ["partition 2", 3, int(part.loc[3, "id"]), "petal_length_cm", "'inf'"]
    ]
    assert int(part.loc[3, "id"]) not in read_scored(tmp_path / "out")["id"].tolist()


def test_csv_on_a_cluster_writes_csv_parts_equal_to_in_process(
    cluster: Client, models_dir: Path, tmp_path: Path, score: Score
) -> None:
    iris_rows(models_dir).to_csv(tmp_path / "rows.csv", index=False)
    common = ("--models-dir", models_dir, "--model", "iris", "--version", 2, "--id-column", "id")
    address = cluster.scheduler.address
    status, _ = score(tmp_path / "rows.csv", tmp_path / "dask", *common, "--format", "csv",
                      "--scheduler", address)  # fmt: skip
    assert status == 0
    assert [p.name for p in (tmp_path / "dask").iterdir()] == ["part.0.csv"]
    assert score(tmp_path / "rows.csv", tmp_path / "local.csv", *common)[0] == 0
    on_dask = pd.read_csv(tmp_path / "dask" / "part.0.csv", float_precision="round_trip")
    pd.testing.assert_frame_equal(on_dask, read_scored(tmp_path / "local.csv"), check_exact=True)
