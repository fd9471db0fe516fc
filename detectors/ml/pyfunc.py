"""The MLflow pyfunc wrapper around `FittedModel` (imports mlflow: load only where MLflow is used).

Any MLflow tool can score a Vigil model through it (`predict` takes a DataFrame of
the model's features and returns normalised 0-100 scores); Vigil's own serving
path unwraps it and scores numpy matrices directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.pyfunc.model import PythonModel

from detectors.ml.model import FittedModel


class VigilPyfuncModel(PythonModel):
    """Holds one `FittedModel`; `predict` returns its normalised scores."""

    def __init__(self, model: FittedModel) -> None:
        self.model = model

    # `np.ndarray` exactly: a hint MLflow does not try to validate against (DataFrames also arrive here).
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> Any:
        names = list(self.model.feature_names)
        frame = model_input[names] if hasattr(model_input, "columns") else model_input
        matrix = np.asarray(frame, dtype=np.float64).reshape(-1, len(names))
        return self.model.normalise(self.model.raw_scores(matrix))
