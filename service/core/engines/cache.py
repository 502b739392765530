"""The compiled form of an artifact, kept beside it: `<version>/compiled/`.

`model.onnx` is the converted graph; `compiled.json` records its sha256, the sha256
of the artifact it was converted from and the library versions that made it. Both
are written atomically (temporary file, fsync, rename; the record last), so a
reader sees a complete pair or none. A later load reuses the graph only if every
one of those checks holds; otherwise it converts again and replaces the pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CACHE_DIR = "compiled"
GRAPH_FILE = "model.onnx"
RECORD_FILE = "compiled.json"


class CacheRecord(BaseModel):
    """What `compiled.json` says about the graph beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    engine: Literal["onnx"] = "onnx"
    file: Literal["model.onnx"] = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the graph file.")
    size_bytes: int = Field(ge=0)
    source_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the artifact it was converted from."
    )
    estimator: str = Field(description="Class of the converted final estimator.")
    libraries: dict[str, str] = Field(description="Library versions that made the graph.")
    created_at: datetime


@dataclass(frozen=True)
class CacheLookup:
    """A reusable graph, or why there is none."""

    graph: bytes | None
    reason: str


class CompiledCache:
    """The `compiled/` folder of one artifact version."""

    def __init__(self, version_folder: Path) -> None:
        self.folder = version_folder / CACHE_DIR

    def read(self, source_sha256: str, libraries: dict[str, str]) -> CacheLookup:
        """The cached graph if it is intact, made from this artifact by these libraries."""
        try:
            record = CacheRecord.model_validate_json((self.folder / RECORD_FILE).read_bytes())
        except FileNotFoundError:
            return CacheLookup(None, "no compiled cache yet")
        except (OSError, ValidationError) as exc:
            return CacheLookup(None, f"unreadable {RECORD_FILE} ({_short(exc)})")
        try:
            graph = (self.folder / record.file).read_bytes()
        except OSError as exc:
            return CacheLookup(None, f"{record.file} unreadable ({exc.strerror or exc})")
        if hashlib.sha256(graph).hexdigest() != record.sha256:
            return CacheLookup(None, f"{record.file} does not match the sha256 in {RECORD_FILE}")
        if record.source_sha256 != source_sha256:
            return CacheLookup(None, "compiled cache was made from another artifact")
        if record.libraries != libraries:
            changed = sorted(k for k in libraries if record.libraries.get(k) != libraries[k])
            return CacheLookup(None, f"compiled cache was made by other {', '.join(changed)}")
        return CacheLookup(graph, "reused")

    def write(
        self, graph: bytes, *, source_sha256: str, estimator: str, libraries: dict[str, str]
    ) -> None:
        """Store `graph` and its record atomically; raises OSError if the folder is read-only."""
        record = CacheRecord(
            sha256=hashlib.sha256(graph).hexdigest(),
            size_bytes=len(graph),
            source_sha256=source_sha256,
            estimator=estimator,
            libraries=libraries,
            created_at=datetime.now(UTC),
        )
        self.folder.mkdir(exist_ok=True)
        # The graph first, the record last: a crash in between leaves a record that
        # names another graph's sha256, which the next load detects and replaces.
        _write_atomic(self.folder / GRAPH_FILE, graph)
        _write_atomic(self.folder / RECORD_FILE, (record.model_dump_json(indent=2) + "\n").encode())


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
