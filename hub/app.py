"""The Flask application factory: the web layer on top of the kernel.

Everything an app needs (plugin manager, database engine, repository, search,
FHIR service, operations) hangs off one :class:`hub.kernel.Hub` kept in
``app.extensions["fhirhub"]`` and read with :func:`hub.api.context.get_hub`;
nothing is global, so each test builds an isolated app.
"""

from __future__ import annotations

import gc
import logging

from flask import Flask
from flask import request
from sqlalchemy.exc import DBAPIError

from hub import config as default_config
from hub.api.context import EXTENSION
from hub.api.context import get_hub
from hub.kernel import Hub
from hub.storage.db import is_disconnect

__all__ = ["Hub", "create_app", "get_hub"]


class HubFlask(Flask):
    """Flask with one retry of a read whose connection the database had dropped."""

    def dispatch_request(self):
        try:
            return super().dispatch_request()
        except DBAPIError as err:
            # The pool pings no connection on checkout (hub.storage.db); a dropped one
            # fails its first statement and the pool is refreshed. A read is safe to run
            # again; a write's transaction was rolled back and its error is answered.
            if not (is_disconnect(err) and request.method in ("GET", "HEAD")):
                raise
            return super().dispatch_request()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, ``instance/config.py``, ``HUB_*`` environment, ``test_config``."""
    app = HubFlask(
        "hub", instance_relative_config=True, instance_path=default_config.instance_path()
    )
    app.config.from_mapping(default_config.load(app.instance_path, test_config))
    app.json.ensure_ascii = False
    if not logging.getLogger().handlers:
        # Errors must reach the operator's log even when no logging is configured.
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    hub = Hub(app.config, app.instance_path)
    app.extensions[EXTENSION] = hub

    from hub.api import auth
    from hub.api import authorize
    from hub.api import bulk
    from hub.api import cors
    from hub.api import errors
    from hub.api import fhir
    from hub.api import inbox
    from hub.api import openapi
    from hub.api import proxy
    from hub.security import web

    # Before the security layer: a CORS preflight carries no token.
    cors.init_app(app)
    web.init_app(app)
    proxy.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(authorize.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(fhir.bp)
    app.register_blueprint(bulk.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(inbox.deliveries)
    from hub.lifetime import views as lifetime_views

    app.register_blueprint(lifetime_views.bp)
    errors.register(app)

    from hub import ui

    ui.init_app(app)

    @app.get("/")
    def index():
        from flask import redirect

        return redirect("/fhir/metadata")

    return app


def freeze_startup_objects() -> None:
    """Move every object alive now out of the garbage collector's generations.

    Called once a server process has built its app (``hub.wsgi``). The app's own
    objects (registries, validator tables, plugins: some 200,000) live as long as the
    process; kept in the generations, every full collection walks them all, and the
    parsed resources of transaction Bundles make full collections frequent: they took
    about a tenth of the CPU of an ingest. Frozen, a full collection walks only what
    came later. Garbage made while starting is collected first, so nothing is kept that
    would have been freed; with ``--preload`` the frozen objects also stay shared between
    forked workers (a collection no longer writes to their pages).
    """
    gc.collect()
    gc.freeze()
