"""Every `TABSERVE_*` name the README and docs mention is read by `Settings` from the environment.

Features own nested settings models (`settings.drift.window_seconds`), but operators
set flat environment variables (`TABSERVE_DRIFT_WINDOW_SECONDS`): each documented name
must change what `Settings()` holds when set. Keyword arguments and `model_copy`
take the same flat names, as tests and the bench use them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from tabserve.service.settings import Settings

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Values to try, one of which fits each setting's type and range and is not its default.
CANDIDATES = [
    "true",
    "false",
    "2",
    "7",
    "2048",
    "0.5",
    "sampled",
    "journal",
    "request",
    "sklearn",
    "json",
    "debug",
    "/srv/elsewhere",
    "http://collector.example:9000/events",
    '["https://app.example.com"]',
    '{"iris": 3}',
]


def documented_names() -> set[str]:
    """`TABSERVE_X` names in the docs (not prefixes such as `TABSERVE_SINK_*`)."""
    names = set()
    for document in DOCUMENTS:
        names |= {n for n in re.findall(r"TABSERVE_[A-Z_]+", document.read_text()) if n[-1] != "_"}
    return names


def _value(settings: Settings, path: tuple[str, ...]) -> Any:
    value: Any = settings
    for attribute in path:
        value = getattr(value, attribute)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TABSERVE_* variable from the test runner's environment."""
    for name in Settings.environment_names():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_docs_mention_settings() -> None:
    assert {
        "TABSERVE_PREDLOG_MODE",
        "TABSERVE_DRIFT_ENABLED",
        "TABSERVE_SINK_URL",
        "TABSERVE_GRPC_PORT",
        "TABSERVE_GRPC_MAX_MESSAGE_BYTES",
    } <= documented_names()


@pytest.mark.parametrize("name", sorted(documented_names()))
def test_a_documented_name_is_read_from_the_environment(
    name: str, clean: pytest.MonkeyPatch
) -> None:
    where = Settings.environment_names().get(name)
    assert where is not None, f"{name} is documented but Settings reads no such variable"
    default = _value(Settings(), where)
    for candidate in CANDIDATES:
        clean.setenv(name, candidate)
        try:
            value = _value(Settings(), where)
        except (ValidationError, SettingsError):  # a complex field's value must be JSON
            continue
        if value != default:
            return
    pytest.fail(f"no value of {name} in {CANDIDATES} changed settings.{'.'.join(where)}")


def test_flat_keywords_and_model_copy_reach_the_nested_feature(
    clean: pytest.MonkeyPatch,
) -> None:
    clean.setenv("TABSERVE_DRIFT_MIN_ROWS", "7")
    settings = Settings(drift_window_seconds=60, predlog_mode="all", batch_max_rows=3)
    assert (settings.drift.window_seconds, settings.drift.min_rows) == (60, 7)
    assert settings.predlog.mode == "all"
    assert settings.batching.max_rows == 3
    copy = settings.model_copy(update={"drift_enabled": False, "queue_max_rows": 9, "port": 1})
    assert (copy.drift.enabled, copy.drift.window_seconds) == (False, 60)
    assert (copy.batching.queue_max_rows, copy.batching.max_rows, copy.port) == (9, 3, 1)
    assert settings.drift.enabled  # the original is unchanged


def test_a_bad_flat_keyword_value_names_the_field(clean: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="min_rows"):
        Settings(drift_min_rows=0)


def test_model_copy_refuses_a_name_that_is_no_setting() -> None:
    with pytest.raises(ValueError, match="drift_enable"):
        Settings().model_copy(update={"drift_enable": False})


def test_every_feature_settings_field_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            for inner, inner_field in nested.model_fields.items():
                assert inner_field.description, f"{name}.{inner}"
