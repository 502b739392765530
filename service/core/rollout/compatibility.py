"""Whether a challenger takes every request its champion takes, and answers in kind.

A rollout hands the challenger requests validated against the champion's schema
(and a shadow, the very rows the champion predicted), so the challenger must take
the same features, in the same order, of the same types; accept a missing value
wherever the champion does; know every category the champion knows; and do the same
task (a client reading classes must not get a number).
"""

from __future__ import annotations

from tabserve.service.core.errors import InvalidInputError, Problem
from tabserve.service.core.served import ServedModel


def check_compatible(champion: ServedModel, challenger: ServedModel) -> None:
    """InvalidInputError (reason `incompatible`) naming the first differences, if any."""
    problems = _differences(champion, challenger)
    if problems:
        raise InvalidInputError.of("incompatible", problems)


def _differences(champion: ServedModel, challenger: ServedModel) -> list[Problem]:
    old, new = champion.manifest, challenger.manifest
    where = f"challenger (version {challenger.version})"
    if new.task != old.task:
        return [Problem(f"{where} task", f"{old.task!r}, the champion's", new.task)]
    if new.feature_names != old.feature_names:
        expected = f"the champion's features in its order: {', '.join(old.feature_names)}"
        return [Problem(f"{where} features", expected, ", ".join(new.feature_names))]
    problems = []
    for i, (was, now) in enumerate(zip(old.features, new.features, strict=True)):
        field = f"{where} feature {was.name!r}"
        if now.type != was.type:
            problems.append(Problem(f"{field} type", f"{was.type!r}, the champion's", now.type))
        elif champion.schema.missing_allowed[i] and not challenger.schema.missing_allowed[i]:
            problems.append(
                Problem(f"{field} missing values", "accepted, as by the champion", "refused")
            )
        elif (lost := _categories_lost(champion, challenger, i)) is not None:
            problems.append(
                Problem(f"{field} categories", "every category the champion knows", lost)
            )
    return problems


def _categories_lost(champion: ServedModel, challenger: ServedModel, i: int) -> str | None:
    """The champion's categories the challenger does not know, or None if it knows them all."""
    if i not in champion.schema.categories:
        return None
    known = champion.schema.categories[i]
    taken = challenger.schema.categories.get(i)
    if taken is None:
        return None  # the challenger takes any string
    if known is None:
        return f"only {len(taken)} known categories (the champion takes any string)"
    lost = sorted(known - taken)
    return f"misses {', '.join(lost)}" if lost else None
