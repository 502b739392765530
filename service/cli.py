"""The `tabserve` console script: train, import, serve, predict, export the prediction log."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tabserve.service.auth.command import HELP as KEYS_HELP
from tabserve.service.auth.command import add_keys_arguments, run_keys
from tabserve.service.auth.errors import KeysFileError
from tabserve.service.auth.keys_file import read_keys
from tabserve.service.batch.command import HELP as SCORE_HELP
from tabserve.service.batch.command import add_score_arguments
from tabserve.service.multiproc import ENV, prepare_metrics_folder, remove_metrics_folder
from tabserve.service.port import PortUnavailableError, ensure_can_listen


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-command per task."""
    from tabserve.training.cli import add_train_arguments, run_train
    from tabserve.training.import_cli import add_import_arguments, run_import

    parser = argparse.ArgumentParser(prog="tabserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and export a versioned artifact")
    add_train_arguments(train)
    train.set_defaults(handler=run_train)

    imported = commands.add_parser(
        "import", help="make a model file or MLflow model made elsewhere a served version"
    )
    add_import_arguments(imported)
    imported.set_defaults(handler=run_import)

    score = commands.add_parser("score", help=SCORE_HELP)
    add_score_arguments(score)
    score.set_defaults(handler=run_score)

    serve = commands.add_parser("serve", help="serve every model under the models directory")
    serve.add_argument("--models-dir", type=Path, help="default: models (TABSERVE_MODELS_DIR)")
    serve.add_argument("--host", help="default: 127.0.0.1 (TABSERVE_HOST)")
    serve.add_argument("--port", type=int, help="default: 8000 (TABSERVE_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["plain", "json"])
    serve.set_defaults(handler=run_serve)

    predict = commands.add_parser("predict", help="send rows from a CSV or JSON file")
    predict.add_argument(
        "file",
        type=Path,
        help="CSV with a header of feature names, or JSON; with --stream also JSON lines "
        "(one message per line), or - for JSON lines on stdin",
    )
    predict.add_argument("--model", required=True, help="the served model's name")
    predict.add_argument(
        "--version", type=int, help="the version to ask (default: the model's default version)"
    )
    predict.add_argument(
        "--url",
        default=_default_url(),
        help="the server's address (default: %(default)s, from TABSERVE_PORT when set)",
    )
    predict.add_argument(
        "--stream",
        action="store_true",
        help="send over one WebSocket, one message per record or line, and print each "
        "answer as it arrives (docs/streaming.md)",
    )
    predict.add_argument(
        "--ignore-extra-columns",
        action="store_true",
        help="without --stream: leave out columns that are not the model's features (its "
        "target column is always left out, with a note)",
    )
    predict.add_argument(
        "--window", type=_positive, default=32, help="with --stream: most unanswered messages"
    )
    predict.add_argument(
        "--api-key-file",
        type=Path,
        help="a file holding an API key, sent as `Authorization: Bearer <key>` "
        "(servers with TABSERVE_AUTH_KEYS_FILE; docs/access-control.md)",
    )
    predict.set_defaults(handler=run_predict)

    log = commands.add_parser("log", help="the prediction log")
    log_commands = log.add_subparsers(dest="log_command", required=True)
    export = log_commands.add_parser(
        "export", help="write one model's logged predictions to CSV or Parquet"
    )
    export.add_argument("model", help="the model's name")
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--with-feedback", action="store_true", help="only rows with truth")
    export.add_argument(
        "--url", help="SQLAlchemy URL of the log (default: TABSERVE_PREDLOG_URL, else data_dir)"
    )
    export.set_defaults(handler=run_log_export)

    sign = commands.add_parser(
        "sign", help="seal exported versions (the manifest's digest), signed with a key if given"
    )
    sign.add_argument("folders", nargs="+", type=Path, metavar="VERSION_FOLDER")
    sign.add_argument(
        "--key",
        type=Path,
        metavar="PEM",
        help="Ed25519 private key (PEM); without it the seal holds the digest only",
    )
    sign.set_defaults(handler=run_sign)

    keys = commands.add_parser("keys", help=KEYS_HELP)
    add_keys_arguments(keys)
    keys.set_defaults(handler=run_keys)

    bench = commands.add_parser("bench", help="benchmark against the seed-style baseline")
    bench.add_argument("--seconds", type=float, default=5.0, help="per load run")
    bench.set_defaults(handler=run_bench)
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """`make bench` from the console script."""
    from bench.run import main as bench_main

    return bench_main(["--seconds", str(args.seconds)])


def run_score(args: argparse.Namespace) -> int:
    """`tabserve score`: models load as `tabserve serve` would load them here."""
    from tabserve.service.batch.command import run_score as score
    from tabserve.service.settings import Settings
    from tabserve.service.state import loading_config

    if args.models_dir is not None:
        os.environ["TABSERVE_MODELS_DIR"] = str(args.models_dir)
    return score(args, loading_config(Settings()))


def run_sign(args: argparse.Namespace) -> int:
    """Seal (and sign) each version folder as it is; refuse files changed since export."""
    from tabserve.artifact.errors import ArtifactError
    from tabserve.artifact.seal import load_private_key, seal_folder

    try:
        key = load_private_key(args.key) if args.key is not None else None
        for folder in args.folders:
            seal = seal_folder(folder, key)
            how = f"signed with key {seal.key_id}" if seal.key_id else "sealed, not signed"
            print(f"{folder}: {how} (manifest sha256 {seal.manifest_sha256[:12]}...)")
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve with the settings from the environment, overridden by the options given."""
    from tabserve.service.settings import Settings

    overrides = {
        "TABSERVE_MODELS_DIR": args.models_dir,
        "TABSERVE_HOST": args.host,
        "TABSERVE_PORT": args.port,
        "TABSERVE_WORKERS": args.workers,
        "TABSERVE_LOG_LEVEL": args.log_level,
        "TABSERVE_LOG_FORMAT": args.log_format,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    settings = Settings()
    try:
        ensure_can_listen(settings.host, settings.port)  # before any model loads
        if settings.auth.keys_file is not None:
            read_keys(settings.auth.keys_file)  # a malformed keys file: no start
    except (PortUnavailableError, KeysFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Several workers need the shared folder; an operator-set folder (even with one
    # worker) must exist and start empty, or stale files from a previous run add up.
    shared = settings.workers > 1 or os.environ.get(ENV)
    created = prepare_metrics_folder() if shared else None
    try:
        from tabserve.service.server import serve  # after the metrics folder is in the environment

        return serve(settings)
    finally:
        remove_metrics_folder(created)


def run_log_export(args: argparse.Namespace) -> int:
    """Export the log; the row count goes to stderr, errors too (exit 1)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from tabserve.service.predlog.export import ExportError, export
    from tabserve.service.predlog.store import PredictionStore
    from tabserve.service.settings import Settings

    url = make_url(args.url or Settings().predlog_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        print(f"error: no prediction log at {url.database}", file=sys.stderr)
        return 1
    store = PredictionStore(url.render_as_string(hide_password=False))
    try:
        rows = export(store, args.model, args.out, args.format, with_feedback=args.with_feedback)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # The driver's first line says it all (refused, unknown host, bad password).
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: cannot read the prediction log at {url!r}: {reason}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    print(f"{rows} rows of {args.model} written to {args.out}", file=sys.stderr)
    return 0


def _default_url() -> str:
    """Where `tabserve serve` listens by default on this machine."""
    return f"http://127.0.0.1:{os.environ.get('TABSERVE_PORT') or 8000}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def run_predict(args: argparse.Namespace) -> int:
    """Print the service's answer for the file's rows, one JSON line per row."""
    from tabserve.service.client import (
        ClientError,
        fit_columns,
        key_headers,
        predict,
        read_records,
    )

    if args.stream:
        return run_stream(args)

    try:
        headers = key_headers(args.api_key_file)
        records, notes = fit_columns(
            args.url,
            args.model,
            args.version,
            read_records(args.file),
            args.ignore_extra_columns,
            headers,
        )
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        answer = predict(args.url, args.model, records, args.version, headers)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"model {answer['model']} version {answer['version']} (request {answer['request_id']})",
        file=sys.stderr,
    )
    for row in answer["predictions"]:
        print(json.dumps(row))
    return 0


def run_stream(args: argparse.Namespace) -> int:
    """Print each stream reply (answer or error) as one JSON line as it arrives."""
    from tabserve.service.client import ClientError, key_headers
    from tabserve.service.stream_client import read_messages, stream, stream_url

    url = stream_url(args.url, args.model, args.version)

    def show(reply: dict[str, object]) -> None:
        print(json.dumps(reply), flush=True)

    try:
        headers = key_headers(args.api_key_file)
        summary = stream(url, read_messages(args.file), args.window, show, headers)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"stream {summary.connection_id}: {summary.sent} messages, {summary.answered} "
        f"answered, {summary.errors} refused",
        file=sys.stderr,
    )
    return 1 if summary.errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tabserve` script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        # One thread per model call: the service scales with worker processes, and an
        # OpenMP thread team per call (HistGradientBoosting under scikit-learn) costs
        # more than a small prediction. OpenMP reads this once, when scikit-learn loads.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
