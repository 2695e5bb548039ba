"""Imports every built-in method module so that each registers itself."""
from . import attention, early, i2moe, intermediate, late, moe, single, soft_moe  # noqa: F401
