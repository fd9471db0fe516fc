"""ML detectors: training from analyst labels and offline features, the MLflow registry, and serving.

Public surface:
- data: `FeatureFrame`, `read_feature_frame`, `KnownLabel`, `resolve_targets`, `relative_features`;
- models: `ModelKind`, `FittedModel`, `fit_model`, `plan_training`, `fit_plan`, `train_model`,
  `TrainingOptions`, `TrainingPlan`, `TrainingOutcome`;
- quality: `ranking_quality`, `RankingQuality`, `precision_at_k`, `fpr_at_recall`, `operating_point`,
  `daily_precision_at_k`;
- labels: `read_label_file`, `import_labels`, `known_labels`, `LabelRecord`, `ImportReport`;
- registry: `ModelRegistry` (MLflow; aliases `challenger`/`champion`), `fail_fast_http`;
- serving: `MLDetector`, `UnavailableModel`, `ModelWatcher`, `CircuitBreaker`, `ServedModels`,
  `served_models`, `run_ml_service`.

This package never imports `features/`: it trains from the parquet that `vigil replay`
writes; the composition root (`vigil`) produces that file.
"""

from detectors.ml.columns import matrix_from_vectors, relative_features
from detectors.ml.dataset import (
    CONFIRMED_FRAUD,
    EXPECTED,
    FALSE_POSITIVE,
    LABEL_VALUES,
    FeatureFrame,
    KnownLabel,
    Targets,
    read_feature_frame,
    resolve_targets,
)
from detectors.ml.errors import LabelFileError, MLError, ModelUnavailableError, RegistryError, TrainingDataError
from detectors.ml.labels import ImportReport, LabelRecord, import_labels, known_labels, normalise_label, read_label_file
from detectors.ml.model import Calibration, Contribution, FitOptions, FittedModel, fit_model
from detectors.ml.quality import (
    OperatingPoint,
    RankingQuality,
    daily_precision_at_k,
    fpr_at_recall,
    operating_point,
    precision_at_k,
    ranking_quality,
)
from detectors.ml.registry import CHALLENGER, CHAMPION, AliasChange, ModelRegistry, fail_fast_http
from detectors.ml.scorers import ModelKind
from detectors.ml.serving import (
    CircuitBreaker,
    MLDetector,
    ModelWatcher,
    ServedModels,
    UnavailableModel,
    run_ml_service,
    served_models,
)
from detectors.ml.training import (
    TrainingOptions,
    TrainingOutcome,
    TrainingPlan,
    default_features,
    fit_plan,
    plan_training,
    train_model,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CONFIRMED_FRAUD",
    "EXPECTED",
    "FALSE_POSITIVE",
    "LABEL_VALUES",
    "AliasChange",
    "Calibration",
    "CircuitBreaker",
    "Contribution",
    "FeatureFrame",
    "FitOptions",
    "FittedModel",
    "ImportReport",
    "KnownLabel",
    "LabelFileError",
    "LabelRecord",
    "MLDetector",
    "MLError",
    "ModelKind",
    "ModelRegistry",
    "ModelUnavailableError",
    "ModelWatcher",
    "OperatingPoint",
    "RankingQuality",
    "RegistryError",
    "ServedModels",
    "Targets",
    "TrainingDataError",
    "TrainingOptions",
    "TrainingOutcome",
    "TrainingPlan",
    "UnavailableModel",
    "daily_precision_at_k",
    "default_features",
    "fail_fast_http",
    "fit_model",
    "fit_plan",
    "fpr_at_recall",
    "import_labels",
    "known_labels",
    "matrix_from_vectors",
    "normalise_label",
    "operating_point",
    "plan_training",
    "precision_at_k",
    "ranking_quality",
    "read_feature_frame",
    "read_label_file",
    "relative_features",
    "resolve_targets",
    "run_ml_service",
    "served_models",
    "train_model",
]
