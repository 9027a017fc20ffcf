"""The app and the hub a ``hub`` command works on.

A module of its own so that command groups kept in their areas
(:mod:`hub.completeness.cli`, :mod:`hub.security.cli`) reach the hub without
importing :mod:`hub.cli`, which imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from hub.kernel import Hub


def make_app() -> Flask:
    """The app, configured as ``hub serve`` configures it (instance config, ``HUB_*``)."""
    from hub.app import create_app

    return create_app()


def make_hub() -> Hub:
    """The hub of a freshly configured app."""
    from hub.api.context import get_hub

    return get_hub(make_app())
