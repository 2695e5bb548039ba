"""Imports every built-in method module so that each registers itself."""
from . import attention, early, intermediate, late, moe, single, soft_moe  # noqa: F401
