"""Training's prediction-log reader: the service's tables, read with no service code.

The reader declares the columns it reads; these tests hold them to the service's
own table definitions and default location, and read a log the service's store wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tabserve.service.predlog import tables as service_tables
from tabserve.service.predlog.records import LoggedRow
from tabserve.service.predlog.store import PredictionStore
from tabserve.service.settings import Settings
from tabserve.training import log_reader
from tabserve.training.log_reader import default_log_url, read_labelled


@pytest.mark.parametrize("name", ["predictions", "feedback"])
def test_the_reader_declares_columns_the_service_tables_have(name: str) -> None:
    ours = getattr(log_reader, name)
    theirs = getattr(service_tables, name)
    for column in ours.columns:
        assert column.name in theirs.columns, f"{name}.{column.name} is not in the service's table"
        served = theirs.columns[column.name].type
        assert column.type.python_type is served.python_type, f"{name}.{column.name}"


@pytest.mark.parametrize(
    "environment",
    [{}, {"TABSERVE_DATA_DIR": "/srv/log"}, {"TABSERVE_PREDLOG_URL": "postgresql://db/log"}],
)
def test_the_default_log_is_the_one_the_service_writes(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TABSERVE_DATA_DIR", "TABSERVE_PREDLOG_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert default_log_url() == Settings().predlog_database_url


def test_reads_labelled_rows_oldest_first_with_their_truth(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    store = PredictionStore(url)
    store.migrate()
    inputs = {"sepal_length_cm": 5.1, "email": None}
    store.write(
        [
            LoggedRow("iris", 2, "late", 0, 2000.0, 0.001, inputs, "setosa"),
            LoggedRow("iris", 1, "early", 1, 1000.0, 0.001, inputs, "virginica"),
            # a shadow challenger's prediction of the same row: one example, read once
            LoggedRow("iris", 3, "late", 0, 2000.0, 0.001, inputs, "versicolor"),
            LoggedRow("iris", 1, "unlabelled", 0, 1500.0, 0.001, inputs, "setosa"),
            LoggedRow("wine", 1, "other", 0, 1200.0, 0.001, inputs, "class_0"),
        ]
    )
    store.add_truths("iris", [("late", 0, "versicolor"), ("early", 1, "virginica")], 3000.0)
    store.add_truths("wine", [("other", 0, "class_1")], 3000.0)
    store.dispose()
    examples = read_labelled(url, "iris")
    assert [(e.request_id, e.version, e.truth) for e in examples] == [
        ("early", 1, "virginica"),
        ("late", 2, "versicolor"),
    ]
    assert examples[0].inputs == inputs
    assert examples[0].predicted_at == datetime.fromtimestamp(1000.0, UTC)
