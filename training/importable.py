"""Refuse, before export, a model whose pickle the server could not load.

Pickle stores functions and classes by module and name, never their code. A lambda
has no name to store; a function or class defined in `__main__` (a notebook, a
script) is stored as `__main__.<name>`, and the server's `__main__` is not the
notebook: unpickling fails there with an AttributeError far from its cause. So every
part of the model is checked here, and the message names the part and how to ship it.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

from tabserve.artifact.libraries import steps_of
from tabserve.training.errors import ExportError

SHIP = (
    "move it into a module the serving environment can import (a package you install "
    "there, or a .py file on its PYTHONPATH), import it from that module, fit again and "
    "export"
)


def check_importable(model: Any) -> None:
    """Raise `ExportError` naming the first part of `model` a server could not unpickle."""
    for where, value in _parts(model):
        problem = _problem(value)
        if problem is not None:
            raise ExportError(f"{where} {problem}")


def _parts(model: Any) -> Iterator[tuple[str, Any]]:
    for step in steps_of(model):
        yield f"step {type(step).__name__}", step
        params = step.get_params(deep=False) if hasattr(step, "get_params") else {}
        for name, value in params.items():
            yield f"parameter {name!r} of {type(step).__name__}", value


def _problem(value: Any) -> str | None:
    if isinstance(value, types.FunctionType):
        qualified = f"{value.__module__}.{value.__qualname__}"
        if value.__name__ == "<lambda>":
            return (
                f"is a lambda ({qualified}): pickle stores functions by name and a lambda has "
                f"none, so the server could not load the model; define it with def at the top "
                f"level of a module and {SHIP} (or use a library function, e.g. numpy.log1p)"
            )
        if "<locals>" in value.__qualname__:
            return f"is function {qualified}, defined inside another function; {SHIP}"
        if value.__module__ == "__main__":
            return (
                f"is function {value.__qualname__} defined in __main__ (a notebook or script), "
                f"which the server cannot import; {SHIP}"
            )
        return None
    cls = type(value)
    if cls.__module__ == "__main__":
        return (
            f"is an instance of class {cls.__qualname__} defined in __main__ (a notebook or "
            f"script), which the server cannot import; {SHIP}"
        )
    if "<locals>" in cls.__qualname__:
        where = f"{cls.__module__}.{cls.__qualname__}"
        return f"is an instance of class {where}, defined inside a function; {SHIP}"
    return None
