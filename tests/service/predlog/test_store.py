"""The store on SQLite and on a real PostgreSQL server: the same behaviour on both."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tabserve.service.predlog import LoggedRow, PredictionStore
from tabserve.service.predlog import migrate as migrate_module
from tabserve.service.predlog.tables import metadata

VERSION_TABLE = "predlog_alembic_version"  # as migrations/env.py names it


def row(request_id: str, index: int = 0, *, time: float = 1000.0, version: int = 1) -> LoggedRow:
    return LoggedRow(
        model="iris",
        version=version,
        request_id=request_id,
        row=index,
        time=time,
        latency_seconds=0.002,
        inputs={"sepal_length_cm": 5.1, "petal_width_cm": None},
        prediction="setosa",
        probabilities={"setosa": 0.9, "versicolor": 0.1},
    )


def test_migrating_twice_leaves_one_current_schema(store: PredictionStore) -> None:
    store.migrate()
    with store.engine.connect() as connection:
        revisions = connection.execute(
            sa.text("SELECT version_num FROM predlog_alembic_version")
        ).all()
        tables = set(sa.inspect(connection).get_table_names())
    assert revisions == [("0003",)]
    assert {"predictions", "feedback"} <= tables


def test_rows_round_trip_and_duplicates_are_ignored(store: PredictionStore) -> None:
    assert store.write([row("a", 0), row("a", 1)]) == 2
    assert store.write([row("a", 1), row("b", 0)]) == 1  # (iris, a, 1) is already stored
    page = store.page("iris", limit=10)
    assert [(p.row.request_id, p.row.row) for p in page] == [("b", 0), ("a", 1), ("a", 0)]
    assert page[-1].row == row("a", 0)
    assert page[-1].truth is None
    assert store.count("iris") == 3
    assert store.count("wine") == 0


def test_one_row_may_be_logged_once_per_version(store: PredictionStore) -> None:
    """A shadow's challenger logs the champion's row again, under its own version."""
    assert store.write([row("a", 0, version=2), row("a", 0, version=1)]) == 2
    assert store.write([row("a", 0, version=1)]) == 0
    store.add_truths("iris", [("a", 0, "setosa")], time=30)
    assert sorted(r.version for r in store.labelled("iris")) == [1, 2]
    # feedback finds the row that answered: the first one logged
    assert store.find("iris", [("a", 0)])[("a", 0)].row.version == 2


def test_labelled_joins_truth_by_model_request_and_row(store: PredictionStore) -> None:
    store.write([row("a", 0, time=10), row("a", 1, time=10), row("b", 0, time=20, version=2)])
    new = store.add_truths("iris", [("a", 1, "virginica"), ("b", 0, "setosa")], time=30)
    assert new == {("a", 1), ("b", 0)}
    assert store.add_truths("iris", [("a", 1, "setosa")], time=31) == set()  # duplicate
    labelled = store.labelled("iris")
    assert [(r.request_id, r.row, r.version, r.truth) for r in labelled] == [
        ("a", 1, 1, "virginica"),
        ("b", 0, 2, "setosa"),
    ]
    assert labelled[0].inputs == {"sepal_length_cm": 5.1, "petal_width_cm": None}
    assert labelled[0].prediction == "setosa"
    assert labelled[0].feedback_time == 30
    assert [r.request_id for r in store.labelled("iris", version=2)] == ["b"]
    assert store.labelled("iris", since=31) == []
    assert store.labelled("wine") == []


def test_find_looks_rows_up_with_their_truth(store: PredictionStore) -> None:
    store.write([row("a", 0), row("a", 1)])
    store.add_truths("iris", [("a", 0, "setosa")], time=2000)
    found = store.find("iris", [("a", 0), ("a", 1), ("zz", 0)])
    assert sorted(found) == [("a", 0), ("a", 1)]
    assert found[("a", 0)].truth == "setosa"
    assert found[("a", 1)].truth is None


def test_paging_with_a_cursor_time_range_and_feedback_filter(store: PredictionStore) -> None:
    store.write([row(f"r{i}", time=100 + i) for i in range(7)])
    store.add_truths("iris", [("r2", 0, "setosa"), ("r5", 0, "setosa")], time=200)
    first = store.page("iris", limit=3)
    second = store.page("iris", limit=3, before=first[-1].id)
    third = store.page("iris", limit=3, before=second[-1].id)
    ids = [p.row.request_id for p in first + second + third]
    assert ids == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    ranged = store.page("iris", limit=10, since=102, until=105)
    assert [p.row.request_id for p in ranged] == ["r4", "r3", "r2"]
    labelled = store.page("iris", limit=10, with_feedback=True)
    assert [(p.row.request_id, p.truth) for p in labelled] == [("r5", "setosa"), ("r2", "setosa")]


def test_retention_by_age_and_by_size_takes_feedback_along(store: PredictionStore) -> None:
    store.write([row(f"r{i}", time=100 + i) for i in range(10)])
    store.add_truths("iris", [("r0", 0, "setosa"), ("r9", 0, "setosa")], time=500)
    expired = store.expire(older_than=103, keep_rows=None)  # r0, r1, r2
    assert (expired.by_age, expired.by_size, expired.feedback) == (3, 0, 1)
    expired = store.expire(older_than=None, keep_rows=4)  # keeps r6..r9
    assert (expired.by_age, expired.by_size, expired.feedback) == (0, 3, 0)
    assert [p.row.request_id for p in store.page("iris", limit=10)] == ["r9", "r8", "r7", "r6"]
    assert [r.request_id for r in store.labelled("iris")] == ["r9"]
    assert store.expire(older_than=None, keep_rows=4) == store.expire(older_than=0, keep_rows=10)


def test_processes_starting_together_migrate_once(
    store: PredictionStore,
) -> None:
    # Four more stores on the same database race to migrate it: the lock makes it one upgrade.

    others = [PredictionStore(store.url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(PredictionStore.migrate, others))
    with store.engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM predlog_alembic_version"))
        assert count.scalar_one() == 1
    for other in others:
        other.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_declares(store: PredictionStore) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_log_created_at_the_first_revision_upgrades_in_place(
    engine: str, database_url: Callable[[str], str]
) -> None:
    old = PredictionStore(database_url(engine))
    with old.engine.begin() as connection:
        command.upgrade(migrate_module._config(connection), "0001")
    old.write([row("kept")])
    old.migrate()
    with old.engine.connect() as connection:
        indexes = {i["name"] for i in sa.inspect(connection).get_indexes("predictions")}
        revision = connection.execute(sa.text("SELECT version_num FROM predlog_alembic_version"))
        assert revision.scalar_one() == "0003"
    assert "ix_predictions_time" in indexes
    assert [p.row.request_id for p in old.page("iris", limit=5)] == ["kept"]
    old.dispose()
