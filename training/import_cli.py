"""`tabserve import`: the command line of `training.importer`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tabserve.artifact.errors import ArtifactError
from tabserve.training.errors import TrainingError
from tabserve.training.evaluate import format_table
from tabserve.training.export import export
from tabserve.training.importer import (
    ALLOW_FLAG,
    is_mlflow_model,
    load_mlflow,
    load_model_file,
    model_columns,
    read_sample,
    signature_columns,
)
from tabserve.training.signature_export import export_from_signature


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The import command's options."""
    parser.add_argument(
        "model",
        type=Path,
        metavar="MODEL",
        help="a joblib or pickle file (any extension), a skops file, or an MLflow model "
        "directory (sklearn, xgboost or lightgbm flavour)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="a sample of the training data, CSV or Parquet: gives the features, their "
        "types, ranges and categories, and the drift reference (required for a model file; "
        "an MLflow model falls back to its input_example, else to its signature alone: "
        "names and types, no drift)",
    )
    parser.add_argument("--target", help="with --data: the column to predict (for metrics)")
    parser.add_argument("--name", required=True, help="the served model's name")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--format", choices=["joblib", "skops"], default="joblib")
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="import a model made with another scikit-learn minor or XGBoost/LightGBM major "
        "(it may fail or predict differently; the server needs TABSERVE_ALLOW_VERSION_MISMATCH)",
    )


def run_import(args: argparse.Namespace) -> int:
    """Load, check and export; print what was written. Returns the exit status."""
    try:
        model, x, y, source = _load(args)
        if isinstance(x, list):  # an MLflow signature's columns: no data at all
            ignored: list[str] = []
            manifest = export_from_signature(
                model,
                x,
                name=args.name,
                models_dir=args.models_dir,
                version=args.version,
                format=args.format,
                source=source,
            )
        else:
            x, ignored = model_columns(model, x)
            manifest = export(
                model,
                x,
                y,
                name=args.name,
                models_dir=args.models_dir,
                version=args.version,
                format=args.format,
                source=source,
            )
    except (TrainingError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ignored:
        print(f"columns not used by the model: {', '.join(ignored)}", file=sys.stderr)
    folder = args.models_dir / manifest.name / str(manifest.version)
    print(f"model {manifest.name} version {manifest.version} ({manifest.estimator.class_name})")
    if manifest.metrics:
        print(format_table(manifest.metrics))
    print(f"saved to {folder} (sha256 {manifest.artifact.sha256[:12]}...)")
    if not manifest.drift.available:
        print(f"drift unavailable: {manifest.drift.reason}")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    allow = args.allow_version_mismatch
    if is_mlflow_model(args.model):
        imported = load_mlflow(args.model, allow_mismatch=allow)
        if args.data is not None:
            x, y = read_sample(args.data, args.target)
            return imported.model, x, y, f"{imported.source} data:{args.data}"
        if args.target:
            raise TrainingError("--target goes with --data")
        if imported.sample is None:
            columns = signature_columns(imported.signature, args.model)
            return imported.model, columns, None, f"{imported.source} signature"
        return imported.model, imported.sample, None, f"{imported.source} input_example"
    if args.data is None:
        raise TrainingError(
            f"{args.model}: a model file needs --data FILE (CSV or Parquet), a sample of its "
            "training data: it gives the features, their types and ranges, and the drift "
            "reference"
        )
    model = load_model_file(args.model, allow_mismatch=allow)
    x, y = read_sample(args.data, args.target)
    return model, x, y, f"file:{args.model} data:{args.data}"


def main(argv: list[str] | None = None) -> int:
    """`python -m tabserve.training.import_cli`, the same as `tabserve import`."""
    parser = argparse.ArgumentParser(prog="tabserve import", description=__doc__)
    add_import_arguments(parser)
    return run_import(parser.parse_args(argv))
