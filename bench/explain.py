"""Cost of exact explanations, and proof that predictions do not pay for them.

    taskset -c 1 python -m bench.explain [--requests 200] [--rounds 3]

Serves the benchmark models (`bench.models`: 20 features, 3 classes, 20,000 rows;
forest of 100 trees of depth 12, hist gradient boosting of 100 iterations, logistic
regression) plus XGBoost (100 trees, when installed) in the real app, and calls it as
an ASGI app in this process (no sockets; `bench.inprocess.drive`). Prints, per model:

* the first explain call of a version (it reads the artifact again and builds and
  checks the explainer; the first tree model's also imports shap), wall time;
* µs of CPU per `POST /models/{m}/explain` call of 1 and of 64 rows, one at a time;
* µs of CPU per one-row `POST /models/forest/predict` (64 concurrent) in an app with
  explanations on, after explaining, and in one with them off, in alternating rounds:
  the predict path is the same code either way, so the two should differ by noise only.

Asserts nothing: figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.inprocess import drive
from bench.models import dataset, ensure_models, sample_rows
from bench.run import ROOT
from tabserve.artifact.repository import list_versions
from tabserve.service.app import create_app
from tabserve.service.settings import Settings
from tabserve.training.pipeline import TrainRequest, train

MODELS = ("forest", "hgb", "logistic", "xgboost")
App = Any


def ensure_xgboost(models_dir: Path) -> bool:
    """Train the XGBoost benchmark model if xgboost is installed; False if it is not."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    if not list_versions(models_dir, "xgboost"):
        print("training benchmark model xgboost ...", flush=True)
        params: dict[str, Any] = {"n_estimators": 100, "max_depth": 6}
        train(TrainRequest(dataset(), "xgboost", models_dir, "xgboost", params=params))
    return True


def records(rows: int) -> bytes:
    """`rows` records of the benchmark's distribution, as the explain and predict body."""
    values = sample_rows(rows)
    return orjson.dumps([{f"x{i}": float(v) for i, v in enumerate(row)} for row in values])


async def first_call(app: App, model: str) -> float:
    """Wall seconds of a version's first explain call (it builds the explainer)."""
    started = time.perf_counter()
    await drive(app, f"/models/{model}/explain", records(1), 1, 1)
    return time.perf_counter() - started


async def explain_costs(app: App, models: list[str], args: argparse.Namespace) -> None:
    print(f"shap imported before any explain call: {'shap' in sys.modules}")
    for model in models:
        first = await first_call(app, model)
        cells = []
        for rows in (1, 64):
            path, body = f"/models/{model}/explain", records(rows)
            requests = max(4, args.requests // (8 if rows > 1 else 1))
            await drive(app, path, body, max(2, requests // 4), 1)  # warm-up
            spent = [await drive(app, path, body, requests, 1) for _ in range(args.rounds)]
            cells.append(f"{rows} row(s): " + ", ".join(f"{s * 1e6:,.0f}" for s in spent))
        print(f"{model:9s} first call {first * 1e3:,.0f} ms | " + " | ".join(cells) + " µs/call")


async def predict_cost(app: App, args: argparse.Namespace) -> float:
    body = records(1)
    return await drive(app, "/models/forest/predict", body, args.predict_requests, 64)


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="bench.explain", description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--predict-requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    models = [m for m in MODELS if m != "xgboost" or ensure_xgboost(args.models_dir)]
    settings = Settings(models_dir=args.models_dir, log_level="warning")
    on = create_app(settings)
    off = create_app(settings.model_copy(update={"explain_enabled": False}))

    async def run() -> None:
        async with on.router.lifespan_context(on), off.router.lifespan_context(off):
            await explain_costs(on, models, args)
            await predict_cost(on, args)  # warm-up, both apps
            await predict_cost(off, args)
            with_feature, without = [], []
            for _ in range(args.rounds):
                with_feature.append(await predict_cost(on, args))
                without.append(await predict_cost(off, args))
            show = ", ".join
            print(
                "predict (forest, 1 row, 64 concurrent), µs/request: explanations on "
                f"(explainer built): {show(f'{s * 1e6:.1f}' for s in with_feature)}; "
                f"off: {show(f'{s * 1e6:.1f}' for s in without)}"
            )

    uvloop.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
