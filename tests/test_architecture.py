"""The layering docs/architecture.md describes, checked by reading every import.

Every module under `service/`, `training/` and `tabserve/artifact/` is parsed (no
import runs); imports inside functions and under TYPE_CHECKING count too. Each
rule's docstring is its line in docs/architecture.md. A rule marked
`expected_to_hold` does not hold yet: it is an `xfail(strict=True)`, so the day
it holds the test fails until the mark is removed (the lead switches it on).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCES = {
    "tabserve.service": ROOT / "service",
    "tabserve.training": ROOT / "training",
    "tabserve.artifact": ROOT / "tabserve" / "artifact",
}
WEB = ("fastapi", "starlette", "uvicorn")
COMMAND_LINE = {"service.cli", "service.client"}
COMPOSITION = {"service.app", "service.components", "service.server", "service.cli"}
WEB_ALLOWED = {
    "service.api",
    "service.http_protocol",
    "service.http_guard",
    "service.http_listener",
} | COMPOSITION


@dataclass(frozen=True)
class Import:
    """One import statement's target, in the module (and at the line) that has it."""

    module: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(package: str, base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def all_imports() -> list[Import]:
    """Every absolute import in the three source trees (relative ones are refused)."""
    found = []
    for package, base in SOURCES.items():
        for path in sorted(base.rglob("*.py")):
            module = _module_name(package, base, path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found += [Import(module, alias.name, node.lineno) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    assert node.level == 0, f"{module}:{node.lineno}: relative import"
                    assert node.module is not None
                    found.append(Import(module, node.module, node.lineno))
    return found


IMPORTS = all_imports()


def node(module: str) -> str:
    """The package a module counts in: `service.api`, `service.settings` (a root
    module of service counts on its own), `training`, `artifact`; else the module."""
    if not module.startswith("tabserve."):
        return module.split(".")[0]
    parts = module.split(".")[1:]
    if parts[0] == "service":
        return ".".join(parts[:2])
    return parts[0]


def imports_of(package: str) -> Iterator[Import]:
    """Imports made by modules of `package` (a node, or a prefix of nodes)."""
    for found in IMPORTS:
        owner = node(found.module)
        if owner == package or owner.startswith(package + "."):
            yield found


def within(target: str, *packages: str) -> bool:
    """Whether `target` is in one of `packages` (`fastapi`, `tabserve.service.core`, ...)."""
    return any(target == p or target.startswith(p + ".") for p in packages)


def violations(package: str, *forbidden: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        str(i)
        for i in imports_of(package)
        if within(i.target, *forbidden) and not within(i.target, *allowed)
    ]


expected_to_hold = pytest.mark.xfail(
    strict=True, reason="expected to hold once the work named in the rule lands"
)


def test_every_source_tree_was_read() -> None:
    modules = {i.module for i in IMPORTS}
    for package in ("tabserve.service.core", "tabserve.service.api", "tabserve.training"):
        assert any(m.startswith(package + ".") for m in modules), package
    assert "tabserve.artifact.manifest" in modules


def test_artifact_imports_neither_service_nor_training() -> None:
    """Rule 1: `artifact` imports nothing of `service` or `training`."""
    assert violations("artifact", "tabserve.service", "tabserve.training") == []


def test_training_never_imports_the_service() -> None:
    """Rule 2: `training` never imports `service`."""
    assert violations("training", "tabserve.service") == []


def test_core_imports_no_web_framework_and_nothing_of_service_outside_core() -> None:
    """Rule 3: `service.core` imports no web framework and nothing of `service` outside it."""
    found = violations("service.core", *WEB, "tabserve.service", allowed=("tabserve.service.core",))
    assert found == []


def test_core_never_imports_training() -> None:
    """Rule 4: `service.core` never imports `training`."""
    assert violations("service.core", "tabserve.training") == []


def test_protocol_imports_no_web_framework_and_only_core_of_service() -> None:
    """Rule 5: `service.protocol` imports no web framework and nothing of service but core."""
    found = violations(
        "service.protocol",
        *WEB,
        "tabserve.service",
        allowed=("tabserve.service.core", "tabserve.service.protocol"),
    )
    assert found == []


@pytest.mark.parametrize("package", ["service.predlog", "service.sinks"])
def test_predlog_and_sinks_import_no_web_framework_and_not_the_api(package: str) -> None:
    """Rule 6: `service.predlog` and `service.sinks` know neither the web nor `service.api`."""
    assert violations(package, *WEB, "tabserve.service.api") == []


def test_batch_scoring_knows_no_web_and_only_the_command_line_imports_it() -> None:
    """Rule 13: `service.batch` imports no web framework and nothing of `service.api`;
    only `cli` (which lists `tabserve score`) imports it."""
    assert violations("service.batch", *WEB, "tabserve.service.api") == []
    importers = {node(i.module) for i in IMPORTS if within(i.target, "tabserve.service.batch")} - {
        "service.batch"
    }
    assert importers == {"service.cli"}


def test_only_the_web_layer_and_the_composition_root_import_the_web_framework() -> None:
    """Rule 7: only `service.api`, the composition root and the HTTP protocols import them."""
    found = [str(i) for i in IMPORTS if within(i.target, *WEB)]
    assert [f for f in found if node(f.split(":")[0]) not in WEB_ALLOWED] == []


def test_only_the_composition_root_imports_the_app_and_training() -> None:
    """Rule 8: only the composition root imports `app`/`components`; only the command
    line (`cli`, and `client`, which reads CSV files with training's reader) `training`."""
    top = ("tabserve.service.app", "tabserve.service.components")
    assert [
        str(i)
        for i in IMPORTS
        if node(i.module).startswith("service") and node(i.module) not in COMPOSITION
        if within(i.target, *top)
    ] == []
    assert [
        str(i)
        for i in IMPORTS
        if node(i.module).startswith("service") and node(i.module) not in COMMAND_LINE
        if within(i.target, "tabserve.training")
    ] == []


def test_only_the_dependencies_read_app_state() -> None:
    """Rule 9: routes get the app's state through `api/deps.py`; only it and
    `api/app_state.py` read `app.state`."""
    readers = set()
    for path in sorted((ROOT / "service").rglob("*.py")):
        if re.search(r"\bapp\.state\.", path.read_text()):
            readers.add(str(path.relative_to(ROOT)))
    assert readers <= {"service/api/deps.py", "service/api/app_state.py", "service/app.py"}


def test_only_the_composition_root_and_the_state_import_the_settings() -> None:
    """Rule 11: only the composition root and `state.py` import `settings`; the core,
    the web layer and the features take small config objects or their own settings."""
    assert [
        str(i)
        for i in IMPORTS
        if within(i.target, "tabserve.service.settings")
        and node(i.module) not in COMPOSITION | {"service.state"}
    ] == []


def package_graph() -> dict[str, set[str]]:
    """Package -> the packages it imports (tabserve's own only)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for found in IMPORTS:
        if found.target.startswith("tabserve."):
            source, target = node(found.module), node(found.target)
            if source != target:
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(vertex: str) -> None:
        index[vertex] = low[vertex] = len(index)
        stack.append(vertex)
        for successor in sorted(graph.get(vertex, ())):
            if successor not in index:
                visit(successor)
                low[vertex] = min(low[vertex], low[successor])
            elif successor in stack:
                low[vertex] = min(low[vertex], index[successor])
        if low[vertex] == index[vertex]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == vertex:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for vertex in sorted(graph):
        if vertex not in index:
            visit(vertex)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_import_graph_has_no_cycle() -> None:
    """Rule 10: no cycle between packages (each root module of service on its own)."""
    graph = package_graph()
    assert "service.core" in graph["service.api"]
    assert cycles(graph) == []


def test_grpc_imports_no_web_framework_and_only_core_and_protocol_of_service() -> None:
    """Rule 12: `service.grpc` imports no web framework and nothing of `service` but
    `core`, `protocol` and `auth` (and the package's version); nothing imports it but the
    composition root and `settings` (its settings model, as every feature's)."""
    found = [
        v
        for v in violations(
            "service.grpc",
            *WEB,
            "tabserve.service",
            allowed=(
                "tabserve.service.core",
                "tabserve.service.protocol",
                "tabserve.service.grpc",
                "tabserve.service.auth",
            ),
        )
        if not v.endswith(" imports tabserve.service")
    ]
    assert found == []
    importers = {
        node(i.module)
        for i in IMPORTS
        if within(i.target, "tabserve.service.grpc") and node(i.module) != "service.grpc"
    }
    assert importers <= COMPOSITION | {"service.settings"}
    assert "service.app" in importers


def test_the_core_reaches_rollouts_through_the_data_plane_only() -> None:
    """Rule 14: in the core, only `core.dataplane` imports `service.core.rollout`, and only
    its `plan` (the decision `route` asks for); what starts, ends and shadows rollouts
    (`rollout.rollouts.Rollouts`) is built by `state` and reached by the admin routes."""
    package = "tabserve.service.core.rollout"
    found = {
        (i.module, i.target)
        for i in IMPORTS
        if within(i.target, package)
        and within(i.module, "tabserve.service.core")
        and not within(i.module, package)
    }
    assert found == {("tabserve.service.core.dataplane", f"{package}.plan")}


def test_only_tracing_imports_opentelemetry_and_only_the_composition_root_imports_tracing() -> None:
    """Rule 15: only `service.tracing` imports OpenTelemetry (and the composition root,
    which names the SDK's `SpanExporter` type); the core tells where a request's time
    went through `core.call_timing`, knowing nothing of spans. Tracing imports no web
    framework and nothing of `service` but `core` and `scope_keys`; nothing imports it
    but the composition root and `settings` (its `TracingSettings`)."""
    assert [
        str(i)
        for i in IMPORTS
        if within(i.target, "opentelemetry")
        and node(i.module) not in COMPOSITION | {"service.tracing"}
    ] == []
    found = [
        v
        for v in violations(
            "service.tracing",
            *WEB,
            "tabserve.service",
            allowed=(
                "tabserve.service.core",
                "tabserve.service.scope_keys",
                "tabserve.service.tracing",
            ),
        )
        if not v.endswith(" imports tabserve.service")
    ]
    assert found == []
    importers = {
        node(i.module)
        for i in IMPORTS
        if within(i.target, "tabserve.service.tracing") and node(i.module) != "service.tracing"
    }
    assert importers <= COMPOSITION | {"service.settings"}
    assert "service.app" in importers


def test_access_control_knows_no_transport() -> None:
    """Rule 16: `service.auth` imports no web framework, no gRPC and nothing of `service`
    but `core`; only the transports (`api`, `grpc`), the composition root, `settings` and
    `state` import it."""
    found = violations(
        "service.auth",
        *WEB,
        "grpc",
        "tabserve.service",
        allowed=("tabserve.service.core", "tabserve.service.auth"),
    )
    assert found == []
    importers = {
        node(i.module)
        for i in IMPORTS
        if within(i.target, "tabserve.service.auth") and node(i.module) != "service.auth"
    }
    allowed = COMPOSITION | {"service.api", "service.grpc", "service.settings", "service.state"}
    assert importers <= allowed
    assert {"service.api", "service.grpc"} <= importers
