"""`python -m tabserve.training` and `tabserve train`: from data to a served artifact.

The arguments are defined here with no heavy import, so `--help` is quick; the run
(scikit-learn, pandas, the prediction log's reader) is `train_command.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabserve.training.options import DATASET_NAMES, ESTIMATOR_NAMES


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The train command's options (shared by both entry points)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help=f"a bundled dataset: {', '.join(DATASET_NAMES)}")
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
        f"version's): {', '.join(ESTIMATOR_NAMES)}",
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
    from tabserve.training.train_command import run  # scikit-learn loads here, not for --help

    return run(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tabserve.training`."""
    parser = argparse.ArgumentParser(
        prog="python -m tabserve.training",
        description="Train a model and export a versioned artifact.",
    )
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))
