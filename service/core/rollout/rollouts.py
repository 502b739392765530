"""Every model's rollout: started, replaced, ended and promoted here; a start/stop component.

A rollout pins its champion (the default version when it starts) as the default, so
a version the directory poller loads meanwhile does not take the champion's place
mid-experiment; ending it puts the previous pin back. The registry tells it of every
change: when the challenger goes (unloaded, or its folder removed) the rollout ends
(`challenger_gone`) and the champion keeps serving; when the default version changes
or goes it ends too (`champion_changed`). Rollouts live in the process's memory, as
the default-version pin does: a restart starts without them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.errors import InvalidInputError, ModelNotFoundError, Problem
from tabserve.service.core.registry import ModelVersion
from tabserve.service.core.rollout.compatibility import check_compatible
from tabserve.service.core.rollout.errors import RolloutNotFoundError
from tabserve.service.core.rollout.metrics import RolloutMetrics
from tabserve.service.core.rollout.plan import Mode, Rollout
from tabserve.service.core.rollout.settings import RolloutSettings
from tabserve.service.core.rollout.shadow import ShadowRunner
from tabserve.service.core.served import ServedModel

log = logging.getLogger("tabserve.rollout")


class Rollouts:
    """The rollouts of one app: what the admin routes change and the data plane reads."""

    def __init__(
        self,
        dataplane: DataPlane,
        settings: RolloutSettings,
        metrics: RolloutMetrics,
        *,
        coin: Callable[[], float] = random.random,
    ) -> None:
        self.dataplane = dataplane
        self.registry = dataplane.registry
        self.metrics = metrics
        self.coin = coin
        self.shadow = ShadowRunner(dataplane, metrics, settings)
        self._active = dataplane.rollouts
        self.registry.listeners.append(self._follow)

    async def start(self) -> None:
        """Start the shadow workers."""
        await self.shadow.start()

    async def stop(self) -> None:
        """Stop the shadow workers (queued copies are dropped)."""
        await self.shadow.stop()

    def get(self, model: str) -> Rollout:
        """The model's rollout; RolloutNotFoundError (or ModelNotFoundError) if none."""
        self.registry.versions(model)
        rollout = self._active.get(model)
        if rollout is None:
            raise RolloutNotFoundError(
                f"model {model!r} has no rollout; start one with PUT /models/{model}/rollout"
            )
        return rollout

    def begin(self, model: str, challenger: int, mode: Mode, share: float | None) -> Rollout:
        """Start (or replace) the model's rollout against its default version."""
        champion = self.registry.ready(model)
        contender = self._challenger(model, champion, challenger)
        _check_share(mode, share)
        check_compatible(champion, contender)
        current = self._active.get(model)
        pinned_before = current.pinned_before if current else self.registry.pinned(model)
        if current is not None:
            self._retire(current)
        self.registry.set_default(model, champion.version)
        rollout = Rollout(
            model,
            champion.version,
            challenger,
            mode,
            share or 0.0,
            time.time(),
            pinned_before,
            self.metrics.arms(model, champion.version, challenger),
            self.coin,
        )
        self._install(rollout)
        log.info(
            "rollout of %s: version %s challenges version %s (%s%s)",
            model,
            challenger,
            champion.version,
            mode.value,
            f", share {rollout.share}" if mode is Mode.SPLIT else "",
        )
        return rollout

    def end(self, model: str) -> Rollout:
        """End the model's rollout; the champion keeps serving (the previous pin comes back)."""
        rollout = self.get(model)
        self._finish(rollout, "deleted", restore=True)
        return rollout

    def promote(self, model: str) -> Rollout:
        """The challenger becomes the (pinned) default version; the rollout ends."""
        rollout = self.get(model)
        self.registry.ready(model, rollout.challenger)
        self._finish(rollout, "promoted", restore=False)
        self.registry.set_default(model, rollout.challenger)
        return rollout

    def _challenger(self, model: str, champion: ServedModel, version: int) -> ServedModel:
        """The challenger's served model, or InvalidInputError naming what is wrong."""
        entries = {m.version: m for m in self.registry.versions(model)}
        entry = entries.get(version)
        listed = ", ".join(map(str, entries))
        if entry is None:
            expected = f"a loaded version of model {model!r} ({listed})"
            raise InvalidInputError.of(
                "unknown_version", [Problem("challenger", expected, version)]
            )
        if version == champion.version:
            expected = (
                f"a version other than the champion, version {version} "
                "(the default version, which the challenger is compared with)"
            )
            raise InvalidInputError.of("same_version", [Problem("challenger", expected, version)])
        if entry.served is None:
            expected = f"a version that is ready (version {version} is {_why(entry)})"
            raise InvalidInputError.of("not_ready", [Problem("challenger", expected, version)])
        return entry.served

    def _install(self, rollout: Rollout) -> None:
        self._active[rollout.model] = rollout
        if rollout.mode is Mode.SHADOW:
            self.shadow.shadows[rollout.model] = rollout
        self._listen_if_shadowing()
        self.metrics.active.labels(*_gauge_labels(rollout)).set(1)

    def _retire(self, rollout: Rollout) -> None:
        """Take a rollout out of routing and shadowing (ending or being replaced)."""
        if self._active.get(rollout.model) is rollout:
            del self._active[rollout.model]
        if self.shadow.shadows.get(rollout.model) is rollout:
            del self.shadow.shadows[rollout.model]
        self._listen_if_shadowing()
        # 0, not removed: with several workers the value lives in a per-process file,
        # which `remove` would leave at 1
        self.metrics.active.labels(*_gauge_labels(rollout)).set(0)

    def _finish(self, rollout: Rollout, reason: str, *, restore: bool) -> None:
        self._retire(rollout)
        self.metrics.ended.labels(rollout.model, reason).inc()
        log.info(
            "rollout of %s ended (%s): version %s serves by default",
            rollout.model,
            reason,
            rollout.challenger if reason == "promoted" else rollout.champion,
        )
        if restore and self.registry.pinned(rollout.model) == rollout.champion:
            try:
                self.registry.set_default(rollout.model, rollout.pinned_before)
            except ModelNotFoundError:  # the version pinned before is gone
                self.registry.set_default(rollout.model, None)

    def _follow(self, model: str) -> None:
        """End the model's rollout if a registry change took an arm away."""
        rollout = self._active.get(model)
        if rollout is None:
            return
        try:
            default = self.registry.get(model)
        except ModelNotFoundError:
            default = None
        if default is None or default.version != rollout.champion or not default.ready:
            self._finish(rollout, "champion_changed", restore=False)
            return
        try:
            challenger = self.registry.get(model, rollout.challenger)
        except ModelNotFoundError:
            challenger = None
        if challenger is None or not challenger.ready:
            log.warning("rollout of %s: challenger version %s is gone", model, rollout.challenger)
            self._finish(rollout, "challenger_gone", restore=True)

    def _listen_if_shadowing(self) -> None:
        """The runner listens to answered requests only while some shadow rollout runs."""
        listeners = self.dataplane.request_listeners
        listening = self.shadow in listeners
        if self.shadow.shadows and not listening:
            listeners.append(self.shadow)
        elif not self.shadow.shadows and listening:
            listeners.remove(self.shadow)


def _gauge_labels(rollout: Rollout) -> tuple[str, str, str, str]:
    return (rollout.model, str(rollout.champion), str(rollout.challenger), rollout.mode.value)


def _check_share(mode: Mode, share: float | None) -> None:
    if mode is Mode.SPLIT and share is None:
        problem = Problem("share", "a fraction in [0, 1] of the requests for the challenger", None)
        raise InvalidInputError.of("share", [problem])
    if mode is Mode.SHADOW and share is not None:
        problem = Problem("share", "no share for a shadow (the challenger answers nothing)", share)
        raise InvalidInputError.of("share", [problem])


def _why(entry: ModelVersion) -> str:
    return entry.state.value + (f": {entry.error}" if entry.error else "")
