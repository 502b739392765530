"""The README's and docs' examples: commands as a fresh clone runs them, snippets that run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The image's own start command: there /opt/venv/bin is on PATH.
IN_THE_IMAGE = frozenset({"tabserve serve --host 0.0.0.0 --port 8000"})
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(path: Path, *languages: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text()) if m.group(1) in languages]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_shell_examples_run_tabserve_from_the_virtualenv(path: Path) -> None:
    """`make serve` installs into .venv, so a bare `tabserve` is not on a new user's PATH."""
    bare = [
        line
        for block in _blocks(path, "sh", "bash", "shell", "console")
        for line in block.splitlines()
        if re.search(r"(^|[|;&]\s*)tabserve\s", line) and line not in IN_THE_IMAGE
    ]
    assert bare == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_documents_cite_only_files_in_the_repository(path: Path) -> None:
    assert "MEASUREMENTS.md" not in path.read_text()


def test_the_prediction_store_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [snippet] = [
        b for b in _blocks(REPO / "docs" / "prediction-log.md", "python") if "labelled(" in b
    ]
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(snippet, "docs/prediction-log.md", "exec"), scope)
    assert scope["X"] == []  # an empty log, read without error
    assert scope["y"] == []
