"""Imports every built-in dataset module so that each registers itself."""
from . import folder  # noqa: F401  (folder:PATH, a user's own table and files: docs/folder-format.md)

# the I2MoE benchmarks (adni, cmu_mosi, enrico, mimic_iv, mmimdb) and the M4oE-MT ones (embed, gamma,
# rsna_mammo, vindr_mammo)
from .adapters import (  # noqa: F401
    adni,
    cmu_mosi,
    embed,
    enrico,
    gamma,
    mimic_iv,
    mmimdb,
    rsna_mammo,
    vindr_mammo,
)
from .embedded import diabetes_views, digits_halves, synthetic_mvmt, synthetic_pid, wdbc  # noqa: F401
from .segmentation import build, external  # noqa: F401  (synthetic-organs, nnunet:PATH, m4oe-miccai24; flare22, ...)
