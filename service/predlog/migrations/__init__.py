"""Alembic migrations of the prediction log, shipped with the package (see `migrate`)."""
