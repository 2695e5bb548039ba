"""``wdbc``: Breast Cancer Wisconsin (Diagnostic), bundled with scikit-learn (569 cases).

Three tabular views of the same 30 features: the 10 "mean", the 10 "standard error" and the
10 "worst" measurements. Binary task: malignant (1) vs benign (0); note scikit-learn codes
benign as 1, so we flip it so that the positive class is the disease.
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

from ..prepare import build_data
from ..registry import register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .packaged import sklearn_files


@register_dataset("wdbc", "Breast Cancer Wisconsin (Diagnostic), 3 tabular views, malignant vs benign",
                  modalities="3 tabular (mean / SE / worst, 10 each)", tasks="binary",
                  input_files=sklearn_files("breast_cancer.csv"))
def build(variant: str | None, split_seed: int) -> "MultimodalData":  # noqa: F821
    raw = load_breast_cancer()
    x, names = raw.data.astype(np.float32), list(raw.feature_names)
    views = {
        "mean": [i for i, f in enumerate(names) if f.startswith("mean ")],
        "se": [i for i, f in enumerate(names) if f.endswith(" error")],
        "worst": [i for i, f in enumerate(names) if f.startswith("worst ")],
    }
    y = (raw.target == 0).astype(np.int64)  # 1 = malignant
    spec = DatasetSpec(
        name="wdbc",
        modalities=tuple(ModalitySpec(v, "tabular", (len(cols),)) for v, cols in views.items()),
        tasks=(TaskSpec("diagnosis", "binary", 2, ("benign", "malignant")),),
        split_rule="stratified 60/20/20 on diagnosis, keyed by split seed (one case per patient)",
        source="scikit-learn load_breast_cancer (UCI WDBC; Wolberg, Street, Mangasarian 1995; CC BY 4.0)",
    )
    return build_data(spec, {v: x[:, cols] for v, cols in views.items()}, {"diagnosis": y}, split_seed,
                      ids=[f"wdbc-{i:03d}" for i in range(len(y))], stratify=y)
