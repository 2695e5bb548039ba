"""``diabetes-views``: scikit-learn's bundled diabetes table (442 cases) as two views.

View ``clinical``: age, sex, BMI, mean blood pressure; view ``serum``: the six blood serum
measurements s1-s6. Task: disease progression one year after baseline (regression, original
units; MAE/RMSE are reported in those units).
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes

from ..prepare import build_data
from ..registry import register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .packaged import sklearn_files


@register_dataset("diabetes-views", "Diabetes progression, clinical vs serum views, regression",
                  modalities="2 tabular (clinical 4 / serum 6)", tasks="regression",
                  input_files=sklearn_files("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"))
def build(variant: str | None, split_seed: int) -> "MultimodalData":  # noqa: F821
    raw = load_diabetes(scaled=False)
    x = raw.data.astype(np.float32)
    names = list(raw.feature_names)
    clinical = [names.index(c) for c in ("age", "sex", "bmi", "bp")]
    serum = [names.index(c) for c in ("s1", "s2", "s3", "s4", "s5", "s6")]
    y = raw.target.astype(np.float32)
    # stratify on quartiles of the target so all splits cover the same range
    strata = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))
    spec = DatasetSpec(
        name="diabetes-views",
        modalities=(ModalitySpec("clinical", "tabular", (4,)), ModalitySpec("serum", "tabular", (6,))),
        tasks=(TaskSpec("progression", "regression", 1),),
        split_rule="60/20/20 stratified on target quartiles, keyed by split seed",
        source="scikit-learn load_diabetes (Efron et al. 2004, Least Angle Regression)",
    )
    return build_data(spec, {"clinical": x[:, clinical], "serum": x[:, serum]}, {"progression": y}, split_seed,
                      ids=[f"diabetes-{i:03d}" for i in range(len(y))], stratify=strata)
