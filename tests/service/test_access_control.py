"""Access control through the real lifespan: API keys with scopes on every route and lane.

Keys are made as `tabserve keys add` makes them and written to a real keys file;
every request goes through `create_app`'s whole stack (request context, access
control, the express lanes, FastAPI).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from starlette.routing import Mount
from starlette.testclient import WebSocketDenialResponse

from tabserve.service.api.access_policy import TABLE, UNLISTED, WEBSOCKET, AccessPolicy
from tabserve.service.api.admin import require_admin
from tabserve.service.app import create_app
from tabserve.service.auth.errors import KeysFileError
from tabserve.service.auth.keys_file import KeyEntry, entry_for, new_key, write_keys
from tabserve.service.auth.scopes import Scope
from tabserve.service.settings import Settings

IRIS = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4,
        "petal_width_cm": 0.2}  # fmt: skip
V2_BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                       "data": [5.1, 3.5, 1.4, 0.2]}]}  # fmt: skip


@dataclass
class Keys:
    """A keys file and the keys it holds, by name."""

    path: Path
    keys: dict[str, str]
    entries: list[KeyEntry]

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def add(self, name: str, *scopes: Scope) -> None:
        """Add a key and rewrite the file (atomically, as `tabserve keys add` does)."""
        key = new_key()
        self.keys[name] = key
        self.entries.append(entry_for(name, key, frozenset(scopes)))
        write_keys(self.path, self.entries)

    def remove(self, name: str) -> None:
        self.entries = [e for e in self.entries if e.name != name]
        write_keys(self.path, self.entries)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    made = Keys(tmp_path / "keys.json", {}, [])
    made.add("predictor", Scope.PREDICT)
    made.add("reader", Scope.READ)
    made.add("ops", Scope.ADMIN)
    return made


@pytest.fixture
def settings(models_dir: Path, keys: Keys) -> Settings:
    return Settings(
        models_dir=models_dir, inference_threads=2, auth_keys_file=keys.path, auth_check_seconds=0
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def refusals(client: TestClient) -> dict[tuple[str, str], float]:
    registry: CollectorRegistry = client.app.state.tabserve.metrics.registry  # type: ignore[attr-defined]
    return {
        (s.labels["transport"], s.labels["reason"]): s.value
        for metric in registry.collect()
        if metric.name == "tabserve_auth_refusals"
        for s in metric.samples
        if s.name.endswith("_total")
    }


# (method, path, body, scope): one request of each route class, lanes included.
CASES = [
    ("post", "/models/iris/predict", [IRIS], Scope.PREDICT),  # records express lane
    ("post", "/models/iris/versions/1/predict", [IRIS], Scope.PREDICT),
    ("post", "/v2/models/iris/infer", V2_BODY, Scope.PREDICT),  # V2 express lane
    ("post", "/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, Scope.PREDICT),
    ("get", "/models", None, Scope.READ),
    ("get", "/v2/models/iris", None, Scope.READ),
    ("get", "/v1/models/iris", None, Scope.READ),
    ("post", "/v2/repository/index", None, Scope.ADMIN),
]
HOLDER = {Scope.PREDICT: "predictor", Scope.READ: "reader", Scope.ADMIN: "ops"}


@pytest.mark.parametrize(("method", "path", "body", "scope"), CASES)
def test_no_key_is_401_in_the_error_shape_with_a_challenge(
    client: TestClient, method: str, path: str, body: Any, scope: Scope
) -> None:
    answer = client.request(method.upper(), path, json=body)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["x-request-id"]  # the request context wraps the refusal
    assert answer.headers["x-content-type-options"] == "nosniff"
    error = answer.json()
    assert error["code"] == "unauthenticated"
    assert f"'{scope.value}' scope" in error["error"]
    assert refusals(client) == {("http", "missing"): 1.0}


@pytest.mark.parametrize(("method", "path", "body", "scope"), CASES)
def test_a_key_without_the_scope_is_403_naming_scope_and_key(
    client: TestClient, keys: Keys, method: str, path: str, body: Any, scope: Scope
) -> None:
    other = next(name for s, name in HOLDER.items() if s is not scope)
    answer = client.request(method.upper(), path, json=body, headers=keys.header(other))
    assert answer.status_code == 403
    assert answer.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{scope.value}"'
    )
    error = answer.json()
    assert error["code"] == "forbidden"
    assert f"key {other!r} lacks the {scope.value!r} scope" in error["error"]
    assert keys.keys[other] not in answer.text
    assert refusals(client) == {("http", "scope"): 1.0}


@pytest.mark.parametrize(("method", "path", "body", "scope"), CASES)
def test_a_key_with_the_scope_is_answered(
    client: TestClient, keys: Keys, method: str, path: str, body: Any, scope: Scope
) -> None:
    headers = keys.header(HOLDER[scope])
    answer = client.request(method.upper(), path, json=body, headers=headers)
    # The admin route answers 409 without TABSERVE_ADMIN_TOKEN when access control is
    # off; with it on, a key with the admin scope is what the route needs.
    assert answer.status_code == 200, answer.text
    assert refusals(client) == {}


def test_unknown_and_malformed_keys_are_401_and_the_key_is_never_echoed(
    client: TestClient, keys: Keys
) -> None:
    wrong = new_key()
    unknown = client.get("/models", headers={"Authorization": f"Bearer {wrong}"})
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "not valid" in unknown.json()["error"]
    assert wrong not in unknown.text
    basic = client.get("/models", headers={"Authorization": f"Basic {keys.keys['reader']}"})
    assert basic.status_code == 401
    assert "malformed" in basic.json()["error"]
    assert keys.keys["reader"] not in basic.text
    lower = client.get("/models", headers={"Authorization": f"bearer {keys.keys['reader']}"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235)
    assert refusals(client) == {("http", "unknown"): 1.0, ("http", "malformed"): 1.0}


def test_probes_stay_open_and_metrics_and_docs_follow_their_settings(
    models_dir: Path, keys: Keys, settings: Settings
) -> None:
    with TestClient(create_app(settings)) as client:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path
        assert client.get("/static-offline-docs/swagger-ui.css").status_code == 200
    closed = settings.model_copy(update={"auth_metrics_open": False, "auth_docs_open": False})
    with TestClient(create_app(closed)) as client:
        assert client.get("/v2/health/ready").status_code == 200
        for path in ("/metrics", "/openapi.json", "/docs", "/static-offline-docs/swagger-ui.css"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=keys.header("reader")).status_code == 200, path


def test_an_unlisted_path_needs_admin(client: TestClient, keys: Keys) -> None:
    assert client.get("/nowhere").status_code == 401
    refused = client.get("/nowhere", headers=keys.header("predictor"))
    assert refused.status_code == 403
    assert "no documented route" in refused.json()["error"]
    assert client.get("/nowhere", headers=keys.header("ops")).status_code == 404


def test_every_route_in_the_app_has_a_rule_and_every_rule_a_route(client: TestClient) -> None:
    """A route added without a line in `access_policy.TABLE` fails here (and is closed:
    unlisted paths need admin). Record routes, lanes and WebSockets included."""
    policy = AccessPolicy(metrics_open=True, docs_open=True)
    seen: set[str] = set()
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        path = context.path
        assert path is not None
        if isinstance(route, Mount):
            path += "/{path:path}"
        methods = getattr(route, "methods", None) or (
            {WEBSOCKET} if type(route).__name__ == "APIWebSocketRoute" else {"GET"}
        )
        for method in methods:
            rule = policy.match(method, path)
            assert rule is not UNLISTED, f"{method} {path} has no access rule"
            # Concrete record routes (`/models/iris/predict`) fall under their template.
            assert rule.template == path or rule.template in {
                "/models/{model}/predict",
                "/models/{model}/versions/{version}/predict",
            }, (method, path, rule.template)
            assert not rule.methods or method in rule.methods
            seen.add(rule.template)
    assert seen == {template for template, _, _ in TABLE}


def test_every_route_behind_the_admin_token_needs_the_admin_scope(client: TestClient) -> None:
    """`require_admin` lets a request through on a key with the admin scope, so every
    route that depends on it must need that scope here (not `read` for a GET)."""
    policy = AccessPolicy(metrics_open=True, docs_open=True)
    guarded = 0
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if require_admin not in [d.dependency for d in getattr(route, "dependencies", [])]:
            continue
        for method in route.methods:  # type: ignore[attr-defined]
            assert policy.match(method, context.path or "").scope is Scope.ADMIN, context.path
            guarded += 1
    assert guarded >= 8  # the repository API and the rollout routes


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        # The express lanes answer these before FastAPI routes them.
        ("POST", "/v2/models/iris/infer", Scope.PREDICT),
        ("POST", "/v2/models/iris/versions/2/infer", Scope.PREDICT),
        ("POST", "/models/iris/predict", Scope.PREDICT),
        ("POST", "/models/iris/versions/2/predict", Scope.PREDICT),
        # `{model}` would match `iris:predict`: the POST rule must win, as in the router.
        ("POST", "/v1/models/iris:predict", Scope.PREDICT),
        ("GET", "/v1/models/iris", Scope.READ),
        (WEBSOCKET, "/models/iris/stream", Scope.PREDICT),
        (WEBSOCKET, "/models/iris/versions/1/stream", Scope.PREDICT),
        ("PUT", "/v2/repository/models/iris/default", Scope.ADMIN),
        ("GET", "/v2/models/iris/infer", Scope.PREDICT),  # the router's 405, still guarded
    ],
)
def test_concrete_paths_get_their_routes_scope(method: str, path: str, scope: Scope) -> None:
    assert AccessPolicy(metrics_open=True, docs_open=True).match(method, path).scope is scope


def test_streams_are_checked_on_the_handshake(client: TestClient, keys: Keys) -> None:
    path = "/models/iris/stream"
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(path):
        pass
    assert refused.value.status_code == 401
    assert refused.value.json()["code"] == "unauthenticated"
    reader = keys.header("reader")
    with (
        pytest.raises(WebSocketDenialResponse) as forbidden,
        client.websocket_connect(path, headers=reader),
    ):
        pass
    assert forbidden.value.status_code == 403
    assert "'predict'" in forbidden.value.json()["error"]
    with client.websocket_connect("/models/iris/stream", headers=keys.header("predictor")) as ws:
        ws.send_json({"request_id": "m0", "records": [IRIS]})
        assert ws.receive_json()["predictions"][0]["prediction"] == "setosa"
    assert refusals(client) == {("websocket", "missing"): 1.0, ("websocket", "scope"): 1.0}


def test_keys_rotate_through_a_real_file_change_without_a_restart(
    client: TestClient, keys: Keys
) -> None:
    old = keys.header("reader")
    assert client.get("/models", headers=old).status_code == 200
    keys.add("reader-2", Scope.READ)
    keys.remove("reader")
    assert client.get("/models", headers=keys.header("reader-2")).status_code == 200
    assert client.get("/models", headers=old).status_code == 401


def test_a_bad_reread_keeps_the_previous_keys_and_is_counted(
    client: TestClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    keys.path.write_text('{"keys": [{"name": "x", "sha256": "nope", "scopes": ["read"]}]}')
    assert client.get("/models", headers=keys.header("reader")).status_code == 200
    assert f"keys file {keys.path}, entry 0 ('x'): sha256" in caplog.text
    keys.path.unlink()
    assert client.get("/models", headers=keys.header("reader")).status_code == 200
    text = client.get("/metrics").text
    assert 'tabserve_auth_reloads_total{result="error"} 2.0' in text
    assert "tabserve_auth_keys 3.0" in text
    assert "tabserve_auth_keys_file_failing 1.0" in text
    keys.add("fresh", Scope.READ)  # a good file again: picked up
    assert client.get("/models", headers=keys.header("fresh")).status_code == 200
    assert "tabserve_auth_keys_file_failing 0.0" in client.get("/metrics").text


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"keys": [{"name": "ci", "sha256": "' + "a" * 64 + '", "scopes": ["predit"]}]}',
         "entry 0 ('ci'): scopes: expected one of predict, read, admin, got 'predit'"),
        ('{"keys": [{"name": "ci", "key": "tsk_x", "sha256": "' + "a" * 64 + '", '
         '"scopes": ["read"]}]}', "entry 0 ('ci'): unknown field 'key'"),
        ('{"keys": [{"name": "a", "sha256": "' + "a" * 64 + '", "scopes": ["read"]}, '
         '{"name": "a", "sha256": "' + "b" * 64 + '", "scopes": ["read"]}]}',
         "entry 1: name 'a' repeats"),
    ],
)  # fmt: skip
def test_a_malformed_keys_file_refuses_to_start_naming_file_and_entry(
    models_dir: Path, tmp_path: Path, document: str, expected: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(document)
    with pytest.raises(KeysFileError) as refused:
        create_app(Settings(models_dir=models_dir, auth_keys_file=path))
    assert str(refused.value).startswith(f"keys file {path}")
    assert expected in str(refused.value)


def test_serve_refuses_a_malformed_keys_file_before_loading_anything(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from tabserve.service.cli import main

    path = tmp_path / "keys.json"
    path.write_text('{"keys": [{"name": "ci"}]}')
    monkeypatch.setenv("TABSERVE_AUTH_KEYS_FILE", str(path))
    assert main(["serve", "--models-dir", str(models_dir), "--port", "0"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"error: keys file {path}, entry 0 ('ci'): sha256 is missing"
    )


def test_the_admin_token_still_works_as_a_key_with_the_admin_scope(
    models_dir: Path, keys: Keys
) -> None:
    settings = Settings(models_dir=models_dir, auth_keys_file=keys.path, admin_token="s3cret")
    with TestClient(create_app(settings)) as client:
        token = {"Authorization": "Bearer s3cret"}
        assert client.post("/v2/repository/index", headers=token).status_code == 200
        refused = client.get("/models", headers=token)
        assert refused.status_code == 403
        assert "'env:TABSERVE_ADMIN_TOKEN' lacks the 'read' scope" in refused.json()["error"]


def test_access_log_lines_name_the_key_never_the_key_itself(
    settings: Settings, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(settings)) as client:
        capsys.readouterr()
        client.get("/models", headers=keys.header("reader"))
        client.get("/models", headers=keys.header("predictor"))
        client.get("/models")
    lines = [line for line in capsys.readouterr().err.splitlines() if "tabserve.access" in line]
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["key=reader", "key=predictor", "key=-"]
    assert [line.split()[7] for line in lines] == ["200", "403", "401"]
    assert not any(k in "\n".join(lines) for k in keys.keys.values())


def test_json_access_log_lines_carry_the_principal(
    settings: Settings, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(settings.model_copy(update={"log_format": "json"}))) as client:
        capsys.readouterr()
        client.post("/v2/models/iris/infer", json=V2_BODY, headers=keys.header("predictor"))
    [line] = [x for x in capsys.readouterr().err.splitlines() if "tabserve.access" in x]
    entry = json.loads(line)
    assert (entry["route"], entry["status"], entry["principal"]) == (
        "/v2/models/{model}/infer",
        200,
        "predictor",
    )


def test_the_openapi_document_declares_the_bearer_scheme_and_each_scope(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["apiKey"]["description"],
    }
    paths = document["paths"]
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert infer["security"] == [{"apiKey": []}]
    assert infer["x-tabserve-scope"] == "predict"
    assert set(infer["responses"]) >= {"401", "403"}
    assert paths["/v2/repository/index"]["post"]["x-tabserve-scope"] == "admin"
    assert paths["/models/iris/predict"]["post"]["x-tabserve-scope"] == "predict"
    assert paths["/v2/health/live"]["get"]["security"] == []
    assert "security" not in json.dumps(paths["/models"]["get"]["responses"])


def test_off_by_default_nothing_is_added(models_dir: Path) -> None:
    assert "TABSERVE_AUTH_KEYS_FILE" not in os.environ
    app = create_app(Settings(models_dir=models_dir))
    assert not any(m.cls.__name__ == "AccessControl" for m in app.user_middleware)
    with TestClient(app) as client:
        assert client.get("/models").status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


def test_keys_cli_prints_a_key_once_stores_its_hash_lists_and_removes(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tabserve.service.cli import main

    path = tmp_path / "keys.json"
    assert main(["keys", "add", "ci", "--scopes", "predict,read", "--file", str(path)]) == 0
    printed = capsys.readouterr()
    key = printed.out.strip()
    assert key.startswith("tsk_")
    assert len(key) >= 40
    assert "shown only this once" in printed.err
    assert key not in path.read_text()
    assert main(["keys", "add", "ci", "--scopes", "read", "--file", str(path)]) == 1
    assert "already has a key named 'ci'" in capsys.readouterr().err
    assert main(["keys", "add", "ops", "--scopes", "admin", "--file", str(path)]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["ci", "predict,read"], ["ops", "admin"]]
    assert key not in "\n".join(listed)
    settings = Settings(models_dir=models_dir, auth_keys_file=path)
    with TestClient(create_app(settings)) as client:
        assert client.get("/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert main(["keys", "remove", "ci", "--file", str(path)]) == 0
    assert main(["keys", "remove", "ci", "--file", str(path)]) == 1
    assert [e["name"] for e in json.loads(path.read_text())["keys"]] == ["ops"]


def test_a_cors_preflight_needs_no_key(settings: Settings, keys: Keys) -> None:
    origin = "https://app.example.com"
    with TestClient(create_app(settings.model_copy(update={"cors_origins": [origin]}))) as client:
        preflight = client.options(
            "/models/iris/predict",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        refused = client.post("/models/iris/predict", json=[IRIS], headers={"Origin": origin})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin  # the page can read why
        answered = client.post(
            "/models/iris/predict",
            json=[IRIS],
            headers={"Origin": origin, **keys.header("predictor")},
        )
        assert answered.status_code == 200
