"""The keys a process accepts, reread when the keys file changes.

A presented key is hashed (SHA-256) and the digest looked up in a dict. The lookup's
timing can only tell an attacker about digests, and learning part of a digest brings
no preimage closer, so this is as safe as a constant-time compare against every key,
at the cost of one hash whatever the number of keys.

Rotation needs no restart: at most once per `check_seconds`, a request stats the
file (inode, size, modification time; a Kubernetes Secret update or `tabserve keys`
replaces the file, so the inode changes) and rereads it if it changed. A reread that
fails keeps the keys in use, logs why and counts it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tabserve.service.auth.errors import ForbiddenError, KeysFileError, UnauthenticatedError
from tabserve.service.auth.keys_file import read_keys
from tabserve.service.auth.metrics import AuthMetrics
from tabserve.service.auth.scopes import Scope

log = logging.getLogger("tabserve.auth")

ADMIN_TOKEN_KEY = "env:TABSERVE_ADMIN_TOKEN"
"""The name TABSERVE_ADMIN_TOKEN goes by as a key (a name no keys file can hold)."""
Stamp = tuple[int, int, int, int] | None


@dataclass(frozen=True, slots=True)
class Key:
    """Who a request is (the key's name, logged; never the key) and what it may do."""

    name: str
    scopes: frozenset[Scope]


class KeyStore:
    """The accepted keys by digest; `authorize` checks a credential against a scope."""

    def __init__(
        self,
        path: Path,
        metrics: AuthMetrics,
        check_seconds: float = 1.0,
        admin_token: str | None = None,
    ) -> None:
        """Read `path` now: a malformed file raises KeysFileError (the server refuses to
        start). `admin_token`, if set, is accepted too, as a key with the admin scope."""
        self.path = path
        self.metrics = metrics
        self.check_seconds = check_seconds
        self._extra: dict[bytes, Key] = {}
        if admin_token is not None:
            token_digest = hashlib.sha256(admin_token.encode()).digest()
            self._extra[token_digest] = Key(ADMIN_TOKEN_KEY, frozenset({Scope.ADMIN}))
        self._stamp = _stamp(path)
        self._keys = self._read()
        self._next_check = time.monotonic() + check_seconds
        metrics.keys.set(len(self._keys))

    def authorize(self, authorization: str | None, needed: Scope, transport: str) -> Key:
        """The key's identity if it holds `needed`; else raise (and count) why not.

        `authorization` is the credential as the transport carries it, `Bearer <key>`
        (the HTTP header, gRPC's `authorization` metadata; None: none given).
        """
        key = self._bearer_key(authorization, transport)
        found = self.keys().get(hashlib.sha256(key.encode()).digest())
        if found is None:
            self._refused(transport, "unknown")
            raise UnauthenticatedError("the API key is not valid (unknown or removed)", "unknown")
        if needed not in found.scopes:
            self._refused(transport, ForbiddenError.reason)
            held = ", ".join(s.value for s in Scope if s in found.scopes)
            raise ForbiddenError(
                f"key {found.name!r} lacks the {needed.value!r} scope this needs "
                f"(it holds: {held})",
                found.name,
            )
        return found

    def _bearer_key(self, authorization: str | None, transport: str) -> str:
        """The key of `Bearer <key>` (the scheme in any case, as RFC 7235 has it)."""
        if authorization is None:
            self._refused(transport, "missing")
            raise UnauthenticatedError("no API key given", "missing")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or " " in key:
            self._refused(transport, "malformed")
            raise UnauthenticatedError("malformed credentials, not `Bearer <key>`", "malformed")
        return key

    def keys(self) -> Mapping[bytes, Key]:
        """The accepted keys, after rereading the file if it changed (checked at most
        once per `check_seconds`)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_seconds
            self.refresh()
        return self._keys

    def refresh(self) -> None:
        """Reread the file if it changed; on failure keep the keys in use."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            keys = self._read()
        except KeysFileError as exc:
            self.metrics.reloads.labels("error").inc()
            self.metrics.failing.set(1)
            log.error("%s; the %d keys read before stay in use", exc, len(self._keys))
            return
        self._keys = keys
        self.metrics.reloads.labels("ok").inc()
        self.metrics.failing.set(0)
        self.metrics.keys.set(len(keys))
        log.info("keys file %s reread: %d keys", self.path, len(keys))

    def _read(self) -> dict[bytes, Key]:
        keys = {bytes.fromhex(e.sha256): Key(e.name, e.scopes) for e in read_keys(self.path)}
        return {**keys, **self._extra}

    def _refused(self, transport: str, reason: str) -> None:
        self.metrics.refusals.labels(transport, reason).inc()


def _stamp(path: Path) -> Stamp:
    """What tells a changed file apart: device, inode, size, modification time (None: gone)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
