"""Size and load time of one model in each artifact format (joblib vs skops).

    python bench/artifact_formats.py [--dataset breast_cancer] [--model random_forest]

Prints figures; asserts nothing. Load time is `load_artifact` end to end (read,
sha256, version check, deserialize; for skops also the type audit and the tree
index checks), the median of several runs in this process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tabserve.artifact.store import load_artifact
from tabserve.training.datasets import load_bundled
from tabserve.training.pipeline import TrainRequest, train


def main() -> None:
    """Train one model in both formats, then time loading each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast_cancer")
    parser.add_argument("--model", default="random_forest")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    data = load_bundled(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for fmt in ("joblib", "skops"):
            result = train(TrainRequest(data, args.model, root, fmt, artifact_format=fmt))
            folder = root / fmt / "1"
            load_artifact(folder, root=root)  # warm imports and the page cache
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                load_artifact(folder, root=root)
                times.append(time.perf_counter() - started)
            size = result.manifest.artifact.size_bytes
            rows.append((fmt, size, statistics.median(times)))
        print(f"{args.model} on {args.dataset} ({result.manifest.estimator.class_name})")
        print(f"{'format':8} {'size':>12} {'load (median)':>15}")
        for fmt, size, seconds in rows:
            print(f"{fmt:8} {size / 1024:>9.0f} KiB {seconds * 1000:>12.1f} ms")
        (_, jsize, jtime), (_, ssize, stime) = rows
        print(f"skops / joblib: size x{ssize / jsize:.2f}, load time x{stime / jtime:.1f}")


if __name__ == "__main__":
    main()
