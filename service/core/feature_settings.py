"""The base of every feature's settings model: flat `TABSERVE_*` names, nested in code.

A feature (drift, the prediction log, the sink, streams, batching) declares its own
settings class with the environment prefix of its names, e.g. `TABSERVE_DRIFT_` for
`TABSERVE_DRIFT_WINDOW_SECONDS` -> `window_seconds`. A setting whose documented
name does not share the prefix (`TABSERVE_DATA_DIR` for the prediction log) names
it with `validation_alias`. `service.settings.Settings` nests one of each, so the
operator still sets flat environment variables while code reads `settings.drift`.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TABSERVE_"


def feature_config(prefix: str) -> SettingsConfigDict:
    """Model config of a feature whose environment names start with `prefix`."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True, populate_by_name=True)


class FeatureSettings(BaseSettings):
    """Settings of one feature; built from the environment like `Settings` itself."""

    model_config = feature_config(ENV_PREFIX)

    @classmethod
    def environment_names(cls) -> dict[str, str]:
        """Environment variable -> field: `TABSERVE_DRIFT_MIN_ROWS` -> `min_rows`."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        names = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            env = alias if isinstance(alias, str) else f"{prefix}{name}"
            names[env.upper()] = name
        return names

    @classmethod
    def flat_names(cls) -> dict[str, str]:
        """Flat keyword (the environment name without `TABSERVE_`, lower case) -> field.

        `Settings(drift_min_rows=10)` and `settings.model_copy(update={...})` accept
        these, as they did when every setting was a flat field.
        """
        return {
            env.removeprefix(ENV_PREFIX).lower(): field
            for env, field in cls.environment_names().items()
        }
