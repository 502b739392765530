"""Keys tabserve adds to ASGI scopes: shared by the server protocol and the web layer.

A neutral module (it imports nothing), so the HTTP protocol (`service/http_protocol.py`)
and the routes (`service/api/`) agree on the names without importing each other.
"""

from __future__ import annotations

CLIENT_LEFT = "tabserve.client_left"
"""Scope key: a callable telling, at no cost, whether the request's client has left."""
