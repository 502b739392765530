"""Model versions at run time: load, unload, re-point the default, follow the directory.

A version takes traffic only once it is loaded, verified and warmed up
(`load_version` does all three before it returns); a version that fails to load
never replaces one that is serving. Unloading only forgets a version: requests
that already hold it finish on it, and its memory goes when the last one does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from tabserve.artifact.repository import list_models, list_versions, version_path
from tabserve.service.core import heap
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import InvalidInputError, ModelNotFoundError, Problem
from tabserve.service.core.loading import LoadingConfig, load_version
from tabserve.service.core.registry import ModelState, ModelVersion

log = logging.getLogger("tabserve.models")


@dataclass(frozen=True)
class IndexEntry:
    """One version, on disk or loaded or both."""

    name: str
    version: int
    on_disk: bool
    state: str
    error: str | None
    default: bool


class ModelRepository:
    """Run-time changes to what the registry serves, with the models directory as the source."""

    def __init__(self, config: LoadingConfig, dataplane: DataPlane):
        self.config = config
        self.dataplane = dataplane
        self.metrics = dataplane.metrics
        self.registry = dataplane.registry
        self._failed_names: set[str] = set()
        self.metrics.before_render.append(self._count_failed)

    def index(self) -> list[IndexEntry]:
        """Every version on disk or loaded, with its state."""
        disk = list_models(self.config.models_dir)
        loaded = {(m.name, m.version): m for m in self.registry.all()}
        keys = sorted({(n, v) for n, vs in disk.items() for v in vs} | set(loaded))
        entries = []
        for name, version in keys:
            model = loaded.get((name, version))
            default = model is not None and self.registry.get(name) is model
            entries.append(
                IndexEntry(
                    name=name,
                    version=version,
                    on_disk=version in disk.get(name, []),
                    state=model.state.value if model else "unloaded",
                    error=model.error if model else None,
                    default=default,
                )
            )
        return entries

    async def load(self, name: str, version: int | None = None) -> list[ModelVersion]:
        """Load one version (or every version on disk not loaded yet); returns the attempts."""
        on_disk = list_versions(self.config.models_dir, name)
        if version is not None and version not in on_disk:
            listed = ", ".join(map(str, on_disk)) or "none"
            raise ModelNotFoundError(
                f"model {name!r} has no version {version} on disk; versions on disk: {listed}"
            )
        wanted = (
            [version] if version is not None else [v for v in on_disk if not self._loaded(name, v)]
        )
        return [await self._load_one(name, v) for v in wanted]

    async def _load_one(self, name: str, version: int) -> ModelVersion:
        path = version_path(self.config.models_dir, name, version)
        model = await anyio.to_thread.run_sync(
            load_version, path, name, version, self.config, self.dataplane
        )
        if model.ready or not self._loaded(name, version):
            self.registry.add(model)
        else:
            log.error("kept the serving %s version %s: the new load failed", name, version)
        heap.settle()
        return model

    def _loaded(self, name: str, version: int) -> bool:
        try:
            return self.registry.get(name, version).ready
        except ModelNotFoundError:
            return False

    def unload(self, name: str, version: int) -> ModelVersion:
        """Stop serving one version; requests already holding it finish on it."""
        model = self.registry.remove(name, version)
        log.info("model %s version %s unloaded", name, version)
        heap.settle(full=True)
        return model

    def set_default(self, name: str, version: int | None) -> ModelVersion:
        """Pin which version answers requests that name no version (None: the highest)."""
        if version is not None:
            candidate = self.registry.get(name, version)
            if not candidate.ready:
                raise InvalidInputError.of(
                    "not_ready",
                    [Problem("version", "a version that is ready", version)],
                )
        self.registry.set_default(name, version)
        chosen = self.registry.get(name)
        log.info("model %s now answers with version %s by default", name, chosen.version)
        return chosen

    async def follow_directory(self) -> bool:
        """Load versions that appeared on disk and forget those whose folder went.

        True if anything changed. A missing models directory forgets nothing: an
        unmounted volume should not empty a pod that is serving.
        """
        disk = list_models(self.config.models_dir)
        changed = self._forget_missing(disk)
        for name, versions in disk.items():
            known = {m.version for m in self._versions(name)}
            for version in versions:
                if version not in known:
                    await self._load_one(name, version)
                    changed = True
        return changed

    def _forget_missing(self, disk: dict[str, list[int]]) -> bool:
        """Forget loaded versions not in `disk` (from `list_models`); True if any were."""
        if not self.config.models_dir.is_dir():
            return False
        gone = [m for m in self.registry.all() if m.version not in disk.get(m.name, [])]
        for model in gone:
            self.registry.remove(model.name, model.version)
            log.info(
                "model %s version %s forgotten: its folder %s is gone (it was %s)",
                model.name,
                model.version,
                model.path,
                model.state.value,
            )
        if gone:
            heap.settle(full=True)
        return bool(gone)

    def _count_failed(self) -> None:
        """Set the failed-versions gauge, back to 0 for models no longer failing."""
        failed: dict[str, int] = {}
        for model in self.registry.all():
            if model.state is ModelState.FAILED:
                failed[model.name] = failed.get(model.name, 0) + 1
        for name in self._failed_names | set(failed):
            self.metrics.loading.versions_failed.labels(name).set(failed.get(name, 0))
        self._failed_names |= set(failed)

    def _versions(self, name: str) -> list[ModelVersion]:
        try:
            return self.registry.versions(name)
        except ModelNotFoundError:
            return []
