"""The README's and docs' examples: commands as a fresh clone runs them, snippets that run.

Every `sh`, `bash` and `python` block of README.md and docs/*.md runs, in document
order, in a folder laid out like a clone after `make serve`: `.venv` (this test's
virtualenv), `models/` with the default model (iris, random forest, as `make serve`
trains it), and the input files the examples name (`data.csv`, `rows.csv`,
`rows.jsonl`). One `tabserve serve` process serves that folder, with the prediction
log on, as the loop in the README runs it. The examples say port 8000; the test's
server has a free port, so `localhost:8000` becomes that port and `TABSERVE_PORT`
is set for the CLI. A shell block fails the test when a command fails or a `curl`
gets an error status (a 4xx, for a block that shows errors and is marked
`<!-- answers: 4xx -->`).

A block that cannot run here (docker, a cluster, a second server, a command that
never ends) has `<!-- not-run: why -->` on the line before it, and is reported as
skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train
from tests.conftest import write_mixed_csv
from tests.deploy.support import free_port, stop, wait_for

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The image's own start command: there /opt/venv/bin is on PATH.
IN_THE_IMAGE = frozenset({"tabserve serve --host 0.0.0.0 --port 8000"})
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>\w*)[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
MARKER = re.compile(r"^[ \t]*<!--\s*(?P<kind>not-run|answers):\s*(?P<text>.*?)\s*-->[ \t]*$")
SHELL = ("sh", "bash", "shell")
NEEDS_ELSEWHERE = re.compile(r"^\s*(docker|kubectl|podman|helm)\s", re.MULTILINE)
# Each curl reports its status on stderr, after whatever the example prints.
CURL_STATUS = "curl() { command curl --write-out '%{stderr}curl-status %{http_code}\\n' \"$@\"; }\n"
# What a snippet takes as given, defined before it runs.
GIVEN = {
    "tabserve.export(model": (
        "from sklearn.datasets import load_iris\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "X_train, y_train = load_iris(return_X_y=True, as_frame=True)\n"
        "model = RandomForestClassifier(n_estimators=10, random_state=0)\n"
    ),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block, with the marker on the line before it, if any."""

    path: Path
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None

    @property
    def name(self) -> str:
        """`README.md:192`."""
        return f"{self.path.name}:{self.line}"


def blocks(path: Path, *languages: str) -> list[Block]:
    """The blocks of `path` in these languages, dedented, in order."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group("language") not in languages:
            continue
        before = text[: match.start()].splitlines()
        marker = MARKER.match(before[-1]) if before else None
        indent = len(match.group("indent"))
        code = "".join(line[indent:] for line in match.group("code").splitlines(keepends=True))
        found.append(
            Block(
                path,
                len(before) + 1,
                match.group("language"),
                code,
                (marker.group("kind"), marker.group("text")) if marker else None,
            )
        )
    return found


EXAMPLES = [b for path in DOCUMENTS for b in blocks(path, *SHELL, "python")]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_shell_examples_run_tabserve_from_the_virtualenv(path: Path) -> None:
    """`make serve` installs into .venv, so a bare `tabserve` is not on a new user's PATH."""
    bare = [
        line
        for block in blocks(path, *SHELL, "console")
        for line in block.code.splitlines()
        if re.search(r"(^|[|;&]\s*|^\w+=\S+\s+)tabserve\s", line) and line not in IN_THE_IMAGE
    ]
    assert bare == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_documents_cite_only_files_in_the_repository(path: Path) -> None:
    assert "MEASUREMENTS.md" not in path.read_text()


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_marker_sits_on_a_block_and_says_why(path: Path) -> None:
    """A marker is read only on the line right before a block, and a skip needs a reason."""
    marked = {b.line - 1 for b in blocks(path, *SHELL, "python") if b.marker}
    lines = path.read_text().splitlines()
    placed = {i + 1 for i, line in enumerate(lines) if MARKER.match(line)}
    assert placed == marked
    for block in blocks(path, *SHELL, "python"):
        if block.marker is not None:
            kind, text = block.marker
            assert text if kind == "not-run" else text == "4xx", block.name
        elif NEEDS_ELSEWHERE.search(block.code):
            pytest.fail(f"{block.name} needs docker, a cluster or podman: mark it not-run")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a clone after `make serve`, with the files the examples read."""
    root = tmp_path_factory.mktemp("clone")
    (root / ".venv").symlink_to(Path(sys.prefix))
    train(TrainRequest(load_bundled("iris"), "random_forest", root / "models", "iris"))
    write_mixed_csv(root / "data.csv")
    names = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    (root / "rows.csv").write_text(
        "\n".join([",".join(names), *(",".join(map(str, r)) for r in rows)]) + "\n"
    )
    records = [dict(zip(names, r, strict=True)) for r in rows]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _environment(**extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("TABSERVE_")}
    return {**kept, **extra}


@pytest.fixture(scope="module")
def port(clone: Path) -> Iterator[int]:
    """`tabserve serve` on the clone's models, logging every prediction to its data/."""
    chosen = free_port()
    log = clone / "server.log"
    process = subprocess.Popen(
        [".venv/bin/tabserve", "serve", "--models-dir", "models", "--port", str(chosen)],
        cwd=clone,
        # gRPC off, as the README's not-run markers say: its default port (8081) may be
        # another server's on a shared machine, and no example here needs it.
        env=_environment(
            TABSERVE_PREDLOG_MODE="all", TABSERVE_LOG_LEVEL="warning", TABSERVE_GRPC_PORT="0"
        ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{chosen}/v2/health/ready", process, log)
        yield chosen
    finally:
        stop(process)


def _on_port(code: str, port: int) -> str:
    return code.replace("localhost:8000", f"localhost:{port}").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: b.name)
def test_example_runs_against_a_live_server(
    block: Block, clone: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if block.marker is not None and block.marker[0] == "not-run":
        pytest.skip(f"{block.name}: {block.marker[1]}")
    code = _on_port(block.code, port)
    if block.language == "python":
        monkeypatch.chdir(clone)
        given = next((g for key, g in GIVEN.items() if key in code), "")
        exec(compile(given + code, block.name, "exec"), {"__name__": "__docs__"})
        return
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", CURL_STATUS + code],
        cwd=clone,
        env=_environment(TABSERVE_PORT=str(port)),
        capture_output=True,
        text=True,
        check=False,
    )
    report = f"{block.name}:\n{code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    statuses = [int(s) for s in re.findall(r"^curl-status (\d+)$", done.stderr, re.MULTILINE)]
    assert len(statuses) == len(re.findall(r"(^|[|;&]\s*)curl\s", code, re.MULTILINE)), report
    errors = block.marker == ("answers", "4xx")
    assert all((400 <= s < 500) if errors else (200 <= s < 300) for s in statuses), report
