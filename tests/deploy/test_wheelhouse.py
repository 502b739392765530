"""deploy/podman/wheelhouse.py: what it derives from pyproject.toml and the Dockerfile."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from deploy.podman.wheelhouse import (
    dependency_layer_requirements,
    image_requirements,
    installed_extras,
    platform_tags,
)
from tests.deploy.support import REPO


def test_the_image_requirements_are_the_backend_and_the_dependency_layer() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    layer = dependency_layer_requirements(dockerfile, REPO)
    expected = pyproject["build-system"]["requires"] + layer
    for extra in installed_extras(dockerfile):
        expected += pyproject["project"]["optional-dependencies"][extra]
    found = image_requirements(REPO)
    assert found == sorted(set(expected), key=expected.index)
    # every dependency is among them, whatever extras the image adds
    assert set(pyproject["project"]["dependencies"]) <= set(found)
    # tabserve itself is built with --no-index: its build backend must be among them
    assert any(requirement.startswith("setuptools>=") for requirement in found)


def project_with(tmp_path: Path, install: str) -> Path:
    """A copy of the repository's pyproject.toml and Dockerfile, with one more install."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    text = (REPO / "Dockerfile").read_text()
    (tmp_path / "Dockerfile").write_text(f"{text}\n# pip install '.[ignored]'\nRUN {install}\n")
    return tmp_path


def test_extras_the_dockerfile_installs_are_downloaded_too(tmp_path: Path) -> None:
    repo = project_with(tmp_path, "pip install --no-cache-dir '.[dev]'")
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found = image_requirements(repo)
    assert found[: len(image_requirements(REPO))] == image_requirements(REPO)
    assert set(dev["dev"]) <= set(found)


def test_an_extra_pyproject_lacks_is_refused(tmp_path: Path) -> None:
    repo = project_with(tmp_path, "pip install 'tabserve[nope]'")
    with pytest.raises(ValueError, match="the Dockerfile installs extra 'nope', which"):
        image_requirements(repo)


def test_manylinux_platforms_run_by_a_glibc_are_all_accepted() -> None:
    tags = platform_tags("2.36", "x86_64")
    assert tags[:2] == ["manylinux_2_36_x86_64", "manylinux_2_35_x86_64"]
    assert tags[-4:] == [
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]
    assert len(tags) == 36 - 17 + 1 + 3
