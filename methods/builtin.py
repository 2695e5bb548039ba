"""Imports every built-in method module so that each registers itself."""
from . import attention, early, intermediate, late, single  # noqa: F401
