"""`python -m tabserve.training` and `tabserve train`: from data to a served artifact."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.seal import load_private_key
from tabserve.training.datasets import BUNDLED_DATASETS, Dataset, load_bundled, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ESTIMATORS, ParamValue, parse_params
from tabserve.training.evaluate import format_table
from tabserve.training.from_log import latest_manifest, read_log, reused_params
from tabserve.training.pipeline import TrainRequest, train
from tabserve.training.progress import Progress


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The train command's options (shared by both entry points)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help=f"a bundled dataset: {', '.join(BUNDLED_DATASETS)}")
    source.add_argument("--csv", type=Path, help="a CSV file with a header row")
    source.add_argument(
        "--from-log",
        metavar="MODEL",
        help=(
            "the served model's logged predictions that received ground truth (its next "
            "version; --model defaults to the latest version's estimator and hyperparameters)"
        ),
    )
    parser.add_argument(
        "--log-url",
        help=(
            "with --from-log: the prediction log's database URL (default: the service's, "
            "from TABSERVE_PREDLOG_URL or TABSERVE_DATA_DIR)"
        ),
    )
    parser.add_argument(
        "--with-original",
        action="store_true",
        help="with --from-log: merge the data the latest version was trained on",
    )
    parser.add_argument("--target", help="with --csv: the column to predict")
    parser.add_argument(
        "--task",
        choices=["classification", "regression"],
        help="with --csv: override the task inferred from the target column",
    )
    parser.add_argument(
        "--categorical",
        action="append",
        default=[],
        metavar="COLUMN",
        help="with --csv: treat COLUMN as categories (repeatable)",
    )
    parser.add_argument(
        "--numeric",
        action="append",
        default=[],
        metavar="COLUMN",
        help="with --csv: treat COLUMN as numbers; non-numeric values are an error (repeatable)",
    )
    parser.add_argument(
        "--model",
        help=f"the estimator, required unless --from-log (which reuses the served "
        f"version's): {', '.join(ESTIMATORS)}",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an estimator hyperparameter, e.g. --param max_depth=8 (repeatable)",
    )
    parser.add_argument("--name", help="model name (default: the dataset or CSV file name)")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="where versions are written, as <name>/<version>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--format",
        choices=["joblib", "skops"],
        default="joblib",
        help=(
            "model file format: joblib (a pickle; loading it runs code, so share it only "
            "with who trusts you) or skops (loading runs no code; slower to load, larger)"
        ),
    )
    parser.add_argument(
        "--sign-key",
        type=Path,
        metavar="PEM",
        help=(
            "sign the artifact with this Ed25519 private key (PEM), for servers that set "
            "TABSERVE_ARTIFACT_PUBLIC_KEY"
        ),
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run_train(args: argparse.Namespace) -> int:
    """Train and export; print the metrics table. Returns the exit status."""
    progress = Progress(total=5, quiet=args.quiet)
    try:
        signing_key = load_private_key(args.sign_key) if args.sign_key else None
        with progress.step("loading data"):
            dataset = _dataset(args)
        model, params = _estimator(args)
        result = train(
            TrainRequest(
                dataset=dataset,
                model=model,
                models_dir=args.models_dir,
                name=args.name or dataset.name,
                params=params,
                seed=args.seed,
                test_size=args.test_size,
                version=args.version,
                artifact_format=args.format,
                signing_key=signing_key,
            ),
            progress,
        )
    except (TrainingError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = result.manifest
    folder = args.models_dir / manifest.name / str(manifest.version)
    print(f"model {manifest.name} version {manifest.version} ({manifest.estimator.class_name})")
    print(format_table(manifest.metrics))
    print(f"saved to {folder} (sha256 {manifest.artifact.sha256[:12]}...)")
    return 0


def _estimator(args: argparse.Namespace) -> tuple[str, dict[str, ParamValue]]:
    """`--model` and `--param`; with `--from-log` they default to the served version's."""
    params = parse_params(args.param)
    if args.model:
        return args.model, params
    if not args.from_log:
        raise TrainingError(
            f"--model is required (unless --from-log): one of {', '.join(ESTIMATORS)}"
        )
    reference = latest_manifest(args.models_dir, args.from_log)
    return reference.estimator.kind, {**reused_params(reference), **params}


def _dataset(args: argparse.Namespace) -> Dataset:
    if not args.from_log and (args.log_url or args.with_original):
        raise TrainingError("--log-url and --with-original go with --from-log only")
    if args.from_log:
        if args.target or args.task or args.categorical or args.numeric:
            raise TrainingError(
                "--target, --task, --categorical and --numeric do not go with --from-log: "
                "the served model's manifest fixes its features and target"
            )
        return read_log(args.models_dir, args.from_log, args.log_url, args.with_original)
    if args.dataset:
        if args.target or args.task or args.categorical or args.numeric:
            raise TrainingError(
                "--target, --task, --categorical and --numeric go with --csv only; "
                f"dataset {args.dataset!r} has a fixed target and task"
            )
        return load_bundled(args.dataset)
    if not args.target:
        raise TrainingError("--csv needs --target COLUMN: the column to predict")
    return load_csv(
        args.csv,
        args.target,
        task=args.task,
        categorical=frozenset(args.categorical),
        numeric=frozenset(args.numeric),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tabserve.training`."""
    parser = argparse.ArgumentParser(
        prog="python -m tabserve.training",
        description="Train a model and export a versioned artifact.",
    )
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))
