"""Access-control settings (`TABSERVE_AUTH_*`): the keys file and what stays open."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class AuthSettings(FeatureSettings):
    """API keys with scopes; off (every route open, nothing added) without a keys file."""

    model_config = feature_config("TABSERVE_AUTH_")

    keys_file: Path | None = Field(
        default=None,
        description=(
            "JSON file of API keys: name, sha256 of the key, scopes (`tabserve keys add` "
            "writes it). Set: every route but the health probes (and /metrics and the docs "
            "while open) needs `Authorization: Bearer <key>` with the route's scope. "
            "Unset: access control is off. A malformed file refuses to start."
        ),
    )
    check_seconds: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        description=(
            "How often, at most, a request checks whether the keys file changed (its "
            "inode, size and modification time), rereading it if so: keys rotate "
            "without a restart. A bad reread keeps the previous keys (logged and counted)."
        ),
    )
    metrics_open: bool = Field(
        default=True,
        description="`/metrics` answers without a key; false: it needs the `read` scope.",
    )
    docs_open: bool = Field(
        default=True,
        description=(
            "`/docs`, `/redoc`, their assets and `/openapi.json` answer without a key (the "
            "document lists each served model's feature names); false: they need `read`."
        ),
    )
