"""Start/stop components: what runs while the app serves, started in order, stopped in reverse.

`create_app` lists the components (model loading, the inference pool, the prediction
log, the payload sink, drift, the directory poller, ...); its lifespan only runs
`running(components)`. A component that started is stopped even if a later one
fails to start or the app fails while serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol


class Component(Protocol):
    """Something with a life inside the app's: started before serving, stopped after."""

    async def start(self) -> None:
        """Begin (threads, timers, listeners); called on the event loop."""

    async def stop(self) -> None:
        """End, releasing what `start` took; called on the event loop."""


@asynccontextmanager
async def running(components: Sequence[Component]) -> AsyncIterator[None]:
    """Start `components` in order; on exit stop the started ones in reverse order."""
    async with AsyncExitStack() as stack:
        for component in components:
            await component.start()
            stack.push_async_callback(component.stop)
        yield
