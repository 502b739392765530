"""Counter totals as a scrape would see them: this process's, or every worker's summed.

With several worker processes (prometheus_client multiprocess mode) each worker
writes its counters to its own file; reading all the counter files gives the
totals of every worker, which is what `/metrics` exports and what the drift
window is computed from, whichever worker answers.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import Counter, multiprocess

from tabserve.service.core.metrics import multiprocess_dir

Labels = tuple[tuple[str, str], ...]
"""A sample's labels, sorted by name."""


def counter_totals(counters: list[Counter]) -> dict[str, dict[Labels, float]]:
    """Current value of every series of `counters`, by metric name and labels."""
    names = {next(iter(c.describe())).name for c in counters}
    found: dict[str, dict[Labels, float]] = {name: {} for name in names}
    folder = multiprocess_dir()
    if folder:
        files = glob.glob(os.path.join(folder, "counter_*.db"))
        families = multiprocess.MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
    else:
        families = [family for counter in counters for family in counter.collect()]
    for family in families:
        if family.name not in found:
            continue
        series = found[family.name]
        for sample in family.samples:
            if sample.name.endswith("_total"):
                series[tuple(sorted(sample.labels.items()))] = sample.value
    return found
