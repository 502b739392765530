"""`tabserve score` on a generated file: rows/s in-process and on a 2-worker Dask cluster.

`python -m bench.score [--rows 1000000] [--parts 8]` trains the benchmark models
(forest, logistic: bench/models.py) if missing, writes `--rows` rows of their data
as a folder of `--parts` Parquet files, and scores it with `tabserve score`:

* in-process (a child process reporting its own peak RSS), at the full size and at
  a quarter of it in a quarter of the files (the same rows per file), to show
  memory follows the chunk and the row group, not the file;
* on a `distributed.LocalCluster` of two worker processes (one thread each) that
  this script starts once, through `--scheduler`, so cluster start-up is left out
  (printed apart); each run reports how often the workers loaded the model and how
  many partitions they scored, and the script prints the bytes one task pickles.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.models import ensure_models, sample_rows
from bench.run import ROOT, progress

MODELS = ("forest", "logistic")


def write_parts(folder: Path, rows: int, parts: int) -> Path:
    """`rows` rows of the benchmark distribution (plus an id) as `parts` Parquet files."""
    folder.mkdir(parents=True)
    features = sample_rows(rows, seed=7)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame.insert(0, "id", np.arange(rows))
    for k, part in enumerate(np.array_split(np.arange(rows), parts)):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    return folder


# The child reports its own peak RSS (VmHWM, of its own address space): a child's
# ru_maxrss from wait4 also counts the parent's pages it had before exec.
CHILD = """
import re, sys
from pathlib import Path
from tabserve.service.cli import main
status = main(sys.argv[1:])
peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(f"peak-rss-kib {peak}", file=sys.stderr)
sys.exit(status)
"""


def score(
    models: Path, model: str, source: Path, out: Path, *extra: str
) -> tuple[float, float, float]:
    """Run `tabserve score` in a child process: (seconds in all, seconds it reports
    scoring took after the model loaded, its peak RSS in MiB)."""
    command = [sys.executable, "-c", CHILD, "score", str(source), str(out)]
    command += ["--models-dir", str(models), "--model", model, "--id-column", "id", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tabserve score failed:\n{done.stderr}")
    scoring = float(re.findall(r"rows scored into .* \(([0-9.]+) s, ", done.stderr)[-1])
    peak = int(re.findall(r"^peak-rss-kib (\d+)$", done.stderr, re.MULTILINE)[-1])
    for line in re.findall(r"^on Dask: .*$", done.stderr, re.MULTILINE):
        print(f"  {line}")  # the workers' model loads and partitions, as the command counts them
    return seconds, scoring, peak / 1024


def task_bytes() -> int:
    """What one Dask task pickles besides its partition: the partition scorer."""
    from tabserve.service.batch.cluster import PartitionScorer

    return len(pickle.dumps(PartitionScorer(("id",), "fail", False, Path("/tmp/x"), "parquet")))


def line(model: str, path: str, rows: int, times: tuple[float, float, float]) -> str:
    """One row of the table: wall time of the command, then of its scoring alone."""
    wall, scoring, rss = times
    return (
        f"{model:9} {path:26} {rows:9} {wall:7.1f} {scoring:8.1f} {rows / scoring:9.0f} "
        f"{rss:6.0f} MiB"
    )


def bench_model(
    model: str, models: Path, work: Path, sizes: dict[Path, int], scheduler: str
) -> None:
    """In-process at each size, then on the cluster at the largest; print each."""
    size = (models / model / "1" / "model.joblib").stat().st_size
    print(f"{model}: model file {size / 2**20:.1f} MiB")
    for source, rows in sizes.items():
        progress(f"{model} in-process, {rows} rows")
        times = score(models, model, source, work / f"{model}-{rows}.parquet")
        print(line(model, "in-process", rows, times))
    source, rows = max(sizes.items(), key=lambda item: item[1])
    progress(f"{model} on the cluster, {rows} rows")
    out = work / f"{model}-dask"
    times = score(models, model, source, out, "--scheduler", scheduler)
    print(line(model, "Dask, 2 workers (client)", rows, times))


def main(argv: list[str] | None = None) -> int:
    """Print one table of rows/s and peak RSS per model and path."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        models = ensure_models(work / "models", log=False)
        progress(f"writing {args.rows} rows as {args.parts} Parquet files")
        sizes = {
            write_parts(work / "rows", args.rows, args.parts): args.rows,
            # As many rows per file as the full size: Parquet is decoded a row group
            # (here a file) at a time, so that, and the chunk, bound memory.
            write_parts(work / "quarter", args.rows // 4, max(1, args.parts // 4)): args.rows // 4,
        }
        started = time.perf_counter()
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            print(f"LocalCluster(2 workers) start: {time.perf_counter() - started:.1f} s")
            print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")
            print(f"bytes one task pickles (no model): {task_bytes()}")
            print(
                f"{'model':9} {'path':26} {'rows':>9} {'wall s':>7} {'score s':>8} "
                f"{'rows/s':>9} peak RSS"
            )
            for model in MODELS:
                bench_model(model, models, work, sizes, cluster.scheduler_address)
            print(f"load average at the end (1, 5, 15 min): {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
