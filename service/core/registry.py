"""Models by name and version: their state, the default version, and lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tabserve.service.core.errors import ModelNotFoundError, ModelNotReadyError
from tabserve.service.core.served import ServedModel


class ModelState(StrEnum):
    """Where a model version is in its life (a version is listed once its load ended)."""

    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, eq=False)
class ModelVersion:
    """The registry's entry for one version, ready or not: what `GET /models` lists.

    A ready entry carries the `ServedModel` that requests use; a failed one says why.
    Entries are replaced, never changed.
    """

    name: str
    version: int
    path: Path
    engine: str
    """The engine that serves it ("onnx", "numpy", "sklearn"), or the one that was tried."""
    served: ServedModel | None
    """What serves requests; None exactly when the load failed."""
    error: str | None = None
    load_seconds: float | None = None

    @classmethod
    def of(cls, served: ServedModel, load_seconds: float) -> ModelVersion:
        """The entry of a version that loaded and serves."""
        engine = served.runtime.engine
        return cls(served.name, served.version, served.path, engine, served, None, load_seconds)

    @classmethod
    def failed(cls, name: str, version: int, path: Path, engine: str, error: str) -> ModelVersion:
        """The entry of a version whose load failed, with the reason."""
        return cls(name, version, path, engine, None, error)

    @property
    def state(self) -> ModelState:
        """READY when it serves, else FAILED."""
        return ModelState.READY if self.served is not None else ModelState.FAILED

    @property
    def ready(self) -> bool:
        """Whether it can serve."""
        return self.served is not None


class ModelRegistry:
    """Every known model version and each name's default version.

    The default is the version pinned with `set_default`, else the highest version
    that is ready (else the highest: its error then says why nothing serves), so a
    broken new version never takes traffic from a working one.
    Changes replace whole entries, so a request that already holds a version
    finishes on it while new requests see the change.
    """

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelVersion]] = {}
        self._pinned: dict[str, int] = {}
        self._default: dict[str, ModelVersion] = {}
        self._served: set[str] = set()
        """Names whose default version has served, until the name is forgotten."""
        self.listeners: list[Callable[[str], None]] = []
        """Called with a name after any change to its versions or default (rollouts end
        themselves when an arm goes); they may change the registry again."""

    def add(self, model: ModelVersion) -> None:
        """Register (or replace) one version."""
        self._models.setdefault(model.name, {})[model.version] = model
        self._refresh(model.name)

    def remove(self, name: str, version: int) -> ModelVersion:
        """Forget one version (requests holding it still finish); returns it."""
        removed = self.get(name, version)
        del self._models[name][version]
        if not self._models[name]:
            del self._models[name]
        if self._pinned.get(name) == version:
            del self._pinned[name]
        self._refresh(name)
        return removed

    def set_default(self, name: str, version: int | None) -> None:
        """Pin the default version of `name` (None: back to the highest version)."""
        if version is None:
            self._pinned.pop(name, None)
        else:
            self.get(name, version)
            self._pinned[name] = version
        self._refresh(name)

    def pinned(self, name: str) -> int | None:
        """The pinned default version of `name`, if one is pinned."""
        return self._pinned.get(name)

    def _refresh(self, name: str) -> None:
        self._choose_default(name)
        for listener in self.listeners:
            listener(name)

    def _choose_default(self, name: str) -> None:
        found = self._models.get(name)
        if not found:
            self._default.pop(name, None)
            self._served.discard(name)
            return
        pinned = self._pinned.get(name)
        ready = [v for v, m in found.items() if m.ready]
        default = found[pinned] if pinned in found else found[max(ready or found)]
        self._default[name] = default
        if default.ready:
            self._served.add(name)

    def names(self) -> list[str]:
        """Model names, sorted."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """Versions of `name`, ascending; ModelNotFoundError if there is no such model."""
        found = self._models.get(name)
        if not found:
            raise ModelNotFoundError(f"model {name!r} not found; {self.describe()}")
        return [found[v] for v in sorted(found)]

    def describe(self) -> str:
        """`models served: a, b` (names whose default version serves), then any that do not."""
        serving = [n for n, m in sorted(self._default.items()) if m.ready]
        failed = [n for n, m in sorted(self._default.items()) if not m.ready]
        text = f"models served: {', '.join(serving) or 'none'}"
        return text + (
            f"; not serving (GET /models says why): {', '.join(failed)}" if failed else ""
        )

    def all(self) -> list[ModelVersion]:
        """Every version of every model."""
        return [m for name in self.names() for m in self.versions(name)]

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version (the default when `version` is None), whatever its state."""
        if version is None:
            default = self._default.get(name)
            if default is not None:
                return default
            self.versions(name)  # raises ModelNotFoundError naming the served models
        found = self._models.get(name, {})
        model = found.get(version) if version is not None else None
        if model is not None:
            return model
        listed = ", ".join(str(m.version) for m in self.versions(name))
        raise ModelNotFoundError(f"model {name!r} has no version {version}; versions: {listed}")

    def ready(self, name: str, version: int | None = None) -> ServedModel:
        """The served model of a version, or ModelNotReadyError saying why it does not serve."""
        model = self.get(name, version)
        if model.served is None:
            why = f": {model.error}" if model.error else ""
            raise ModelNotReadyError(
                f"model {name!r} version {model.version} is {model.state.value}{why}"
            )
        return model.served

    def unready_reasons(self) -> list[str]:
        """Why this pod should take no traffic; empty when it should.

        It should while some model serves and every model that has served still
        does. A model that never loaded is reported (`GET /models`, the failure
        metrics, the log) but does not take the others out of rotation: on a models
        volume shared by every pod, one bad upload must not be an outage.
        """
        if not any(m.ready for m in self._default.values()):
            failed = ", ".join(self.names())
            return [f"no model can serve (failed: {failed})" if failed else "no models loaded"]
        return [
            f"model {name!r} served, but its default version {model.version} is "
            f"{model.state.value}" + (f": {model.error}" if model.error else "")
            for name in sorted(self._served)
            if not (model := self._default[name]).ready
        ]
