"""The keys file: one JSON document listing each key's name, SHA-256 and scopes.

```json
{"keys": [{"name": "ci", "sha256": "9f86d0...", "scopes": ["predict", "read"],
           "created": "2026-12-07T22:51:05Z"}]}
```

Keys are never stored: only the SHA-256 of each. A key is 256 random bits
(`new_key`), so an unsalted fast hash is enough: nobody can search a space that
large, and a slow hash would cost every request. Reading checks every entry and
names the file and the entry at fault; writing replaces the file atomically, so a
server rereading it sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tabserve.service.auth.errors import KeysFileError
from tabserve.service.auth.scopes import SCOPE_NAMES, Scope

KEY_PREFIX = "tsk_"
"""Generated keys start with this, so secret scanners and people can recognise them."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset({"name", "sha256", "scopes", "created"})


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key as the file lists it: never the key itself."""

    name: str
    sha256: str
    scopes: frozenset[Scope]
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as the file writes it (scopes in their documented order)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "sha256": self.sha256,
            "scopes": [s.value for s in Scope if s in self.scopes],
        }
        if self.created is not None:
            entry["created"] = self.created
        return entry


def new_key() -> str:
    """A fresh key: the prefix and 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The SHA-256 of a key, as the file stores it (lower-case hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


def entry_for(name: str, key: str, scopes: frozenset[Scope]) -> KeyEntry:
    """The file's entry for a new key, stamped with the time it was made."""
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return KeyEntry(_checked_name(name, "name"), digest(key), scopes, created)


def parse_scopes(text: str) -> frozenset[Scope]:
    """`predict,read` -> the scopes; an unknown one raises ValueError naming it."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"expected one or more of {SCOPE_NAMES}, comma-separated; got {text!r}")
    return frozenset(_scope(n, "scopes") for n in names)


def read_keys(path: Path) -> list[KeyEntry]:
    """Every entry of the file at `path`; KeysFileError names the file and the bad entry."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise KeysFileError(f"keys file {path}: no such file") from exc
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise KeysFileError(f"keys file {path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysFileError(f'keys file {path}: expected an object {{"keys": [...]}}')
    entries: list[KeyEntry] = []
    for index, raw in enumerate(document["keys"]):
        try:
            entries.append(_entry(raw))
        except ValueError as exc:
            name = raw.get("name") if isinstance(raw, dict) else None
            which = f"entry {index}" + (f" ({name!r})" if isinstance(name, str) else "")
            raise KeysFileError(f"keys file {path}, {which}: {exc}") from exc
    _refuse_duplicates(path, entries)
    return entries


def write_keys(path: Path, entries: list[KeyEntry]) -> None:
    """Replace the file with `entries`, atomically (a new file renamed over the old)."""
    text = json.dumps({"keys": [e.to_json() for e in entries]}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _entry(raw: Any) -> KeyEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object with name, sha256 and scopes, got {raw!r}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; expected only {sorted(_FIELDS)}")
    for field in ("name", "sha256", "scopes"):
        if field not in raw:
            raise ValueError(f"{field} is missing")
    sha = raw["sha256"]
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise ValueError(
            "sha256: expected 64 lower-case hex digits (the hash of the key, never the key)"
        )
    scopes = raw["scopes"]
    if not isinstance(scopes, list) or not scopes:
        raise ValueError(f"scopes: expected a non-empty list of {SCOPE_NAMES}, got {scopes!r}")
    created = raw.get("created")
    if created is not None and not isinstance(created, str):
        raise ValueError(f"created: expected a string (a UTC time), got {created!r}")
    return KeyEntry(
        _checked_name(raw["name"], "name"),
        sha,
        frozenset(_scope(s, "scopes") for s in scopes),
        created,
    )


def _checked_name(name: Any, field: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{field}: expected 1 to 64 letters, digits, '.', '_' or '-' (starting with a "
            f"letter or digit), got {name!r}"
        )
    return name


def _scope(name: Any, field: str) -> Scope:
    try:
        return Scope(name)
    except ValueError:
        raise ValueError(f"{field}: expected one of {SCOPE_NAMES}, got {name!r}") from None


def _refuse_duplicates(path: Path, entries: list[KeyEntry]) -> None:
    names: set[str] = set()
    hashes: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if entry.name in names:
            raise KeysFileError(f"keys file {path}, entry {index}: name {entry.name!r} repeats")
        if entry.sha256 in hashes:
            raise KeysFileError(
                f"keys file {path}, entry {index} ({entry.name!r}): the same key as "
                f"{hashes[entry.sha256]!r} (sha256 repeats)"
            )
        names.add(entry.name)
        hashes[entry.sha256] = entry.name
