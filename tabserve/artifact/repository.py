"""The models directory layout: `<models_dir>/<name>/<version>/`.

Versions are positive integers. Folders whose names start with a dot are exports
in progress (or left by a crash) and are never listed, so a reader watching the
directory only ever sees complete versions.
"""

from __future__ import annotations

import re
from pathlib import Path

_VERSION = re.compile(r"[0-9]{1,18}")
"""A version folder's name: ASCII digits, bounded. `str.isdigit()` also takes "²" (on
which `int()` raises, failing the whole listing) and fullwidth digits (read as numbers)."""


def version_path(models_dir: Path, name: str, version: int) -> Path:
    """The folder of one model version."""
    return models_dir / name / str(version)


def list_versions(models_dir: Path, name: str) -> list[int]:
    """Complete versions of model `name`, ascending."""
    folder = models_dir / name
    if not folder.is_dir():
        return []
    versions = [
        int(child.name)
        for child in folder.iterdir()
        if child.is_dir() and _VERSION.fullmatch(child.name) and int(child.name) > 0
    ]
    return sorted(versions)


def list_models(models_dir: Path) -> dict[str, list[int]]:
    """Every model name under `models_dir` with its complete versions, by name."""
    if not models_dir.is_dir():
        return {}
    found = {}
    for child in sorted(models_dir.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            versions = list_versions(models_dir, child.name)
            if versions:
                found[child.name] = versions
    return found


def next_version(models_dir: Path, name: str) -> int:
    """The version a new export of `name` gets when none is given."""
    versions = list_versions(models_dir, name)
    return versions[-1] + 1 if versions else 1
