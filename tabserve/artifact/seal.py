"""The artifact seal: the manifest's own digest and, optionally, an Ed25519 signature.

`model.json` records the model file's size and sha256, so a changed model file is
refused; but nothing recorded the manifest itself, so an edit of it (two feature
names swapped) loaded and served wrong answers. `model.seal.json`, written beside
it at export, holds the sha256 of the manifest's exact bytes. As the manifest holds
the model's digest, checking the seal covers both files:

- **digest only** (every export): an edit of either file by hand, a bad copy or
  corruption is refused. Whoever can rewrite the files can rewrite the seal too, so
  this does not stop a deliberate edit.
- **signed** (`--sign-key` at export, or `tabserve sign`): the seal also holds an
  Ed25519 signature over that digest. With `TABSERVE_ARTIFACT_PUBLIC_KEY` set the
  service loads only artifacts signed by the matching private key, so an edit by
  someone who can write the models directory but does not hold the key is refused.

Artifacts exported before seals existed have none: they load with a warning in the
log, unless a public key is configured (then they are refused like any unsigned one).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.manifest import MANIFEST_FILE, Manifest

SEAL_FILE = "model.seal.json"
# Signatures cover this prefix too, so a tabserve signature means nothing elsewhere.
_CONTEXT = b"tabserve artifact seal v1\nmanifest sha256 "

log = logging.getLogger("tabserve.artifact")


class Seal(BaseModel):
    """What `model.seal.json` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    manifest_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of model.json's exact bytes."
    )
    signature: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9+/]{86}==$",
        description="Base64 Ed25519 signature of the digest; absent when not signed.",
    )
    key_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16}$",
        description="The signing key's id (start of the sha256 of its raw public key).",
    )


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of a public key, shown in seals and errors (no secret in it)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def make_seal(manifest: bytes, signing_key: Ed25519PrivateKey | None = None) -> Seal:
    """The seal of these manifest bytes, signed when a key is given."""
    digest = hashlib.sha256(manifest).hexdigest()
    if signing_key is None:
        return Seal(manifest_sha256=digest)
    signature = signing_key.sign(_CONTEXT + digest.encode("ascii"))
    return Seal(
        manifest_sha256=digest,
        signature=base64.b64encode(signature).decode("ascii"),
        key_id=key_id(signing_key.public_key()),
    )


def write_seal(folder: Path, seal: Seal) -> None:
    """Write (or replace) the seal atomically: a reader sees the old one or the new one."""
    target = folder / SEAL_FILE
    staging = folder / f".{SEAL_FILE}.{uuid.uuid4().hex}"
    try:
        with staging.open("x", encoding="utf-8") as fh:
            fh.write(seal.model_dump_json(indent=2, exclude_none=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        staging.replace(target)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise ArtifactError(f"{target}: cannot write the seal: {exc.strerror or exc}") from exc


def read_seal(folder: Path) -> Seal | None:
    """The seal in `folder`, or None for an artifact exported before seals existed."""
    path = folder / SEAL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the seal: {exc.strerror or exc}") from exc
    try:
        return Seal.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ArtifactError(f"{path}: invalid seal: {problems}") from exc


def check_seal(folder: Path, manifest: bytes, public_key: Ed25519PublicKey | None) -> None:
    """Refuse manifest bytes the seal does not vouch for (and unsigned ones, given a key)."""
    seal = read_seal(folder)
    path = folder / SEAL_FILE
    if seal is None:
        if public_key is not None:
            raise ArtifactError(
                f"{path}: missing, so the artifact is not signed; artifact_public_key is set, "
                "so only artifacts signed with its private key load (tabserve sign)"
            )
        log.warning(
            "%s: no seal (exported before tabserve recorded manifest digests): the manifest "
            "is trusted as it is; run `tabserve sign %s` to seal it",
            path,
            folder,
        )
        return
    actual = hashlib.sha256(manifest).hexdigest()
    if actual != seal.manifest_sha256:
        raise ArtifactError(
            f"{folder / MANIFEST_FILE}: sha256 is {actual}, but {SEAL_FILE} says "
            f"{seal.manifest_sha256}; the manifest was modified after export"
        )
    if public_key is not None:
        _check_signature(path, seal, public_key)


def _check_signature(path: Path, seal: Seal, public_key: Ed25519PublicKey) -> None:
    expected = key_id(public_key)
    if seal.signature is None:
        raise ArtifactError(
            f"{path}: the artifact is not signed; artifact_public_key is set (key {expected}), "
            "so only artifacts signed with its private key load (tabserve sign)"
        )
    try:
        public_key.verify(
            base64.b64decode(seal.signature), _CONTEXT + seal.manifest_sha256.encode("ascii")
        )
    except InvalidSignature as exc:
        if seal.key_id != expected:
            raise ArtifactError(
                f"{path}: signed with key {seal.key_id}, not with the configured key "
                f"{expected}; refusing an artifact signed by someone else"
            ) from exc
        raise ArtifactError(
            f"{path}: the signature does not match the manifest's digest for key {expected}; "
            "the seal was forged or modified"
        ) from exc


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (`openssl pkey -pubout`)."""
    key = _read_pem(path, "public", serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise ArtifactError(f"{path}: expected an Ed25519 public key, got {type(key).__name__}")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file (`openssl genpkey -algorithm ed25519`)."""
    key = _read_pem(path, "private", lambda data: serialization.load_pem_private_key(data, None))
    if not isinstance(key, Ed25519PrivateKey):
        raise ArtifactError(f"{path}: expected an Ed25519 private key, got {type(key).__name__}")
    return key


def _read_pem(path: Path, kind: str, parse: Callable[[bytes], object]) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the {kind} key: {exc.strerror or exc}") from exc
    try:
        return parse(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ArtifactError(
            f"{path}: not a PEM {kind} key cryptography can read ({exc}); expected an "
            f"Ed25519 {kind} key in PEM format"
        ) from exc


def seal_folder(folder: Path, signing_key: Ed25519PrivateKey | None) -> Seal:
    """Seal (and sign, given a key) a version folder's manifest as it is now on disk.

    The manifest must be valid and its model file must match it; a folder that has
    a seal already must still match that too: signing vouches for the artifact as
    exported, so files changed since then are refused, not blessed.
    """
    path = folder / MANIFEST_FILE
    try:
        manifest = path.read_bytes()
        described = Manifest.model_validate_json(manifest).artifact
        model = (folder / described.file).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{exc.filename}: cannot read: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from exc
    if hashlib.sha256(model).hexdigest() != described.sha256:
        raise ArtifactError(
            f"{folder / described.file}: sha256 differs from the manifest's; refusing to "
            "seal a model file that was modified"
        )
    check_seal(folder, manifest, None)
    seal = make_seal(manifest, signing_key)
    write_seal(folder, seal)
    return seal
