"""The one way the web layer reaches the hub: ``get_hub()``.

A leaf module (it imports Flask and nothing of the hub at run time), so the
blueprints never import :mod:`hub.app`, which imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from flask import current_app

if TYPE_CHECKING:
    from hub.kernel import Hub

# The key of the app's :class:`hub.kernel.Hub` in ``app.extensions``.
EXTENSION = "fhirhub"


def get_hub(app: Flask | None = None) -> Hub:
    """The hub of ``app``, else of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]
