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
