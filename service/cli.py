"""The `tabserve` console script: train, serve, predict, bench."""

from __future__ import annotations

import argparse
import sys

from training.cli import add_train_arguments, run_train


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-command per task."""
    parser = argparse.ArgumentParser(prog="tabserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and export a versioned artifact")
    add_train_arguments(train)
    train.set_defaults(handler=run_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tabserve` script."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
