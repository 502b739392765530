"""The run of `tabserve import` (its arguments: `import_cli.py`)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.manifest import Manifest
from tabserve.training.errors import TrainingError
from tabserve.training.evaluate import format_table
from tabserve.training.export import export
from tabserve.training.importer import (
    is_mlflow_model,
    load_mlflow,
    load_model_file,
    model_columns,
    read_sample,
    signature_columns,
)
from tabserve.training.signature_export import SignatureColumn, export_from_signature


@dataclass(frozen=True)
class _Loaded:
    """A loaded model and what describes its inputs: a sample, or a signature's columns."""

    model: Any
    source: str
    x: Any = None
    y: Any = None
    columns: list[SignatureColumn] | None = None


def run(args: argparse.Namespace) -> int:
    """Load, check and export; print what was written. Returns the exit status."""
    try:
        loaded = _load(args)
        manifest, ignored = _export(loaded, args)
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


def _export(loaded: _Loaded, args: argparse.Namespace) -> tuple[Manifest, list[str]]:
    """The version written, and the sample's columns the model does not take."""
    where = {
        "name": args.name,
        "models_dir": args.models_dir,
        "version": args.version,
        "format": args.format,
        "source": loaded.source,
    }
    if loaded.columns is not None:  # no data at all: the signature alone
        return export_from_signature(loaded.model, loaded.columns, **where), []
    x, ignored = model_columns(loaded.model, loaded.x)
    return export(loaded.model, x, loaded.y, **where), ignored


def _load(args: argparse.Namespace) -> _Loaded:
    allow = args.allow_version_mismatch
    if is_mlflow_model(args.model):
        imported = load_mlflow(args.model, allow_mismatch=allow)
        if args.data is not None:
            x, y = read_sample(args.data, args.target)
            return _Loaded(imported.model, f"{imported.source} data:{args.data}", x, y)
        if args.target:
            raise TrainingError("--target goes with --data")
        if imported.sample is None:
            columns = signature_columns(imported.signature, args.model)
            return _Loaded(imported.model, f"{imported.source} signature", columns=columns)
        return _Loaded(imported.model, f"{imported.source} input_example", imported.sample)
    if args.data is None:
        raise TrainingError(
            f"{args.model}: a model file needs --data FILE (CSV or Parquet), a sample of its "
            "training data: it gives the features, their types and ranges, and the drift "
            "reference"
        )
    model = load_model_file(args.model, allow_mismatch=allow)
    x, y = read_sample(args.data, args.target)
    return _Loaded(model, f"file:{args.model} data:{args.data}", x, y)
