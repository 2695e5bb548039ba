"""Imports every built-in dataset module so that each registers itself."""
from . import diabetes_views, digits_halves, external, segmentation, synthetic_mvmt, synthetic_pid, wdbc  # noqa: F401
from . import folder  # noqa: F401  (folder:PATH, a user's own table and files)
from .adapters import cmu_mosi, mmimdb  # noqa: F401
from .adapters import adni, enrico, mimic_iv  # noqa: F401
