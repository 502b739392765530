"""Check the listening address before anything slow: a taken port fails in a second.

uvicorn and gunicorn bind only after the app is built, so without this check
every model loads first and then `[Errno 98] address already in use` ends the
start with no hint.
"""

from __future__ import annotations

import errno
import socket


class PortUnavailableError(Exception):
    """The server cannot listen on the address it was given; the message says what to do."""


def ensure_can_listen(host: str, port: int) -> None:
    """Bind `host:port` once and let it go, or raise PortUnavailableError saying why.

    SO_REUSEADDR as the servers set it, so a port left in TIME_WAIT by a server
    that just stopped is not mistaken for a taken one.
    """
    if port == 0:
        return  # any free port: nothing can be taken
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortUnavailableError(_advice(host, port, exc)) from exc


def _advice(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    other = port + 1 if port < 65535 else 8000
    choose = (
        f"choose another port: tabserve serve --port {other}, "
        f"TABSERVE_PORT={other} make serve, or make serve PORT={other}"
    )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} (another server, perhaps tabserve, is listening there; "
            f"`ss -ltnp 'sport = :{port}'` shows which process); {choose}"
        )
    if exc.errno == errno.EACCES:
        return f"{where} (ports below 1024 need privileges); {choose}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where} (no interface has that address; 127.0.0.1 or 0.0.0.0 always work)"
    return f"{where}; {choose}"
