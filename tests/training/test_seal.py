"""The artifact seal: the manifest's digest catches edits of either file; signatures, forgeries."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.seal import (
    SEAL_FILE,
    Seal,
    key_id,
    load_private_key,
    load_public_key,
    make_seal,
    read_seal,
    write_seal,
)
from tabserve.artifact.store import load_artifact
from tabserve.service import cli as service_cli
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train


def write_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A new Ed25519 key pair as PEM files: (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two key pairs: the operator's ("ours") and someone else's ("theirs")."""
    folder = tmp_path_factory.mktemp("keys")
    return {name: write_keys(folder, name) for name in ("ours", "theirs")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, tuple[Path, Path]]) -> Path:
    """iris v1 sealed (not signed) and v2 signed with our key; never modified."""
    root = tmp_path_factory.mktemp("sealed")
    iris = load_bundled("iris")
    train(TrainRequest(iris, "logistic_regression", root, "iris"))
    signing_key = load_private_key(keys["ours"][0])
    train(TrainRequest(iris, "logistic_regression", root, "iris", signing_key=signing_key))
    return root


@pytest.fixture
def root(store: Path, tmp_path: Path) -> Path:
    """A private copy of the store to tamper with."""
    return Path(shutil.copytree(store, tmp_path / "models"))


def _swap_first_two_features(folder: Path) -> None:
    path = folder / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    first, second = manifest["features"][:2]
    first["name"], second["name"] = second["name"], first["name"]
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _seal(folder: Path) -> Seal:
    seal = read_seal(folder)
    assert seal is not None
    return seal


def _refused(folder: Path, public_key: Path | None = None) -> str:
    with pytest.raises(ArtifactError) as info:
        load_artifact(folder, public_key=public_key)
    return str(info.value)


# the digest -------------------------------------------------------------------------------


def test_an_export_records_the_manifest_digest(root: Path) -> None:
    folder = root / "iris" / "1"
    seal = _seal(folder)
    expected = hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    assert seal.manifest_sha256 == expected
    assert (seal.signature, seal.key_id) == (None, None)


def test_swapping_two_feature_names_in_the_manifest_is_refused(root: Path) -> None:
    folder = root / "iris" / "1"
    recorded = _seal(folder).manifest_sha256
    _swap_first_two_features(folder)
    message = _refused(folder)
    assert message.startswith(f"{folder / 'model.json'}: sha256 is ")
    assert message.endswith(
        f"but {SEAL_FILE} says {recorded}; the manifest was modified after export"
    )


def test_a_model_swapped_with_its_manifest_hash_updated_is_refused(root: Path) -> None:
    """Rewriting the model and the digest the manifest holds for it is an edit of both."""
    folder = root / "iris" / "1"
    other = (root / "iris" / "2" / "model.joblib").read_bytes()
    (folder / "model.joblib").write_bytes(other)
    path = folder / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["artifact"].update(sha256=hashlib.sha256(other).hexdigest(), size_bytes=len(other))
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "the manifest was modified after export" in _refused(folder)


def test_an_artifact_exported_before_seals_loads_and_says_so(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = root / "iris" / "1"
    (folder / SEAL_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="tabserve.artifact"):
        assert load_artifact(folder).manifest.version == 1
    [record] = caplog.records
    assert record.getMessage() == (
        f"{folder / SEAL_FILE}: no seal (exported before tabserve recorded manifest digests): "
        f"the manifest is trusted as it is; run `tabserve sign {folder}` to seal it"
    )


def test_a_malformed_seal_is_refused_naming_the_field(root: Path) -> None:
    folder = root / "iris" / "1"
    (folder / SEAL_FILE).write_text('{"manifest_sha256": "abc"}', encoding="utf-8")
    message = _refused(folder)
    assert message.startswith(f"{folder / SEAL_FILE}: invalid seal: manifest_sha256: ")


# signatures -------------------------------------------------------------------------------


def test_a_signed_artifact_loads_with_its_public_key(
    root: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    folder = root / "iris" / "2"
    public = keys["ours"][1]
    assert load_artifact(folder, public_key=public).manifest.version == 2
    assert _seal(folder).key_id == key_id(load_public_key(public))


def test_a_tampered_signed_artifact_is_refused(
    root: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    folder = root / "iris" / "2"
    _swap_first_two_features(folder)
    # Whoever edits the manifest can recompute the digest, but not the signature.
    signature = _seal(folder).signature
    forged = make_seal((folder / "model.json").read_bytes()).model_copy(
        update={"signature": signature, "key_id": key_id(load_public_key(keys["ours"][1]))}
    )
    write_seal(folder, forged)
    assert load_artifact(folder).manifest.version == 2  # the digest alone matches now
    assert _refused(folder, keys["ours"][1]) == (
        f"{folder / SEAL_FILE}: the signature does not match the manifest's digest for key "
        f"{forged.key_id}; the seal was forged or modified"
    )


def test_an_artifact_signed_with_another_key_is_refused(
    root: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    folder = root / "iris" / "2"
    ours = key_id(load_public_key(keys["ours"][1]))
    theirs = key_id(load_public_key(keys["theirs"][1]))
    assert _refused(folder, keys["theirs"][1]) == (
        f"{folder / SEAL_FILE}: signed with key {ours}, not with the configured key {theirs}; "
        "refusing an artifact signed by someone else"
    )


@pytest.mark.parametrize("seal", ["unsigned", "none"])
def test_an_unsigned_artifact_is_refused_when_a_key_is_configured(
    root: Path, keys: dict[str, tuple[Path, Path]], seal: str
) -> None:
    folder = root / "iris" / "1"
    if seal == "none":
        (folder / SEAL_FILE).unlink()
    message = _refused(folder, keys["ours"][1])
    assert message.startswith(f"{folder / SEAL_FILE}: ")
    assert "only artifacts signed with its private key load (tabserve sign)" in message


def test_a_key_that_is_not_ed25519_pem_is_named(tmp_path: Path, root: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key", encoding="utf-8")
    message = _refused(root / "iris" / "2", bad)
    assert message.startswith(f"{bad}: not a PEM public key cryptography can read")


# tabserve sign and --sign-key -------------------------------------------------------------


def test_tabserve_sign_seals_and_signs_an_old_artifact(
    root: Path, keys: dict[str, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = root / "iris" / "1"
    (folder / SEAL_FILE).unlink()
    assert service_cli.main(["sign", str(folder), "--key", str(keys["ours"][0])]) == 0
    ours = key_id(load_public_key(keys["ours"][1]))
    assert capsys.readouterr().out.startswith(f"{folder}: signed with key {ours} (manifest ")
    assert load_artifact(folder, public_key=keys["ours"][1]).manifest.version == 1


def test_tabserve_sign_refuses_a_manifest_edited_since_export(
    root: Path, keys: dict[str, tuple[Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = root / "iris" / "1"
    _swap_first_two_features(folder)
    before = (folder / SEAL_FILE).read_bytes()
    assert service_cli.main(["sign", str(folder), "--key", str(keys["ours"][0])]) == 1
    assert "the manifest was modified after export" in capsys.readouterr().err
    assert (folder / SEAL_FILE).read_bytes() == before


def test_tabserve_sign_refuses_a_model_file_that_does_not_match(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = root / "iris" / "1"
    (folder / SEAL_FILE).unlink()
    (folder / "model.joblib").write_bytes(b"not the model")
    assert service_cli.main(["sign", str(folder)]) == 1
    assert "refusing to seal a model file that was modified" in capsys.readouterr().err
    assert not (folder / SEAL_FILE).exists()


def test_the_train_cli_signs_with_an_openssl_key(tmp_path: Path, models_dir: Path) -> None:
    """The README's key commands (openssl) make keys the CLI and the loader accept."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    args = ["train", "--dataset", "iris", "--model", "logistic_regression", "--quiet"]
    args += ["--models-dir", str(models_dir), "--sign-key", str(private)]
    assert service_cli.main(args) == 0
    assert load_artifact(models_dir / "iris" / "1", public_key=public).manifest.version == 1
