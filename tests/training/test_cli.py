"""`python -m tabserve.training`: end to end in a subprocess, streams, every bad input's message."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tabserve.artifact.repository import list_models
from tabserve.artifact.store import load_artifact

WriteCsv = Callable[[str, str], Path]

STEPS = [
    "loading data",
    "splitting 150 rows (test size 0.2)",
    "fitting RandomForestClassifier on 120 rows",
    "evaluating on 30 held-out rows",
    "exporting to {models}/iris",
]


def test_end_to_end_progress_on_stderr_metrics_on_stdout(run_cli: Any, tmp_path: Path) -> None:
    models = tmp_path / "out" / "models"
    result = run_cli(
        "--dataset",
        "iris",
        "--model",
        "random_forest",
        "--param",
        "n_estimators=10",
        "--models-dir",
        str(models),
    )
    assert result.code == 0, result.stderr

    loaded = load_artifact(models / "iris" / "1")
    manifest = loaded.manifest
    assert list_models(models) == {"iris": [1]}

    stdout = result.stdout.splitlines()
    assert stdout[0] == "model iris version 1 (RandomForestClassifier)"
    assert re.fullmatch(r"metric +value", stdout[1])
    assert re.fullmatch(r"-+  -+", stdout[2])
    assert [line.split() for line in stdout[3:6]] == [
        [name, f"{value:.4f}"] for name, value in manifest.metrics.items()
    ]
    assert [line.split()[0] for line in stdout[3:6]] == ["accuracy", "f1_macro", "roc_auc"]
    assert stdout[6] == (
        f"saved to {models / 'iris' / '1'} (sha256 {manifest.artifact.sha256[:12]}...)"
    )
    assert len(stdout) == 7
    assert "[" not in result.stdout

    # every progress line is "[k/5] step ...", "[k/5] step done (Ns)" or a tick "[k/5] step ... Ns"
    labels = [s.format(models=models) for s in STEPS]
    stderr = result.stderr.splitlines()
    assert stderr
    starts, dones = [], []
    for line in stderr:
        match = re.fullmatch(r"\[(\d)/5\] (.+?)( \.\.\.| \.\.\. \d+s| done \(\d+\.\ds\))", line)
        assert match, line
        step, label, suffix = int(match[1]), match[2], match[3]
        assert label == labels[step - 1], line
        if suffix == " ...":
            starts.append(step)
        elif suffix.startswith(" done"):
            dones.append(step)
    assert starts == [1, 2, 3, 4, 5]
    assert dones == [1, 2, 3, 4, 5]
    assert stderr[0] == "[1/5] loading data ..."
    assert re.fullmatch(r"\[5/5\] exporting to .+ done \(\d+\.\ds\)", stderr[-1])


def test_quiet_prints_no_progress(call_cli: Any, models_dir: Path) -> None:
    result = call_cli(
        "--dataset", "iris", "--model", "logistic_regression", "--models-dir", str(models_dir)
    )
    assert result.code == 0
    assert result.stderr.startswith("[1/5] loading data ...\n")
    quiet = call_cli(
        "--dataset",
        "iris",
        "--model",
        "logistic_regression",
        "--models-dir",
        str(models_dir),
        "--quiet",
    )
    assert quiet.code == 0
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("model iris version 2 (LogisticRegression)\n")


def test_name_seed_and_test_size_options(call_cli: Any, models_dir: Path) -> None:
    result = call_cli(
        "--dataset",
        "wine",
        "--model",
        "random_forest",
        "--param",
        "n_estimators=5",
        "--name",
        "wine-small",
        "--seed",
        "7",
        "--test-size",
        "0.5",
        "--models-dir",
        str(models_dir),
        "--quiet",
    )
    assert result.code == 0, result.stderr
    manifest = load_artifact(models_dir / "wine-small" / "1").manifest
    assert manifest.name == "wine-small"
    assert manifest.training.seed == 7
    assert manifest.training.test_size == 0.5
    assert (manifest.training.train_rows, manifest.training.test_rows) == (89, 89)
    assert manifest.estimator.params["random_state"] == 7


def test_name_overrides_a_csv_file_name_that_is_not_a_model_name(
    call_cli: Any, write_csv: WriteCsv, models_dir: Path
) -> None:
    path = write_csv("my data.csv", "a,label\n1,x\n2,y\n3,x\n4,y\n5,x\n6,y\n7,x\n8,y\n")
    args = ["--csv", str(path), "--target", "label", "--model", "logistic_regression"]
    result = call_cli(*args, "--name", "my-data", "--models-dir", str(models_dir))
    assert result.code == 0, result.stderr
    assert list_models(models_dir) == {"my-data": [1]}


# bad inputs -----------------------------------------------------------------------------

PEOPLE_MIXED = """age,city,income,label
31,paris,1200,yes
45,berlin,1800,no
33,rome,1500,yes
22,paris,900,no
38,berlin,2100,yes
abc,rome,1300,no
29,paris,1000,yes
51,paris,2500,no
33,berlin,1750,yes
27,rome,1100,no
"""


def _csv(name: str, text: str) -> Callable[[WriteCsv], list[str]]:
    def make(write_csv: WriteCsv) -> list[str]:
        return ["--csv", str(write_csv(name, text))]

    return make


def _missing_file(write_csv: WriteCsv) -> list[str]:
    return ["--csv", str(write_csv("x.csv", "").parent / "nowhere.csv")]


def _args(*args: str) -> Callable[[WriteCsv], list[str]]:
    return lambda _: list(args)


GOOD_CSV = "a,label\n1,x\n2,y\n3,x\n4,y\n5,x\n6,y\n"

BAD_INPUTS: list[tuple[str, Callable[[WriteCsv], list[str]], list[str], str]] = [
    (
        "unknown-dataset",
        _args("--dataset", "titanic"),
        ["--model", "random_forest"],
        "unknown dataset 'titanic'; expected one of: iris, wine, breast_cancer, digits, "
        "diabetes (or --csv PATH --target COLUMN)",
    ),
    (
        "unknown-model",
        _args("--dataset", "iris"),
        ["--model", "svm"],
        "unknown model 'svm'; expected one of: logistic_regression, ridge, random_forest, "
        "hist_gradient_boosting",
    ),
    (
        "ridge-on-iris",
        _args("--dataset", "iris"),
        ["--model", "ridge"],
        "model 'ridge' does not do classification; for classification choose one of: "
        "logistic_regression, random_forest, hist_gradient_boosting",
    ),
    (
        "logistic-on-diabetes",
        _args("--dataset", "diabetes"),
        ["--model", "logistic_regression"],
        "model 'logistic_regression' does not do regression; for regression choose one of: "
        "ridge, random_forest, hist_gradient_boosting",
    ),
    (
        "unknown-hyperparameter",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--param", "n_trees=5"],
        "RandomForestClassifier has no hyperparameter 'n_trees'; it takes: bootstrap, ",
    ),
    (
        "bad-hyperparameter-type",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--param", "n_estimators=many"],
        "cannot fit RandomForestClassifier on sklearn:iris: The 'n_estimators' parameter of "
        "RandomForestClassifier must be an int in the range [1, inf). Got 'many' instead.",
    ),
    (
        "bad-hyperparameter-value",
        _args("--dataset", "diabetes"),
        ["--model", "ridge", "--param", "alpha=-1"],
        "cannot fit Ridge on sklearn:diabetes: The 'alpha' parameter of Ridge must be ",
    ),
    (
        "param-without-value",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--param", "n_estimators"],
        "hyperparameter 'n_estimators' is not KEY=VALUE",
    ),
    (
        "missing-csv",
        _missing_file,
        ["--target", "label", "--model", "random_forest"],
        "{dir}/nowhere.csv: file not found",
    ),
    (
        "missing-target-column",
        _csv("people.csv", PEOPLE_MIXED),
        ["--target", "outcome", "--model", "random_forest"],
        "{dir}/people.csv: target column 'outcome' not found; columns are: "
        "age, city, income, label",
    ),
    (
        "mixed-column",
        _csv("people.csv", PEOPLE_MIXED),
        ["--target", "label", "--model", "random_forest"],
        "{dir}/people.csv: column 'age' is 90% numbers but line 7 has non-numeric value 'abc'; "
        "fix the value, or pass --categorical age to treat the column as categories",
    ),
    (
        "numeric-override-bad-value",
        _csv("people.csv", PEOPLE_MIXED),
        ["--target", "label", "--model", "random_forest", "--numeric", "age"],
        "{dir}/people.csv: numeric column 'age' has non-numeric value 'abc' on line 7",
    ),
    (
        "override-unknown-column",
        _csv("good.csv", GOOD_CSV),
        ["--target", "label", "--model", "random_forest", "--categorical", "b"],
        "{dir}/good.csv: column 'b' given on the command line not found",
    ),
    (
        "empty-csv",
        _csv("empty.csv", ""),
        ["--target", "label", "--model", "random_forest"],
        "{dir}/empty.csv: empty file; expected a header row and data rows",
    ),
    (
        "header-only-csv",
        _csv("header.csv", "a,b,label\n"),
        ["--target", "label", "--model", "random_forest"],
        "{dir}/header.csv: no data rows after the header",
    ),
    (
        "single-class",
        _csv("one.csv", "a,label\n1,x\n2,x\n3,x\n4,x\n5,x\n"),
        ["--target", "label", "--model", "random_forest"],
        "csv:{dir}/one.csv: target 'label' has a single class 'x'; "
        "classification needs at least two",
    ),
    (
        "single-class-number",
        _csv("ones.csv", "a,label\n1,1\n2,1\n3,1\n4,1\n5,1\n"),
        ["--target", "label", "--model", "random_forest"],
        "csv:{dir}/ones.csv: target 'label' has a single class '1'; "
        "classification needs at least two",
    ),
    (
        "class-with-one-row",
        _csv("rare.csv", "a,label\n1,x\n2,x\n3,y\n4,y\n5,z\n"),
        ["--target", "label", "--model", "random_forest"],
        "csv:{dir}/rare.csv: class 'z' of target 'label' has one row; "
        "every class needs at least two to be split for evaluation",
    ),
    (
        "too-few-rows",
        _csv("tiny.csv", "a,label\n1,x\n2,y\n3,x\n"),
        ["--target", "label", "--model", "random_forest"],
        "csv:{dir}/tiny.csv: 3 rows is too few to train and evaluate",
    ),
    (
        "ragged-rows",
        _csv("ragged.csv", "a,b,label\n1,2,x\n3,4,y\n5,y\n6,7,x\n"),
        ["--target", "label", "--model", "random_forest"],
        "{dir}/ragged.csv: line 4 has 2 fields, the header has 3",
    ),
    (
        "csv-without-target",
        _csv("good.csv", GOOD_CSV),
        ["--model", "random_forest"],
        "--csv needs --target COLUMN: the column to predict",
    ),
    (
        "target-with-dataset",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--target", "species"],
        "--target, --task, --categorical and --numeric go with --csv only; "
        "dataset 'iris' has a fixed target and task",
    ),
    (
        "task-with-dataset",
        _args("--dataset", "iris"),
        ["--model", "ridge", "--task", "regression"],
        "--target, --task, --categorical and --numeric go with --csv only; "
        "dataset 'iris' has a fixed target and task",
    ),
    (
        "both-categorical-and-numeric",
        _csv("good.csv", GOOD_CSV),
        ["--target", "label", "--model", "ridge", "--categorical", "a", "--numeric", "a"],
        "{dir}/good.csv: column 'a' is given as both --categorical and --numeric; choose one",
    ),
    (
        "type-override-on-target",
        _csv("good.csv", GOOD_CSV),
        ["--target", "label", "--model", "random_forest", "--numeric", "label"],
        "{dir}/good.csv: column 'label' is the target; --categorical and --numeric set the "
        "type of feature columns only (use --task for the target)",
    ),
    (
        "csv-name-is-not-a-model-name",
        _csv("my data.csv", GOOD_CSV),
        ["--target", "label", "--model", "random_forest"],
        "model name 'my data' is not valid: expected 1 to 64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit; choose one with --name",
    ),
    (
        "bad-name",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--name", "../iris"],
        "model name '../iris' is not valid: expected 1 to 64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit; choose one with --name",
    ),
    (
        "version-zero",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--version", "0"],
        "version 0 is not valid: expected a positive integer",
    ),
    (
        "bad-test-size",
        _args("--dataset", "iris"),
        ["--model", "random_forest", "--test-size", "1.5"],
        "test size must be between 0 and 1, got 1.5",
    ),
    (
        "cannot-split",
        _csv("good.csv", GOOD_CSV),
        ["--target", "label", "--model", "random_forest", "--test-size", "0.1"],
        "cannot split csv:{dir}/good.csv for evaluation: The test_size = 1 should be greater "
        "or equal to the number of classes = 2",
    ),
]


@pytest.mark.parametrize(
    ("source", "args", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_refused_with_a_clear_message(
    source: Callable[[WriteCsv], list[str]],
    args: list[str],
    message: str,
    write_csv: WriteCsv,
    tmp_path: Path,
    models_dir: Path,
    call_cli: Any,
) -> None:
    result = call_cli(*source(write_csv), *args, "--models-dir", str(models_dir), "--quiet")
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: " + message.format(dir=tmp_path))
    assert result.stderr.endswith("\n")
    assert len(result.stderr.splitlines()) == 1
    assert not models_dir.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "random_forest"],
            "one of the arguments --dataset --csv --from-log is required",
        ),
        (
            ["--dataset", "iris", "--csv", "x.csv", "--model", "ridge"],
            "argument --csv: not allowed with argument --dataset",
        ),
        (
            ["--dataset", "iris", "--model", "ridge", "--version", "two"],
            "argument --version: invalid int value: 'two'",
        ),
        (
            ["--csv", "x.csv", "--target", "y", "--model", "ridge", "--task", "ranking"],
            "argument --task: invalid choice: 'ranking'",
        ),
    ],
)
def test_bad_arguments_exit_with_usage(
    args: list[str],
    message: str,
    models_dir: Path,
    call_cli: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        call_cli(*args, "--models-dir", str(models_dir))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m tabserve.training ")
    assert f"error: {message}" in err
    assert not models_dir.exists()


def test_bad_input_in_a_real_process(
    run_cli: Any, write_csv: WriteCsv, tmp_path: Path, models_dir: Path
) -> None:
    path = write_csv("people.csv", PEOPLE_MIXED)
    result = run_cli(
        "--csv",
        str(path),
        "--target",
        "label",
        "--model",
        "random_forest",
        "--models-dir",
        str(models_dir),
    )
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "[1/5] loading data ...\n"
        f"error: {path}: column 'age' is 90% numbers but line 7 has non-numeric value 'abc'; "
        "fix the value, or pass --categorical age to treat the column as categories\n"
    )
    assert not models_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("train", ["--model MODEL  the estimator, required unless --from-log", "--models-dir"]),
        ("predict", ["the served model's name", "the version to ask", "the server's address"]),
    ],
)
def test_help_explains_the_model_version_and_folder_options(
    command: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from tabserve.service.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in expected:
        assert " ".join(phrase.split()) in text
    if command == "train":
        assert "where versions are written, as <name>/<version>/ (default: models)" in text


def test_the_names_help_shows_are_the_ones_the_commands_take() -> None:
    from tabserve.training.datasets import BUNDLED_DATASETS
    from tabserve.training.estimators import ESTIMATORS
    from tabserve.training.options import DATASET_NAMES, ESTIMATOR_NAMES

    assert tuple(ESTIMATORS) == ESTIMATOR_NAMES
    assert DATASET_NAMES == BUNDLED_DATASETS


HEAVY = ("sklearn", "pandas", "scipy", "sqlalchemy", "skops", "mlflow", "numpy")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["import", "--help"]])
def test_help_is_given_without_loading_the_libraries_a_run_needs(argv: list[str]) -> None:
    """`tabserve --help` was seconds of scikit-learn, skops and SQLAlchemy imports."""
    probe = (
        "import sys\n"
        "from tabserve.service.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert "usage: tabserve" in shown.stdout
    assert shown.stdout.strip().splitlines()[-1] == "[]"
