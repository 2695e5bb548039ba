"""Imports every built-in method module so that each registers itself."""
from . import (  # noqa: F401
    attention,
    early,
    i2moe,
    intermediate,
    late,
    m4oe,
    m4oe_mt,
    mmoe,
    moe,
    single,
    soft_moe,
    swinunet,
    unet,
    unet3d,
)
