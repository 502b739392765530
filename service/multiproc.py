"""The metrics folder shared by worker processes (prometheus_client multiprocess mode).

This module must not import prometheus_client: the folder has to be in the
environment before that library is first imported, because it picks its value
storage at import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_folder() -> Path | None:
    """Give the workers an empty folder; returns it if it was created here (to remove later)."""
    folder = os.environ.get(ENV)
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # files of a previous run would add up
            stale.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="tabserve-metrics-"))
    os.environ[ENV] = str(created)
    return created


def remove_metrics_folder(created: Path | None) -> None:
    """Remove a folder `prepare_metrics_folder` created."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        os.environ.pop(ENV, None)
