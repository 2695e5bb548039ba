"""Database URLs for the run store (and for anything else bench points at the same server, such
as Optuna's RDB storage): one place that picks the driver and says what to install.

SQLAlchemy reads a bare ``postgresql://`` as psycopg2, which bench does not depend on; bench's
``[postgres]`` extra installs psycopg 3. :func:`normalize_url` therefore maps ``postgresql://``
and ``postgres://`` (which SQLAlchemy refuses outright) to ``postgresql+psycopg://``, leaves an
explicit driver (``postgresql+psycopg2://``, ``sqlite://``, ...) alone, and fails with one line
naming the package when the driver is not installed. Imports nothing heavy (no torch, no
SQLAlchemy engine).
"""
from __future__ import annotations

import importlib.util
import re

from ..errors import StoreError

#: (backend, driver) -> (module to import, what to install)
_DRIVERS = {
    ("postgresql", "psycopg"): ("psycopg", "pip install 'bench[postgres]'"),
    ("postgresql", "psycopg2"): ("psycopg2", "pip install psycopg2-binary, or use postgresql:// (psycopg 3)"),
    ("postgresql", "pg8000"): ("pg8000", "pip install pg8000, or use postgresql:// (psycopg 3)"),
}
_PG_SCHEMES = ("postgresql", "postgres")


def hide_password(url: str) -> str:
    """The URL with its password (if any) shown as ``***``."""
    return re.sub(r"^([A-Za-z0-9+_.-]+://[^/@:]*):[^/@]*@", r"\1:***@", url)


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL bench connects with: ``postgresql://``/``postgres://`` get the psycopg 3
    driver (``postgresql+psycopg://``); other URLs are returned as they are. Raises
    :class:`StoreError` (one line) when the URL's driver is not installed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    backend, plus, driver = scheme.partition("+")
    if backend.lower() in _PG_SCHEMES:
        backend, driver = "postgresql", driver or "psycopg"
        url = f"{backend}+{driver}://{rest}"
    needed = _DRIVERS.get((backend.lower(), driver.lower()))
    if needed and importlib.util.find_spec(needed[0]) is None:
        raise StoreError(f"run store {hide_password(url)}: the database driver {needed[0]} is not installed; "
                         f"{needed[1]}")
    return url
