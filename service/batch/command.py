"""`tabserve score`: its arguments and its run (the CLI only lists the sub-command).

Only the standard library is imported up front: every `tabserve` command builds
this parser, and pandas, the model runtimes and Dask load only when scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabserve.service.batch.job import ScoreJob, ScoreReport
    from tabserve.service.batch.model import BatchModel
    from tabserve.service.core.loading import LoadingConfig

HELP = "score a CSV or Parquet file (or a folder of parts) with a model version, in batch"


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tabserve score`."""
    parser.add_argument(
        "input", type=Path, metavar="INPUT", help="a CSV or Parquet file, or a folder of parts"
    )
    parser.add_argument(
        "output", type=Path, metavar="OUTPUT", help="the file (a folder of parts on Dask) to write"
    )
    parser.add_argument(
        "--models-dir", type=Path, metavar="DIR", help="default: TABSERVE_MODELS_DIR, or models"
    )
    parser.add_argument("--model", required=True, metavar="NAME", help="the model's name")
    parser.add_argument(
        "--version", type=int, metavar="N", help="default: the highest version, as served"
    )
    parser.add_argument("--format", choices=["parquet", "csv"], help="default: by OUTPUT's suffix")
    parser.add_argument("--id-column", metavar="COL", help="a column copied to each answer (first)")
    parser.add_argument("--keep", nargs="+", default=[], metavar="COL", help="more columns copied")
    parser.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a refused row stops the run (fail, the default), or goes with its reasons to a "
        "side file while the rest is scored (skip)",
    )
    parser.add_argument(
        "--refused",
        type=Path,
        metavar="PATH",
        help="the side file of refused rows (default: OUTPUT.refused)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=65_536,
        metavar="N",
        help="in-process: rows read, checked and predicted at a time (default: %(default)s)",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS", help="score on this Dask cluster (tcp://host:port)"
    )
    cluster.add_argument(
        "--workers", type=int, metavar="N", help="score on a local Dask cluster of N processes"
    )


def run_score(args: argparse.Namespace, config: LoadingConfig) -> int:
    """Score as `args` say with models loaded as `config` says; errors to stderr, exit 1."""
    from tabserve.service.batch.errors import BatchError
    from tabserve.service.batch.model import open_model, resolve_version

    try:
        job = job_of(args)
        job.check()
        version = resolve_version(config, args.model, args.version)
        model = open_model(config, args.model, version)
        print(
            f"model {model.name} version {model.version} ({model.runtime.engine})", file=sys.stderr
        )
        started = time.perf_counter()
        report = _score(job, model, config, args)
        seconds = time.perf_counter() - started
    except BatchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    rate = f"{report.scored / seconds:.0f} rows/s" if seconds > 0 else "-"
    print(
        f"{report.scored} rows scored into {report.output} ({seconds:.2f} s, {rate})",
        file=sys.stderr,
    )
    if report.dask is not None:
        print(report.dask.describe(), file=sys.stderr)
    if report.refused_path is not None:
        print(
            f"{report.refused} rows refused, with reasons in {report.refused_path}", file=sys.stderr
        )
    return 0


def job_of(args: argparse.Namespace) -> ScoreJob:
    """The job the arguments describe."""
    from tabserve.service.batch.errors import BatchError
    from tabserve.service.batch.job import ScoreJob
    from tabserve.service.batch.sources import SUFFIXES

    carried = [args.id_column] if args.id_column else []
    carried += [c for c in args.keep if c not in carried]
    if args.chunk_rows < 1:
        raise BatchError(f"--chunk-rows: expected a positive number, got {args.chunk_rows}")
    if args.workers is not None and args.workers < 1:
        raise BatchError(f"--workers: expected a positive number, got {args.workers}")
    return ScoreJob(
        args.input,
        args.output,
        args.format or SUFFIXES.get(args.output.suffix.lower(), "parquet"),
        tuple(carried),
        args.on_error,
        args.refused,
        args.chunk_rows,
    )


def _score(
    job: ScoreJob, model: BatchModel, config: LoadingConfig, args: argparse.Namespace
) -> ScoreReport:
    from tabserve.service.batch.errors import BatchError

    if args.scheduler is None and args.workers is None:
        from tabserve.service.batch.local import score_locally

        return score_locally(job, model)
    try:
        from tabserve.service.batch.cluster import dask_client, score_on_dask
    except ImportError as exc:
        raise BatchError(
            f"--scheduler and --workers need Dask: pip install 'tabserve[batch]' ({exc})"
        ) from exc
    with dask_client(args.scheduler, args.workers or 1) as client:
        return score_on_dask(job, model, config, client)
