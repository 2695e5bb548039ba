"""Imports every built-in dataset module so that each registers itself."""
from . import (  # noqa: F401
    diabetes_views,
    digits_halves,
    external,
    folder,  # folder:PATH, a user's own table and files (docs/folder-format.md)
    segmentation,
    synthetic_mvmt,
    synthetic_pid,
    wdbc,
)
from .adapters import adni, cmu_mosi, enrico, mimic_iv, mmimdb  # noqa: F401  (the I2MoE benchmarks)
from .adapters import embed, gamma, rsna_mammo, vindr_mammo  # noqa: F401  (the M4oE-MT benchmarks)
