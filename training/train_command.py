"""The run of `tabserve train` (its arguments: `cli.py`)."""

from __future__ import annotations

import argparse
import sys

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.seal import load_private_key
from tabserve.training.datasets import Dataset, load_bundled, load_csv
from tabserve.training.errors import TrainingError
from tabserve.training.estimators import ESTIMATORS, ParamValue, parse_params
from tabserve.training.evaluate import format_table
from tabserve.training.from_log import latest_manifest, read_log, reused_params
from tabserve.training.pipeline import TrainRequest, train
from tabserve.training.progress import Progress


def run(args: argparse.Namespace) -> int:
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
