"""`tabserve keys add | list | remove`: manage the keys file (docs/access-control.md).

`add` prints the new key once, alone on stdout (so `KEY=$(tabserve keys add ...)`
works) and writes only its hash. Every change replaces the file atomically; a server
reading it picks the change up within `TABSERVE_AUTH_CHECK_SECONDS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tabserve.service.auth.errors import KeysFileError
from tabserve.service.auth.keys_file import (
    KeyEntry,
    entry_for,
    new_key,
    parse_scopes,
    read_keys,
    write_keys,
)
from tabserve.service.auth.scopes import SCOPE_NAMES, Scope

HELP = "create, list and remove API keys in the keys file (TABSERVE_AUTH_KEYS_FILE)"
_ENV = "TABSERVE_AUTH_KEYS_FILE"


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    """The `keys` sub-commands, each with `--file` (default: TABSERVE_AUTH_KEYS_FILE)."""
    commands = parser.add_subparsers(dest="keys_command", required=True)
    add = commands.add_parser("add", help="make a new key; prints it once, stores its hash")
    add.add_argument("name", help="who the key is for (logged with each request)")
    add.add_argument(
        "--scopes", type=_scopes, required=True, help=f"comma-separated: {SCOPE_NAMES}"
    )
    listed = commands.add_parser("list", help="names, scopes and creation times (never keys)")
    remove = commands.add_parser("remove", help="revoke a key by name")
    remove.add_argument("name")
    default = os.environ.get(_ENV)
    for sub in (add, listed, remove):
        sub.add_argument(
            "--file",
            type=Path,
            default=Path(default) if default else None,
            required=not default,
            help=f"the keys file (default: {_ENV}{f', {default}' if default else ''})",
        )


def run_keys(args: argparse.Namespace) -> int:
    """Run one `keys` sub-command; errors go to stderr with exit status 1."""
    try:
        if args.keys_command == "add":
            return _add(args.file, args.name, args.scopes)
        if args.keys_command == "remove":
            return _remove(args.file, args.name)
        return _list(args.file)
    except KeysFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _add(path: Path, name: str, scopes: frozenset[Scope]) -> int:
    entries = read_keys(path) if path.exists() else []
    if any(e.name == name for e in entries):
        print(f"error: {path} already has a key named {name!r}", file=sys.stderr)
        return 1
    try:
        key = new_key()
        entry = entry_for(name, key, scopes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_keys(path, [*entries, entry])
    print(key)
    print(
        f"key {name!r} ({', '.join(entry.to_json()['scopes'])}) added to {path}; "
        "it is shown only this once",
        file=sys.stderr,
    )
    return 0


def _remove(path: Path, name: str) -> int:
    entries = read_keys(path)
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        print(f"error: {path} has no key named {name!r}", file=sys.stderr)
        return 1
    write_keys(path, kept)
    print(f"key {name!r} removed from {path}", file=sys.stderr)
    return 0


def _list(path: Path) -> int:
    for entry in read_keys(path):
        print(_line(entry))
    return 0


def _line(entry: KeyEntry) -> str:
    scopes = ",".join(entry.to_json()["scopes"])
    return f"{entry.name}\t{scopes}\t{entry.created or '-'}\tsha256:{entry.sha256[:12]}"


def _scopes(text: str) -> frozenset[Scope]:
    try:
        return parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
