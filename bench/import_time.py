"""How long `tabserve import` takes for a 100-tree model and its CSV sample.

    python -m bench.import_time [--rows 5000] [--trees 100] [--runs 5]

Prints figures; asserts nothing. Each family (random forest, hist gradient boosting,
and XGBoost / LightGBM when installed) is fitted with 100 trees on a generated
DataFrame, pickled, and its training data written to CSV. Two times, medians of
`--runs`: the whole command as a user runs it (`tabserve import` in a new process:
interpreter and imports included), and the import itself in this process (read the
file and the CSV, the checks, statistics, metrics, writing the version).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from tabserve.training.import_cli import main as import_main


def families(trees: int) -> dict[str, Callable[[], Any]]:
    """Estimators with `trees` trees, by name; boosters only when their library is installed."""
    found: dict[str, Callable[[], Any]] = {
        "random_forest": lambda: RandomForestClassifier(trees, max_depth=10, random_state=0),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=trees),
    }
    try:
        import xgboost

        found["xgboost"] = lambda: xgboost.XGBClassifier(n_estimators=trees, max_depth=6)
    except ImportError:
        pass
    try:
        import lightgbm

        found["lightgbm"] = lambda: lightgbm.LGBMClassifier(n_estimators=trees, verbose=-1)
    except ImportError:
        pass
    return found


def data(rows: int) -> tuple[pd.DataFrame, pd.Series]:
    """20 numeric features and a binary target, as a DataFrame."""
    x, y = make_classification(rows, 20, n_informative=10, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    return frame, pd.Series(np.asarray(y), name="label")


def timed(runs: int, call: Callable[[int], None]) -> float:
    """Median seconds of `call(run)` over `runs` runs."""
    seconds = []
    for run in range(runs):
        started = time.perf_counter()
        call(run)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    """Fit each family, then time importing it both ways."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    x, y = data(args.rows)
    print(f"tabserve import, {args.trees} trees, {args.rows} rows x 20 features, CSV sample")
    print(f"{'model':24} {'file':>9} {'command':>9} {'in-process':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sample = root / "train.csv"
        pd.concat([x, y], axis=1).to_csv(sample, index=False)
        for name, make in families(args.trees).items():
            path = root / f"{name}.pkl"
            joblib.dump(make().fit(x, y), path)
            common = [str(path), "--data", str(sample), "--target", "label"]

            def command(run: int, name: str = name, common: list[str] = common) -> None:
                argv = [*common, "--name", f"{name}-cmd", "--models-dir", str(root / "m")]
                done = subprocess.run(
                    [sys.executable, "-m", "tabserve.service", "import", *argv],
                    check=False,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise SystemExit(f"tabserve import of {name} failed: {done.stderr}")

            def in_process(run: int, name: str = name, common: list[str] = common) -> None:
                argv = [*common, "--name", f"{name}-lib", "--models-dir", str(root / "m")]
                with contextlib.redirect_stdout(io.StringIO()):
                    status = import_main(argv)
                if status != 0:
                    raise SystemExit(f"import of {name} failed")

            whole = timed(args.runs, command)
            inner = timed(args.runs, in_process)
            size = path.stat().st_size / 1024**2
            print(f"{name:24} {size:>6.1f} MB {whole:>8.2f}s {inner:>10.2f}s")


if __name__ == "__main__":
    main()
