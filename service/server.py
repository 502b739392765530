"""Run the HTTP server: one uvicorn process, or gunicorn supervising uvicorn workers.

With several workers the app is built and its models are loaded in the gunicorn
master before the workers fork, so the workers share one copy of the models'
memory (copy-on-write) and start ready. Each worker drains on SIGTERM: readiness
turns false, connections are still accepted and answered (with `Connection:
close`) for `drain_keepalive_seconds`, then the listener closes (`http_listener.py`),
accepted requests (queued ones included) finish within `shutdown_grace_seconds`,
and the process exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import uvicorn
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger
from prometheus_client import multiprocess
from uvicorn.config import LOGGING_CONFIG
from uvicorn_worker import UvicornWorker

from tabserve.service.app import app_from_environment, create_app
from tabserve.service.http_guard import ConnectionLimits, GuardedHttpProtocol
from tabserve.service.http_listener import DrainingServer
from tabserve.service.http_protocol import TabserveHttpProtocol
from tabserve.service.logs import JsonFormatter, server_log_config
from tabserve.service.multiproc import ENV
from tabserve.service.settings import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain."""
    if settings.workers == 1:
        return _single_process(settings)
    if not os.environ.get(ENV):
        raise RuntimeError(f"{ENV} must be set (prepare_metrics_folder) before serving workers")
    _Supervisor(settings).run()
    return 0


def _single_process(settings: Settings) -> int:
    config = uvicorn.Config(
        app_from_environment,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        http=http_protocol(settings),
        server_header=False,
        log_config=server_log_config(settings.log_format, settings.log_level) or LOGGING_CONFIG,
    )
    server = DrainingServer(config, settings.drain_keepalive_seconds)
    # uvicorn re-raises the SIGTERM it caught once it has drained; with this no-op
    # handler in place that re-raise returns, so a clean drain exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    return 0 if server.started else 1


class TabserveWorker(UvicornWorker):  # type: ignore[misc]
    """A gunicorn worker running uvicorn with uvloop/httptools and our drain period."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012  (the base class's own convention)
        "loop": "auto",
        "http": "auto",
        "access_log": False,
        "server_header": False,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout
        # `self.app` is the _Supervisor that forked this worker, with its Settings.
        self.config.http = http_protocol(self.app.settings)

    async def _serve(self) -> None:
        """uvicorn_worker's own, with a server that keeps accepting through the drain window."""
        self.config.app = self.wsgi
        server = DrainingServer(self.config, self.app.settings.drain_keepalive_seconds)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn runs: guarded (head size, arrival time, drain), and
    writing each answer in one piece unless `coalesce_writes` is off."""
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        read_timeout_seconds=settings.request_read_timeout_seconds,
        drain_window_seconds=settings.drain_keepalive_seconds,
    )
    base = TabserveHttpProtocol if settings.coalesce_writes else GuardedHttpProtocol
    return base.configured(limits)


class JsonGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger, writing its lines (and, through the workers, uvicorn's) as JSON."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


def _worker_exited(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (in-flight, queue) so totals stay true."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class _Supervisor(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code from Settings (no config file)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        for key, value in {
            "bind": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "worker_class": f"{TabserveWorker.__module__}.{TabserveWorker.__name__}",
            "preload_app": True,
            "graceful_timeout": settings.shutdown_grace_seconds,
            "timeout": 120,
            "keepalive": 5,
            "loglevel": settings.log_level,
            "child_exit": _worker_exited,
            # No control socket: nothing here uses gunicornc, and it wants a writable HOME
            # (read-only in the image and the Deployment), logging an error at every start.
            "control_socket_disable": True,
        }.items():
            self.cfg.set(key, value)
        if settings.log_format == "json":
            self.cfg.set("logger_class", JsonGunicornLogger)

    def load(self) -> Any:
        return create_app(self.settings, preload=True)
