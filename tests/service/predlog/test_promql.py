"""The PromQL of docs/prediction-log.md, run by promtool, against scikit-learn's numbers."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

DOC = Path(__file__).resolve().parents[3] / "docs" / "prediction-log.md"
PROMTOOL = shutil.which("promtool")
# A confusion matrix with a class never predicted right (c) and one that never occurs (d):
# scikit-learn's macro F1 averages over the classes seen as truth or prediction only.
CONFUSION = {
    ("a", "a"): 5,
    ("a", "b"): 2,
    ("b", "b"): 3,
    ("b", "a"): 1,
    ("b", "c"): 1,
    ("c", "a"): 2,
}
CLASSES = ["a", "b", "c", "d"]
STEP = 2.0**-30
TRUTH = [151.0, 75.0, 141.0, 206.0, 135.0]
PREDICTED = [160.5, 70.0, 150.0, 180.25, 135.0]


def documented_queries() -> list[str]:
    """The three ```promql blocks: accuracy, macro F1, MAE."""
    blocks = re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 3
    return [" ".join(b.split()) for b in blocks]


def counter(name: str, total: float, **labels: str) -> dict[str, str]:
    """A counter at 0, then at `total` for 30 minutes: increase over [1h] at 30m is `total`."""
    selector = ",".join(f'{k}="{v}"' for k, v in {"model": "m", "version": "1", **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": f"0 {total}x30"}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_documented_promql_matches_sklearn(tmp_path: Path) -> None:
    actual = [a for (a, p), n in CONFUSION.items() for _ in range(n)]
    predicted = [p for (a, p), n in CONFUSION.items() for _ in range(n)]
    series = [
        counter(
            "tabserve_feedback_confusion_total", CONFUSION.get((a, p), 0), actual=a, predicted=p
        )
        for a in CLASSES
        for p in CLASSES
    ]
    series += [
        counter("tabserve_feedback_correct_total", CONFUSION.get((c, c), 0), **{"class": c})
        for c in CLASSES
    ]
    series.append(counter("tabserve_feedback_rows_total", len(actual)))
    errors = sum(abs(t - p) for t, p in zip(TRUTH, PREDICTED, strict=True))
    series.append(counter("tabserve_feedback_absolute_error_total", errors, version="2"))
    series.append(counter("tabserve_feedback_rows_total", len(TRUTH), version="2"))
    accuracy, macro_f1, mae = documented_queries()
    expected = [
        (accuracy, "1", accuracy_score(actual, predicted)),
        (macro_f1, "1", f1_score(actual, predicted, average="macro")),
        (mae, "2", mean_absolute_error(TRUTH, PREDICTED)),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        # promtool compares exactly; sums in another order differ in the
                        # last bit, so both sides are rounded to 2^-30 (exact in binary)
                        "expr": f"round({expr}, {STEP!r})",
                        "eval_time": "30m",
                        "exp_samples": [
                            {
                                "labels": f'{{model="m", version="{version}"}}',
                                "value": math.floor(value / STEP + 0.5) * STEP,
                            }
                        ],
                    }
                    for expr, version, value in expected
                ],
            }
        ],
    }
    path = tmp_path / "quality.test.yml"
    path.write_text(yaml.safe_dump(tests))
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 0 < expected[1][2] < expected[0][2] < 1  # F1 below accuracy here: c drags it down
