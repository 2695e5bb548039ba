"""Input files of the datasets that ship inside installed packages (scikit-learn's bundled CSVs).

They are declared so that the data fingerprint in the job key (``bench.identity``) changes if a
library upgrade changes the bundled data, as it would for files under the data root.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable


def sklearn_files(*names: str) -> Callable[..., tuple[list[Path], Path]]:
    """``input_files`` for a dataset read from ``sklearn/datasets/data/<name>``."""

    def files(data_root: str | None = None, variant: str | None = None) -> tuple[list[Path], Path]:
        root = Path(str(resources.files("sklearn.datasets") / "data"))
        return [root / n for n in names], root

    return files
