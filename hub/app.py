"""The Flask application factory and the per-app :class:`Hub` object.

Everything an app needs (plugin manager, database engine, repository, search,
FHIR service, operations) hangs off one :class:`Hub` kept in
``app.extensions["fhirhub"]``; nothing is global, so each test builds an
isolated app.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from flask import Flask

from hub import config as default_config
from hub.fhir.service import FhirService
from hub.operations import OperationRegistry
from hub.plugins import get_plugin_manager
from hub.storage import db
from hub.storage.db import reading
from hub.storage.repository import Repository

log = logging.getLogger("hub")


class Hub:
    """The hub's services for one app (also usable without Flask, e.g. by the CLI)."""

    def __init__(self, config: dict[str, Any], instance_path: str | None = None):
        self.config = config
        only = [p.strip() for p in str(config.get("LOAD_PLUGINS") or "").split(",") if p.strip()]
        self.pm = get_plugin_manager(
            load_entry_points=config.get("LOAD_ENTRY_POINTS", True),
            only=only or None,
            trace=_truthy(config.get("TRACE_PLUGINS")),
            extra=config.get("PLUGINS") or [],
        )
        self.code_maps = _load_code_maps(self.pm, config)
        _load_profiles(self.pm, config)
        self.engine = db.make_engine(config["DATABASE_URL"], instance_path)
        if config.get("AUTO_MIGRATE", True):
            db.upgrade(self.engine)
        self.repo = Repository(self.engine, None)
        self.security = _security(
            self.engine, config, self.repo, config.get("INSTANCE_PATH") or instance_path or "."
        )
        self.service = FhirService(self.repo, None, self.pm, config)
        self.service.on_search_parameter = self.reload_search
        self.reload_search()
        self.sites = _load_sites(config, self.code_maps)
        from hub.ingest.pipeline import Pipeline

        self.pipeline = Pipeline(self)
        operations = _builtin_operations()
        for ops in self.pm.hook.register_operations():
            operations.extend(ops or ())
        self.operations = OperationRegistry(operations)
        # OperationCall -> hub.lifetime.visibility.Visibility: what the caller may see.
        self.visibility_for = _visibility_for

    def reload_search(self) -> None:
        """(Re)build the search registry: official, plugin, ``profiles/`` and stored parameters.

        Called at start-up and after a SearchParameter is written through this
        process; ``hub reindex`` then indexes resources stored before.
        """
        import zoneinfo

        from hub.search.engine import SearchEngine
        from hub.search.indexer import Indexer
        from hub.search.registry import SearchRegistry
        from hub.search.registry import stored_search_parameters

        extra: list[dict] = []
        for params in self.pm.hook.register_search_parameters():
            extra.extend(params or ())
        extra.extend(_profile_search_parameters(self.config))
        with reading(self.engine) as conn:
            extra.extend(stored_search_parameters(conn))
        tz = zoneinfo.ZoneInfo(self.config.get("TIMEZONE") or "Asia/Shanghai")
        self.search_registry = SearchRegistry.load(extra)
        self.indexer = Indexer(self.search_registry, default_tz=tz)
        self.repo.indexer = self.indexer
        self.service.search_engine = SearchEngine(
            self.search_registry,
            default_tz=tz,
            max_chain_depth=int(self.config.get("SEARCH_MAX_CHAIN_DEPTH") or 3),
            statement_timeout=float(self.config.get("SEARCH_TIMEOUT") or 0),
        )

    def close(self) -> None:
        self.engine.dispose()


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _load_code_maps(pm, config: dict[str, Any]):
    """``mappings/``, then plugin folders, then ``MAPPINGS_DIR`` folders; ids must be unique."""
    from pathlib import Path

    from hub.mapping import load_code_maps
    from hub.paths import MAPPINGS_DIR

    folders = [MAPPINGS_DIR]
    for extra in pm.hook.register_code_maps():
        folders.extend(Path(f) for f in extra or ())
    folders.extend(Path(f) for f in str(config.get("MAPPINGS_DIR") or "").split(os.pathsep) if f)
    return load_code_maps([f for f in folders if f.is_dir()])


def _load_sites(config: dict[str, Any], code_maps):
    """``conformance/sites`` plus the folders in ``SITES_DIR`` (colon-separated)."""
    from pathlib import Path

    from hub.paths import SITES_DIR
    from hub.sites import load_sites

    folders = [SITES_DIR] if config.get("LOAD_EXAMPLE_SITES", True) else []
    folders += [Path(f) for f in str(config.get("SITES_DIR") or "").split(os.pathsep) if f]
    return load_sites([f for f in folders if f.is_dir()], code_maps)


def _load_profiles(pm, config: dict[str, Any]) -> None:
    """Plugin profiles and ``PROFILES_DIR`` folders join the validator's definitions.

    Definitions are process-wide data (``profiles/`` and the R4 core load once).
    """
    from pathlib import Path

    from hub.validation.definitions import default_definitions
    from hub.validation.definitions import register_plugin_definitions

    defs = default_definitions()
    register_plugin_definitions(pm, defs)
    for folder in str(config.get("PROFILES_DIR") or "").split(os.pathsep):
        if folder:
            defs.load_folder(Path(folder))


def _profile_search_parameters(config: dict[str, Any]) -> list[dict]:
    """SearchParameter resources shipped in ``profiles/`` (and ``PROFILES_DIR`` folders)."""
    from pathlib import Path

    import orjson

    from hub.paths import PROFILES_DIR

    folders = [PROFILES_DIR] + [
        Path(f) for f in str(config.get("PROFILES_DIR") or "").split(os.pathsep) if f
    ]
    out = []
    for folder in folders:
        for path in sorted(folder.rglob("SearchParameter-*.json")) if folder.is_dir() else ():
            out.append(orjson.loads(path.read_bytes()))
    return out


def _visibility_for(call):
    """The request's principal as a lifetime-operation visibility (``None``: the hub's own work).

    Label categories the principal holds no grant for are filtered in SQL; the
    rest of the rules (scopes, R/V alone, patient context) by ``filter_visible``,
    and a user's jurisdiction by the service (the search engine's boundary).
    """
    from hub.lifetime.visibility import Visibility
    from hub.security import labels
    from hub.security.guard import filter_visible
    from hub.security.principal import current

    principal = current()
    if principal is None:
        return None
    return Visibility(
        hidden_labels=labels.hidden_labels(principal.grants),
        visible=lambda resources: call.hub.service.within_jurisdiction(
            filter_visible(resources, principal)
        ),
    )


def _security(engine, config: dict[str, Any], repo: Repository, instance_path: str):
    """Authentication state, the repository's write guard and audit hook, the audit key."""
    from hub.security import audit_trail
    from hub.security import auditing
    from hub.security import guard
    from hub.security.services import Security

    repo.write_guard = guard.check_write
    repo.audit_hook = auditing.write_hook
    audit_trail.configure(engine, config, instance_path)
    return Security(engine, config)


def _builtin_operations() -> list:
    from hub.default_operations import operations
    from hub.lifetime.operations import operations as lifetime_operations

    return operations() + lifetime_operations()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, ``instance/config.py``, ``HUB_*`` environment, ``test_config``."""
    app = Flask(
        "hub", instance_relative_config=True, instance_path=os.environ.get("HUB_INSTANCE_PATH")
    )
    app.config.from_mapping(default_config.DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("HUB", loads=_loads)
    else:
        app.config.from_mapping(test_config)
    app.json.ensure_ascii = False
    if not logging.getLogger().handlers:
        # Errors must reach the operator's log even when no logging is configured.
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    hub = Hub(app.config, app.instance_path)
    app.extensions["fhirhub"] = hub

    from hub.api import auth
    from hub.api import errors
    from hub.api import fhir
    from hub.api import inbox
    from hub.api import openapi
    from hub.security import web

    web.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(fhir.bp)
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


def _loads(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def get_hub(app: Flask | None = None) -> Hub:
    from flask import current_app

    return (app or current_app).extensions["fhirhub"]
