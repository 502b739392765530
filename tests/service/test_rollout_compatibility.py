"""A challenger must take every request its champion takes: each difference is named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tabserve.artifact.manifest import CategoryStats, Manifest
from tabserve.service.core.errors import InvalidInputError
from tabserve.service.core.rollout.compatibility import check_compatible
from tabserve.service.core.validation import FeatureSchema


def served(manifest: Manifest, version: int) -> Any:
    """What `check_compatible` reads of a served model: version, manifest, schema."""
    schema = FeatureSchema(manifest, max_rows=10, reject_out_of_range=False)
    return SimpleNamespace(version=version, manifest=manifest, schema=schema)


@pytest.fixture
def churn(models_dir: Path) -> Manifest:
    """Mixed types: age (number), city (category), income (number); missing values allowed."""
    return Manifest.model_validate_json((models_dir / "churn" / "1" / "model.json").read_text())


def changed(manifest: Manifest, name: str, **update: Any) -> Manifest:
    features = [f.model_copy(update=update) if f.name == name else f for f in manifest.features]
    return manifest.model_copy(update={"features": features})


def refusal(champion: Manifest, challenger: Manifest) -> tuple[str, str, Any]:
    with pytest.raises(InvalidInputError) as raised:
        check_compatible(served(champion, 1), served(challenger, 2))
    assert raised.value.reason == "incompatible"
    [problem] = raised.value.problems
    return problem.field, problem.expected, problem.value


def test_the_same_schema_is_compatible(churn: Manifest) -> None:
    check_compatible(served(churn, 1), served(churn, 2))


def test_a_challenger_knowing_more_categories_is_compatible(churn: Manifest) -> None:
    city = next(f for f in churn.features if f.name == "city")
    assert isinstance(city.stats, CategoryStats)
    more = city.stats.model_copy(
        update={
            "categories": [*city.stats.categories, "oslo"],
            "frequencies": [*city.stats.frequencies, 1],
        }
    )
    check_compatible(served(churn, 1), served(changed(churn, "city", stats=more), 2))


def test_other_features_or_order_are_refused(churn: Manifest) -> None:
    reordered = churn.model_copy(update={"features": list(reversed(churn.features))})
    field, expected, value = refusal(churn, reordered)
    assert field == "challenger (version 2) features"
    assert expected == "the champion's features in its order: age, city, income"
    assert value == "income, city, age"


def test_another_type_is_refused(churn: Manifest) -> None:
    field, expected, value = refusal(churn, changed(churn, "age", type="category"))
    assert (field, expected, value) == (
        "challenger (version 2) feature 'age' type",
        "'number', the champion's",
        "category",
    )


def test_refusing_missing_values_the_champion_takes_is_refused(churn: Manifest) -> None:
    assert served(churn, 1).schema.missing_allowed[2]
    field, expected, value = refusal(churn, changed(churn, "income", missing=False))
    assert (field, value) == ("challenger (version 2) feature 'income' missing values", "refused")
    assert expected == "accepted, as by the champion"


def test_a_category_the_challenger_does_not_know_is_refused(churn: Manifest) -> None:
    city = next(f for f in churn.features if f.name == "city")
    assert isinstance(city.stats, CategoryStats)
    fewer = city.stats.model_copy(
        update={
            "categories": city.stats.categories[:-1],
            "frequencies": city.stats.frequencies[:-1],
        }
    )
    field, expected, value = refusal(churn, changed(churn, "city", stats=fewer))
    assert (field, expected) == (
        "challenger (version 2) feature 'city' categories",
        "every category the champion knows",
    )
    assert value == f"misses {city.stats.categories[-1]}"


def test_another_task_is_refused(churn: Manifest) -> None:
    regressor = churn.model_copy(update={"task": "regression"})
    assert refusal(churn, regressor) == (
        "challenger (version 2) task",
        "'classification', the champion's",
        "regression",
    )
