"""`tabserve import`: the command line of `training.importer`.

The arguments are defined here with no heavy import, so `--help` is quick; the run
is `import_command.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabserve.training.options import ALLOW_FLAG


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
    from tabserve.training.import_command import run  # scikit-learn loads here, not for --help

    return run(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m tabserve.training.import_cli`, the same as `tabserve import`."""
    parser = argparse.ArgumentParser(prog="tabserve import", description=__doc__)
    add_import_arguments(parser)
    return run_import(parser.parse_args(argv))
