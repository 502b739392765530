"""Shared fixtures for the training tests: CLI runners, CSV writers, folder snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# One OpenMP thread for HistGradientBoosting (here and in CLI subprocesses, which inherit
# the environment): the models are tiny, and on a shared 2-core machine spinning worker
# threads only make the suite slower. Set before the first OpenMP region runs.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tabserve.training import cli

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    """Exit status and captured streams of one CLI run."""

    code: int
    stdout: str
    stderr: str


CliRunner = Callable[..., CliResult]


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models directory that does not exist yet (the export creates it).

    Deliberately per test and empty: it takes precedence over any session-wide,
    pre-trained `models_dir` fixture a parent conftest may define for other packages.
    """
    return tmp_path / "models"


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    """`python -m tabserve.training ARGS` in a real subprocess, importing this checkout."""

    def run(*args: str) -> CliResult:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run(
            [sys.executable, "-m", "tabserve.training", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def call_cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """`tabserve.training.cli.main(ARGS)` in this process (fast), with its streams captured."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write `text` to `tmp_path/name` exactly as given and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode())
        return path

    return write


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (relative, sorted) to its bytes; folders map to None."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def tree() -> Callable[[Path], dict[str, bytes | None]]:
    """`tree(folder)`: a snapshot of everything under `folder`, to compare before and after."""
    return snapshot


# A small mixed-type classification table, 24 rows. Columns:
#   age    numeric with 3 missing cells ("", "NA", "?")
#   city   categorical with 2 missing cells ("", "null") and padding spaces
#   income numeric, complete
#   label  the target: "no" / "yes"
PEOPLE_CSV = """age,city,income,label
31,paris,1200.5,yes
45,berlin,1800,no
,rome,1500,yes
22, paris ,900.25,no
38,berlin,2100,yes
NA,rome,1300,no
29,,1000,yes
51,paris,2500,no
33,berlin,1750.75,yes
27,rome,1100,no
?,paris,1400,yes
41,null,1950,no
36,rome,1650,yes
24,berlin,950,no
48,paris,2300,yes
30,rome,1250,no
39,berlin,1850,yes
26,paris,1050,no
44,rome,2050,yes
35,berlin,1600,no
28,paris,1150,yes
50,rome,2400,no
32,berlin,1350,yes
47,paris,2200,no
"""


@pytest.fixture
def people_csv(write_csv: Callable[[str, str], Path]) -> Path:
    """The mixed-type table above as `people.csv`."""
    return write_csv("people.csv", PEOPLE_CSV)
