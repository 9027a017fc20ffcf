"""The web dashboard under ``/ui`` for archive managers and integration engineers.

Server-rendered pages (Jinja templates in ``templates/``), charts as inline
SVG, Chinese and English labels, CSV/XLSX exports, login and an AuditEvent
for every view. :func:`init_app` registers it on the Flask app.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the dashboard; make sure the session has a secret key."""
    from hub.ui.views import bp

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(
            Path(app.config.get("INSTANCE_PATH") or app.instance_path)
        )
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.register_blueprint(bp)


def _instance_secret(folder: Path) -> str:
    """The key in ``<instance>/secret_key``, generated (mode 0600) on first start."""
    from hub.security.hashing import instance_key

    return instance_key(folder / "secret_key")
