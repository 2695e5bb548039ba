"""Guard against the Hugging Face ``datasets`` package shadowing ours (docs/datasets.md "The package name")."""
from __future__ import annotations


class WrongDatasetsPackage(ImportError):
    pass


def check_datasets_package() -> None:
    import datasets

    if not getattr(datasets, "BENCH_DATASETS_PACKAGE", False):
        where = getattr(datasets, "__file__", "?")
        raise WrongDatasetsPackage(
            f"'import datasets' resolved to {where}, not bench's datasets package (probably Hugging Face 'datasets'); "
            "install bench in a fresh virtual environment without Hugging Face datasets (see README)")
