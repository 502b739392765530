"""`python -m bench.versus --before DIR`: two source trees served in turn, one table.

Each round serves the `--before` tree (a checkout of an earlier commit, for example
`git archive <commit> | tar -x -C DIR`) and then this one, or the other way round
(alternating, so drift in the machine's load favours neither), each pinned to CPU 0
with wrk on CPU 1, and measures the one-row V2 and records scenarios of `make bench`.
The table gives each tree's median requests/s over the rounds and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.models import ensure_models
from bench.run import RECORDS, ROOT, SCENARIOS, Scenario, measure, process, progress

CHOSEN: list[Scenario] = [SCENARIOS[1], SCENARIOS[3], RECORDS]


def main(argv: list[str] | None = None) -> int:
    """Serve both trees `--rounds` times each, interleaved; print the medians."""
    parser = argparse.ArgumentParser(prog="bench.versus", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the earlier source tree")
    parser.add_argument("--after", type=Path, default=ROOT, help="the later tree (this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "build" / "bench-models")
    args = parser.parse_args(argv)
    ensure_models(args.models_dir)
    work = Path(tempfile.mkdtemp(prefix="tabserve-versus-"))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    figures: dict[tuple[str, str], list[float]] = {}
    port = 8800
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for label in order:
            tree = trees[label]
            port += 1
            command = [sys.executable, "-m", "tabserve.service", "serve"]
            command += ["--models-dir", str(args.models_dir), "--port", str(port)]
            env = {"PYTHONPATH": str(tree)}
            log = work / f"{label}-{round_}.log"
            # Started in the tree: `python -m` puts the working directory first on sys.path.
            with process(command, port, "0", log, env, cwd=tree) as url:
                for scenario in CHOSEN:
                    row = measure(url, scenario, label, args.seconds, work, 1)
                    figures.setdefault((scenario.label, label), []).append(row.requests_per_s)
    progress(f"trees: {trees}")
    print(render(figures))
    return 0


def render(figures: dict[tuple[str, str], list[float]]) -> str:
    """Median requests/s of each tree per scenario, every round's figure, and after/before."""
    lines = [
        "| scenario | before req/s (median) | after req/s (median) | after / before | rounds |",
        "|---|---:|---:|---:|---|",
    ]
    for scenario in CHOSEN:
        before = figures[(scenario.label, "before")]
        after = figures[(scenario.label, "after")]
        ratio = statistics.median(after) / statistics.median(before)
        rounds = "; ".join(f"{b:,.0f} / {a:,.0f}" for b, a in zip(before, after, strict=True))
        lines.append(
            f"| {scenario.label} | {statistics.median(before):,.0f} | "
            f"{statistics.median(after):,.0f} | {ratio:.2f} | {rounds} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
