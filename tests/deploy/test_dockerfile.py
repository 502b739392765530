"""The Dockerfile, checked without an engine: what it runs, as whom, and what it copies.

hadolint runs in `make lint`. Here: the start command is the README's and the CLI
accepts it, the health check really probes liveness, the runtime stage is unprivileged,
and `.dockerignore` lets through exactly what the Dockerfile copies.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tabserve.service.cli import build_parser
from tabserve.service.grpc.settings import GrpcSettings
from tests.deploy.image import BUILD, CONTAINERS_CONF, RUN, base_commands, wheelhouse_command
from tests.deploy.support import DEPLOY, REPO, Served, free_port

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction in its build stage."""

    stage: str
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    stage = ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        instructions.append(Instruction(stage, keyword, args.strip()))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def only(keyword: str, stage: str = "runtime") -> Instruction:
    """The single `keyword` instruction of `stage`."""
    found = [i for i in INSTRUCTIONS if i.keyword == keyword and i.stage == stage]
    assert len(found) == 1, f"expected one {keyword} in stage {stage}, found {found}"
    return found[0]


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction (shell form fails the test)."""
    args = instruction.args
    if instruction.keyword == "HEALTHCHECK":
        args = args.split(" CMD ", 1)[1]
    value = json.loads(args)
    assert isinstance(value, list), f"{instruction.keyword} is not in exec form: {args}"
    return [str(v) for v in value]


def start_command() -> list[str]:
    """What `docker run IMAGE` executes."""
    return exec_form(only("ENTRYPOINT")) + exec_form(only("CMD"))


def readme_operate_section() -> str:
    text = (REPO / "README.md").read_text()
    assert "\n## Operate it\n" in text
    return text.split("\n## Operate it\n", 1)[1].split("\n## ", 1)[0]


def test_parser_joins_continuations_and_tracks_stages() -> None:
    parsed = parse_dockerfile(
        '# comment\nFROM base AS one\nRUN a \\\n    && b\n\nFROM one AS two\nCMD ["x"]\n'
    )
    assert parsed == [
        Instruction("one", "FROM", "base AS one"),
        Instruction("one", "RUN", "a && b"),
        Instruction("two", "FROM", "one AS two"),
        Instruction("two", "CMD", '["x"]'),
    ]


def test_image_starts_the_server_with_the_command_the_readme_documents() -> None:
    command = start_command()
    assert command == ["tabserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
    documented = re.findall(
        r"^\s*(tabserve serve [^\n#]*?)\s*(?:#.*)?$", readme_operate_section(), re.M
    )
    assert shlex.join(command) in documented


def test_the_cli_accepts_the_image_command_and_the_script_exists() -> None:
    command = start_command()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command[0]] == "tabserve.service.cli:main"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    grpc_port = GrpcSettings.model_fields["port"].default  # the gRPC server's, when on
    assert only("EXPOSE").args == f"{args.port} {grpc_port}"


def test_both_stages_use_one_pinned_slim_base() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert base is not None
    assert base.group(1) == "python:3.11-slim-bookworm"
    froms = [i.args for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_runtime_stage_runs_unprivileged_with_only_the_venv_and_models() -> None:
    assert only("USER").args == "10001:10001"
    copies = [i.args for i in INSTRUCTIONS if i.keyword == "COPY" and i.stage == "runtime"]
    assert copies == ["--from=builder /opt/venv /opt/venv", "--from=builder /models /models"]
    env = " ".join(i.args for i in INSTRUCTIONS if i.keyword == "ENV" and i.stage == "runtime")
    assert "TABSERVE_MODELS_DIR=/models" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # the root filesystem is read-only in Kubernetes


def test_default_baked_model_is_the_makefiles_default_model() -> None:
    build = " ".join(i.args for i in INSTRUCTIONS if i.keyword == "RUN" and i.stage == "builder")
    trained = re.search(r"tabserve (train [^;]+);", build)
    assert trained is not None
    args = build_parser().parse_args(shlex.split(trained.group(1)))
    assert (args.dataset, args.model, args.name, str(args.models_dir)) == (
        "iris",
        "random_forest",
        "iris",
        "/models",
    )
    makefile = (REPO / "Makefile").read_text()
    assert "train --dataset iris --model random_forest --name $(DEFAULT_MODEL)" in makefile
    assert re.search(r"^DEFAULT_MODEL \?= iris$", makefile, re.M)


def test_dependency_layer_installs_pyprojects_dependencies_and_all_extras(tmp_path: Path) -> None:
    """The builder's one-liner that turns pyproject.toml into requirements, run for real."""
    run = next(i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "tomllib" in i.args)
    command = shlex.split(run.split(">", 1)[0])
    assert command[:2] == ["python", "-c"]
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    printed = subprocess.run(
        [sys.executable, "-c", command[2]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # The image serves every model family: the optional boosting libraries come too.
    expected = project["dependencies"] + project["optional-dependencies"]["all"]
    assert printed == [d.replace(" ", "") for d in expected]
    assert printed


def pip_installs(wheels: str) -> list[list[str]]:
    """The builder's `pip install` commands as sh expands them with build argument WHEELS."""
    runs = [i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "pip install" in i.args]
    expanded = []
    for run in runs:
        install = "pip install" + run.split("pip install", 1)[1].split("&&", 1)[0]
        echoed = subprocess.run(
            ["sh", "-c", f"echo {install}"], env={"WHEELS": wheels}, capture_output=True, text=True
        )
        expanded.append(echoed.stdout.split())
    return expanded


def test_pip_installs_from_the_index_unless_given_a_wheel_folder() -> None:
    args = [i.args for i in INSTRUCTIONS if i.keyword == "ARG" and i.stage == "builder"]
    assert 'WHEELS=""' in args
    copies = [i.args for i in INSTRUCTIONS if i.keyword == "COPY" and "WHEELS" in i.args]
    assert copies == ["${WHEELS:-pyproject.toml} /wheels/"]
    from_index = pip_installs("")
    offline = pip_installs("build/wheels")
    assert len(from_index) == len(offline) == 2  # dependencies, then tabserve itself
    for default, given in zip(from_index, offline, strict=True):
        assert "--no-index" not in default
        assert "--find-links" not in default
        assert given == [*default[:3], "--no-index", "--find-links", "/wheels", *default[3:]]


def healthcheck_code(port: int) -> list[str]:
    command = exec_form(only("HEALTHCHECK"))
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "http://127.0.0.1:8000/v2/health/live" in code
    return [sys.executable, "-c", code.replace(":8000/", f":{port}/")]


def test_healthcheck_passes_on_a_live_server(served: Served) -> None:
    result = subprocess.run(healthcheck_code(served.port), capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_when_nothing_answers() -> None:
    result = subprocess.run(healthcheck_code(free_port()), capture_output=True, timeout=10)
    assert result.returncode != 0
    assert b"Connection refused" in result.stderr


def dockerignore_admits(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            admitted = negated
    return admitted


@pytest.mark.parametrize(
    ("path", "admitted"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("service/app.py", True),
        ("service/core/metrics.py", True),
        ("training/pipeline.py", True),
        ("tabserve/__init__.py", True),
        ("models/README.md", True),
        ("models/iris/3/model.json", True),
        ("models/iris/.3.partial/model.json", False),
        ("service/__pycache__/app.cpython-311.pyc", False),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("tests/conftest.py", False),
        ("build/test-artifacts/docs.png", False),
        ("build/wheels/numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", True),
        ("build/image-report.txt", False),
        ("deploy/kubernetes/base/deployment.yaml", False),
        ("Dockerfile", False),
    ],
)
def test_dockerignore_sends_only_what_the_build_copies(path: str, admitted: bool) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignore_admits(patterns, path) is admitted


def test_every_path_the_build_copies_from_the_context_exists() -> None:
    sources = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            *paths, _target = instruction.args.split()
            sources += [re.sub(r"\$\{\w+:-([^}]+)\}", r"\1", p) for p in paths]
    assert sources == [
        "pyproject.toml",  # WHEELS left empty: a harmless stand-in for the wheel folder
        "pyproject.toml",
        "README.md",
        "service",
        "training",
        "tabserve",
        "models/README.md",
    ]
    for source in sources:
        assert (REPO / source).exists(), source


def _bake(tmp_path: Path, models: str, given: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The builder's model step, run by sh with its paths moved under `tmp_path` and a stub
    `tabserve` that records its arguments and writes what a trained version looks like."""
    script = next(
        i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "/src/models-given" in i.args
    )
    script = script.replace("/src/models-given", "@GIVEN@").replace("/models", "@MODELS@")
    script = script.replace("@GIVEN@", str(tmp_path / "given"))
    script = script.replace("@MODELS@", str(tmp_path / "models"))
    for relative, content in given.items():
        (tmp_path / "given" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "given" / relative).write_text(content)
    stub = tmp_path / "bin" / "tabserve"
    stub.parent.mkdir()
    stub.write_text(
        '#!/bin/sh\necho "$@" > "$STUB_ARGS"\n'
        'while [ "$1" != "--models-dir" ]; do shift; done\n'
        'mkdir -p "$2/iris/1" && echo "{}" > "$2/iris/1/model.json"\n'
    )
    stub.chmod(0o755)
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "MODELS": models}
    env["STUB_ARGS"] = str(tmp_path / "args")
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_baking_without_models_trains_the_default(tmp_path: Path) -> None:
    result = _bake(tmp_path, "", {"README.md": "models live here"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == [
        *[
            "train",
            "--dataset",
            "iris",
            "--model",
            "random_forest",
            "--name",
            "iris",
            "--models-dir",
        ],
        str(tmp_path / "models"),
    ]
    assert _files(tmp_path / "models") == ["iris/1/model.json"]


def test_baking_a_models_folder_copies_its_versions_without_training(tmp_path: Path) -> None:
    given = {"README.md": "x", "iris/3/model.json": "{}", "iris/3/model.joblib": "b"}
    result = _bake(tmp_path, "models", given)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "args").exists()
    assert _files(tmp_path / "models") == ["iris/3/model.joblib", "iris/3/model.json"]


@pytest.mark.parametrize(
    ("models", "given"),
    [
        ("models", {"README.md": "no models were trained"}),
        ("models/iris", {"3/model.json": "{}"}),  # one level too deep: no <name>/ folder
    ],
)
def test_baking_refuses_a_folder_without_name_version_artifacts(
    tmp_path: Path, models: str, given: dict[str, str]
) -> None:
    result = _bake(tmp_path, models, given)
    assert result.returncode == 1
    assert f"MODELS={models} holds no <name>/<version>/model.json" in result.stderr
    assert not (tmp_path / "models").exists()


def readme_image_commands() -> list[list[str]]:
    """The commands of the README's podman block, continuation lines joined."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```sh\nexport CONTAINERS_CONF=", 1)[1].split("```", 1)[0]
    lines = re.sub(r"\\\n", " ", "export CONTAINERS_CONF=" + block).splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_the_readme_documents_the_commands_the_tests_run() -> None:
    commands = readme_image_commands()
    assert commands[0] == ["export", f"CONTAINERS_CONF={CONTAINERS_CONF.relative_to(REPO)}"]
    for command in [*base_commands(Path("base.tar")), BUILD, RUN]:
        assert command in commands
    assert wheelhouse_command(".venv/bin/python") in commands
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "base" / "configmap.yaml").read_text())
    for env in [RUN[i + 1] for i, arg in enumerate(RUN) if arg == "-e"]:
        name, value = env.split("=", 1)
        assert configmap["data"][name] == value  # the run mirrors the Deployment's settings
    assert "/tmp:rw,size=64m,mode=1777" in RUN  # the Deployment's emptyDir: Memory, 64Mi
