"""fhirhub: a FHIR R4 hub keeping one lifetime health file per person."""

from __future__ import annotations

from hub.hookspecs import hookimpl
from hub.version import __version__

__all__ = ["create_app", "hookimpl", "__version__"]


def create_app(test_config: dict | None = None):
    """Build the Flask app (see :mod:`hub.app`)."""
    from hub.app import create_app as _create_app

    return _create_app(test_config)
