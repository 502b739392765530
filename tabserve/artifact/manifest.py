"""The artifact manifest: what a served model promises about itself.

`model.json` sits beside the model file (`model.joblib`, or `model.skops` for the
safe format) in every version folder. It is the single
source of truth the service reads to build request schemas, validate inputs,
warm models up and compute drift, so it is validated on write and on read.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_FILE = "model.joblib"
SKOPS_FILE = "model.skops"
MANIFEST_FILE = "model.json"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A plain file name: no separator, and no leading dot, so never "." or ".." nor a hidden file.
ARTIFACT_FILE_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"

ArtifactFormat = Literal["joblib", "skops"]
MODEL_FILES: dict[ArtifactFormat, str] = {"joblib": MODEL_FILE, "skops": SKOPS_FILE}

Task = Literal["classification", "regression"]
ClassLabel = str | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Histogram(_Strict):
    """Counts of training values per bin; the drift reference for a numeric feature.

    `edges` are the interior cut points (the training deciles, de-duplicated), so
    there are `len(edges) + 1` bins: `(-inf, e0)`, `[e0, e1)`, ..., `[e_last, inf)`.
    A value's bin is `numpy.searchsorted(edges, value, side="right")`.
    """

    edges: list[float]
    counts: list[int]

    @model_validator(mode="after")
    def _bins_match_edges(self) -> Histogram:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(
                f"histogram has {len(self.edges)} edges, so it needs {len(self.edges) + 1} "
                f"counts, got {len(self.counts)}"
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("histogram edges must be strictly increasing")
        return self


class NumericStats(_Strict):
    """Training statistics of a numeric feature (missing values excluded)."""

    kind: Literal["number"] = "number"
    count: int = Field(ge=0, description="Rows with a value.")
    missing: int = Field(ge=0, description="Rows without a value (NaN).")
    min: float
    max: float
    mean: float
    std: float
    quantiles: dict[str, float] = Field(description="Keys p01, p05, p25, p50, p75, p95, p99.")
    histogram: Histogram


class CategoryStats(_Strict):
    """Training statistics of a categorical feature."""

    kind: Literal["category"] = "category"
    count: int = Field(ge=0)
    missing: int = Field(ge=0)
    categories: list[str] = Field(description="Every category seen in training, sorted.")
    frequencies: list[int] = Field(description="Rows per category, in `categories` order.")

    @model_validator(mode="after")
    def _one_frequency_per_category(self) -> CategoryStats:
        if len(self.categories) != len(self.frequencies):
            raise ValueError("categories and frequencies must have the same length")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be unique")
        return self


FeatureStats = Annotated[NumericStats | CategoryStats, Field(discriminator="kind")]


class ColumnDtype(_Strict):
    """The pandas dtype a feature had when the model was fitted on a DataFrame."""

    name: str = Field(description="The dtype's name, e.g. float64, int64, object, category, bool.")
    categories: list[str | int | float | bool] | None = Field(
        default=None,
        description="`category` dtype only: its categories in order (encoders may use codes).",
    )


class Feature(_Strict):
    """One input column, in the order the estimator expects."""

    name: str = Field(min_length=1)
    type: Literal["number", "category"]
    stats: FeatureStats | None = Field(
        description=(
            "Training statistics; null when the version was imported without reference "
            "data (an MLflow signature alone): no training range, no category list (any "
            "string is a category) and no drift reference."
        ),
    )
    dtype: ColumnDtype | None = Field(
        default=None,
        description="Set when the model takes a DataFrame (`estimator.input` is `frame`).",
    )
    missing: bool | None = Field(
        default=None,
        description=(
            "Whether this feature may be missing; null: as `estimator.supports_missing` says. "
            "Exports set it per feature (a pipeline may impute one column and not another)."
        ),
    )

    @model_validator(mode="after")
    def _stats_match_type(self) -> Feature:
        if self.stats is not None and self.stats.kind != self.type:
            raise ValueError(
                f"feature {self.name!r} is a {self.type} but has {self.stats.kind} stats"
            )
        return self


class TargetInfo(_Strict):
    """What the model predicts."""

    name: str
    classes: list[ClassLabel] | None = Field(
        default=None, description="Class labels in the order of `predict_proba` columns."
    )
    distribution: list[int] | None = Field(
        default=None, description="Training rows per class, in `classes` order."
    )
    histogram: Histogram | None = Field(
        default=None, description="Regression only: the training target's histogram."
    )


class EstimatorInfo(_Strict):
    """How the model was built."""

    kind: str = Field(description="The training CLI's name, e.g. random_forest.")
    class_name: str = Field(description="The final estimator's class, e.g. RandomForestClassifier.")
    params: dict[str, str | int | float | bool | None]
    pipeline: list[str] = Field(description="Step names of the exported scikit-learn Pipeline.")
    supports_missing: bool = Field(description="Whether inputs may hold missing values.")
    input: Literal["array", "frame"] = Field(
        default="array",
        description=(
            "`array`: the model takes a 2-D array in feature order; `frame`: it was fitted on "
            "a pandas DataFrame (columns chosen by name) and takes one, with each feature's dtype."
        ),
    )


class Environment(_Strict):
    """Library versions at training time; the loader refuses incompatible ones."""

    python: str
    numpy: str
    scikit_learn: str
    joblib: str
    skops: str | None = Field(default=None, description="Set when the artifact is in skops format.")
    libraries: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Versions of the other model libraries the estimator's steps come from "
            "(xgboost, lightgbm, catboost), by library name; the loader checks them too."
        ),
    )


class ArtifactFile(_Strict):
    """The serialized estimator this manifest describes."""

    file: str = Field(description="A plain file name in the version folder (no path).")
    format: ArtifactFormat = Field(
        default="joblib",
        description="`joblib` (a pickle: loading it runs code) or `skops` (no code runs on load).",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    trusted_types: list[str] = Field(
        default_factory=list,
        description=(
            "skops only: the types beyond skops's defaults that the file needs, as "
            "`skops.io.get_untrusted_types` reported them at export. The loader checks each "
            "against its own allow-list, never against this list alone."
        ),
    )

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if not re.fullmatch(ARTIFACT_FILE_PATTERN, value):
            raise ValueError(
                f"must be a plain file name in the version folder (letters, digits, '_', '-', "
                f"'.', not starting with '.'), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _types_only_for_skops(self) -> ArtifactFile:
        if self.trusted_types and self.format != "skops":
            raise ValueError(f"trusted_types apply to the skops format only, not {self.format}")
        return self


class LogSource(_Strict):
    """Provenance of a version trained from served predictions and their ground truth."""

    model: str = Field(description="The served model whose prediction log was read.")
    store: str = Field(description="The prediction log's database URL (password hidden).")
    versions: list[int] = Field(description="Served versions whose predictions were used.")
    rows: int = Field(ge=0, description="Logged rows with feedback that were used.")
    first_prediction: datetime | None = Field(
        default=None, description="When the oldest row used was predicted."
    )
    last_prediction: datetime | None = Field(
        default=None, description="When the newest row used was predicted."
    )
    redacted: list[str] = Field(
        default_factory=list,
        description="Features the log held no value for (redacted): missing in those rows.",
    )
    merged_with: str | None = Field(
        default=None, description="The original data source merged in (`--with-original`)."
    )
    merged_rows: int = Field(default=0, ge=0, description="Rows taken from `merged_with`.")


class TrainingData(_Strict):
    """Where the training data came from and how it was split."""

    source: str = Field(
        description="sklearn:<dataset>, csv:<path>, log:<model>, or export:<sample> for a model "
        "fitted elsewhere (the reference sample's statistics are the training statistics)."
    )
    rows: int = Field(ge=0, description="0: imported without reference data.")
    train_rows: int = Field(ge=0)
    test_rows: int = Field(ge=0, description="0 for an exported model: it was fitted elsewhere.")
    test_size: float
    seed: int
    fingerprint: str = Field(description="sha256 of the canonical feature and target bytes.")
    log: LogSource | None = Field(
        default=None, description="Set when the data came from the prediction log."
    )


class DriftInfo(_Strict):
    """Whether the version has a drift reference, and why not when it has none."""

    available: bool = Field(
        default=True,
        description="Whether the training statistics can serve as a drift reference.",
    )
    reason: str | None = Field(
        default=None,
        description="Why drift is unavailable (set exactly when `available` is false).",
    )

    @model_validator(mode="after")
    def _reason_when_unavailable(self) -> DriftInfo:
        if self.available == (self.reason is not None):
            raise ValueError("drift.reason is set exactly when drift is unavailable")
        return self


class Manifest(_Strict):
    """Everything the service needs to know about a model version."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    created_at: datetime
    task: Task
    estimator: EstimatorInfo
    features: list[Feature] = Field(min_length=1)
    target: TargetInfo
    metrics: dict[str, float]
    environment: Environment
    artifact: ArtifactFile
    training: TrainingData
    drift: DriftInfo = Field(
        default_factory=DriftInfo,
        description="Absent in manifests written before it: drift is available.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.drift.available and any(f.stats is None for f in self.features):
            raise ValueError("features without training statistics have no drift reference")
        if self.task == "classification" and not self.target.classes:
            raise ValueError("a classification manifest needs target.classes")
        if self.task == "regression" and self.target.classes:
            raise ValueError("a regression manifest has no target.classes")
        return self

    @property
    def missing_allowed(self) -> list[bool]:
        """Per feature, in order: whether a request may leave it missing."""
        default = self.estimator.supports_missing
        return [default if f.missing is None else f.missing for f in self.features]

    @property
    def feature_names(self) -> list[str]:
        """Feature names in estimator order."""
        return [f.name for f in self.features]
