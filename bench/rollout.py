"""What a rollout costs a request: none (the default) vs a split vs a shadow.

`python -m bench.rollout [--requests 10000] [--rounds 3]`. Two models folders'
worth of work in one run, so the ratios compare like with like:

1. the data plane's lookup alone, ns per call: `DataPlane.model` (what requests
   used before rollouts), then `DataPlane.route` with no rollout (bare, and as the
   HTTP routes and lanes call it, with `rollout_key` and the scope), with a split
   (a coin per request), a split with a sticky key (a hash per request) and a
   shadow. Calls alternate by round; CPU time (`time.thread_time`).
2. whole V2 requests inside the app (`bench.inprocess.drive`: the real app and
   lifespan, no sockets), µs of CPU per request, with no rollout, a split at 0.5
   and a shadow, interleaved by round. A shadow predicts every request twice (the
   champion's call and the challenger's copy), so its figure includes the
   challenger's work: that is what it takes from the server's core.

Two versions of a logistic regression on the benchmark data (`bench.models`) are
trained into a temporary folder first (a few seconds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench.inprocess import drive
from bench.models import dataset
from bench.run import v2_body
from tabserve.service.api.rollout_key import rollout_key
from tabserve.service.app import create_app
from tabserve.service.core.rollout.plan import Mode
from tabserve.service.settings import Settings
from tabserve.service.state import AppState
from tabserve.training.pipeline import TrainRequest, train

MODEL = "ab"
LOOKUPS = 1_000_000


def two_versions(root: Path) -> Path:
    """`ab` v1 and v2: the same logistic regression trained twice (same schema)."""
    data = dataset()
    for _ in range(2):
        train(TrainRequest(data, "logistic_regression", root, MODEL))
    return root


def lookup_ns(state: AppState, rounds: int) -> dict[str, list[float]]:
    """ns of CPU per lookup, by configuration, alternating every round."""
    dataplane, rollouts = state.dataplane, state.rollouts

    def key(source: str) -> str:
        return source

    scope = {"headers": [(b"host", b"bench"), (b"content-type", b"application/json")]}
    cases: dict[str, tuple[Callable[[], object], Mode | None]] = {
        "model() (before rollouts)": (lambda: dataplane.model(MODEL), None),
        "route(), no rollout": (lambda: dataplane.route(MODEL), None),
        "route(), no rollout, as the lanes call it": (
            lambda: dataplane.route(MODEL, None, rollout_key, scope),
            None,
        ),
        "route(), split 0.5": (lambda: dataplane.route(MODEL), Mode.SPLIT),
        "route(), split 0.5, sticky key": (
            lambda: dataplane.route(MODEL, None, key, "user-42"),
            Mode.SPLIT,
        ),
        "route(), shadow": (lambda: dataplane.route(MODEL), Mode.SHADOW),
    }
    found: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (call, mode) in cases.items():
            if mode is not None:
                rollouts.begin(MODEL, 1, mode, 0.5 if mode is Mode.SPLIT else None)
            started = time.thread_time()
            for _ in range(LOOKUPS):
                call()
            found[name].append((time.thread_time() - started) / LOOKUPS * 1e9)
            if mode is not None:
                rollouts.end(MODEL)
    return found


async def requests_us(
    app: object, state: AppState, args: argparse.Namespace
) -> dict[str, list[float]]:
    """µs of CPU per V2 request, by configuration, alternating every round."""
    body = v2_body(1)
    path = f"/v2/models/{MODEL}/infer"
    configurations: dict[str, Mode | None] = {
        "no rollout": None,
        "split 0.5": Mode.SPLIT,
        "shadow": Mode.SHADOW,
    }
    await drive(app, path, body, args.requests // 4, args.concurrency)  # warm-up
    found: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, mode in configurations.items():
            if mode is not None:
                state.rollouts.begin(MODEL, 1, mode, 0.5 if mode is Mode.SPLIT else None)
            found[name].append(await _timed(app, state, path, body, args))
            if mode is not None:
                state.rollouts.end(MODEL)
    return found


async def _timed(
    app: object, state: AppState, path: str, body: bytes, args: argparse.Namespace
) -> float:
    """CPU per request, the shadow copies' work included (waited for before the clock stops)."""
    started = time.process_time()
    await drive(app, path, body, args.requests, args.concurrency)
    await state.rollouts.shadow.join()
    spent: float = time.process_time() - started
    return spent / int(args.requests)


def main(argv: list[str] | None = None) -> int:
    """Train the two versions, measure, print one Markdown table per part."""
    parser = argparse.ArgumentParser(prog="bench.rollout", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    models = two_versions(Path(tempfile.mkdtemp(prefix="tabserve-bench-rollout-")))
    settings = Settings(models_dir=models, log_level="warning", grpc_port=0)
    app = create_app(settings)
    state: AppState = app.state.tabserve

    async def run() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        async with app.router.lifespan_context(app):
            lookups = lookup_ns(state, args.rounds)
            return lookups, await requests_us(app, state, args)

    lookups, requests = uvloop.run(run())
    _table("data-plane lookup", "ns/call", lookups, scale=1.0)
    _table(f"V2 infer, 1 row, {args.concurrency} concurrent", "µs CPU/request", requests, 1e6)
    return 0


def _table(title: str, unit: str, found: dict[str, list[float]], scale: float) -> None:
    first = min(found[next(iter(found))])
    print(f"\n| {title} | {unit} (rounds) | best | vs first row |\n|---|---|---|---|")
    for name, values in found.items():
        shown = ", ".join(f"{v * scale:.1f}" for v in values)
        best = min(values)
        print(f"| {name} | {shown} | {best * scale:.1f} | {best / first:.2f}x |")


if __name__ == "__main__":
    raise SystemExit(main())
