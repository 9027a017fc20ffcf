"""The kernel: the :class:`Hub` object holding one hub's services, without Flask.

Built by constructor injection: each service receives what it needs when it is
made (the repository its search indexer, write guard and audit hook), so no
object is ever half-made. The web layer (:mod:`hub.app`) keeps one ``Hub`` per
Flask app; the CLI and the conformance runner build one the same way.
"""

from __future__ import annotations

import logging
import os
import zoneinfo
from typing import Any

from hub.config import setting
from hub.fhir.service import FhirService
from hub.ingest.pipeline import Pipeline
from hub.operations import OperationRegistry
from hub.plugins import get_plugin_manager
from hub.search.engine import SearchEngine
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.search.registry import stored_search_parameters
from hub.security import audit_trail
from hub.security import audit_writer
from hub.security import auditing
from hub.security import guard
from hub.security.services import Security
from hub.storage import db
from hub.storage.db import reading
from hub.storage.repository import Repository
from hub.terminology.service import TerminologyService

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
        self.definitions, self.validator = _load_validation(self.pm, config)
        self.engine = db.make_engine(config["DATABASE_URL"], instance_path)
        if setting(config, "AUTO_MIGRATE"):
            db.upgrade(self.engine)
        self.search_registry, self.indexer, search_engine = self._build_search()
        read_url = setting(config, "READ_DATABASE_URL")
        self.read_engine = db.make_engine(read_url, instance_path) if read_url else None
        self.repo = Repository(
            self.engine,
            self.indexer,
            write_guard=guard.check_write,
            audit_hook=auditing.write_hook,
            read_engine=self.read_engine,
        )
        audit_trail.configure(
            self.engine, config, config.get("INSTANCE_PATH") or instance_path or "."
        )
        self.audit_writer = audit_writer.configure(
            self.engine, float(setting(config, "AUDIT_FLUSH_INTERVAL"))
        )
        self.security = Security(self.engine, config, self.repo)
        self.service = FhirService(
            self.repo, search_engine, self.pm, config, on_search_parameter=self.reload_search
        )
        self.sites = _load_sites(config, self.code_maps)
        # One terminology service: the operations, the adapters' code maps, the search
        # modifiers and the write path (which invalidates it) share it.
        self.terminology = TerminologyService(
            self.engine,
            self.code_maps,
            self.sites,
            expansion_limit=int(setting(config, "TERMINOLOGY_EXPANSION_LIMIT")),
        )
        self.service.on_terminology = self.terminology.invalidate
        search_engine.terminology = self.terminology
        self.pipeline = Pipeline(self)
        operations = _builtin_operations()
        for ops in self.pm.hook.register_operations():
            operations.extend(ops or ())
        self.operations = OperationRegistry(operations)
        # OperationCall -> hub.lifetime.visibility.Visibility: what the caller may see.
        self.visibility_for = _visibility_for
        # The websocket endpoint of Subscriptions, when this process serves it (hub worker).
        self.subscription_websocket = None

    def reload_search(self) -> None:
        """(Re)build the search registry: official, plugin, ``profiles/`` and stored parameters.

        Built at start-up; rebuilt after a SearchParameter is written through this
        process (the one swap of a live service's part); ``hub reindex`` then
        indexes resources stored before.
        """
        self.search_registry, self.indexer, self.service.search_engine = self._build_search()
        self.service.search_engine.terminology = self.terminology
        self.repo.indexer = self.indexer

    def _build_search(self) -> tuple[SearchRegistry, Indexer, SearchEngine]:
        extra: list[dict] = []
        for params in self.pm.hook.register_search_parameters():
            extra.extend(params or ())
        extra.extend(_profile_search_parameters(self.config))
        with reading(self.engine) as conn:
            extra.extend(stored_search_parameters(conn))
        tz = zoneinfo.ZoneInfo(setting(self.config, "TIMEZONE"))
        registry = SearchRegistry.load(extra)
        engine = SearchEngine(
            registry,
            default_tz=tz,
            max_chain_depth=int(setting(self.config, "SEARCH_MAX_CHAIN_DEPTH")),
            statement_timeout=float(setting(self.config, "SEARCH_TIMEOUT")),
            analyze_interval=float(setting(self.config, "SEARCH_ANALYZE_INTERVAL")),
        )
        return registry, Indexer(registry, default_tz=tz), engine

    def close(self) -> None:
        self.audit_writer.close()  # append the reads' queued events before the pool goes
        self.service.search_engine.statistics.close()  # an ANALYZE under way finishes first
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()


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

    folders = [SITES_DIR] if setting(config, "LOAD_EXAMPLE_SITES") else []
    folders += [Path(f) for f in str(config.get("SITES_DIR") or "").split(os.pathsep) if f]
    return load_sites([f for f in folders if f.is_dir()], code_maps)


def _load_validation(pm, config: dict[str, Any]):
    """This hub's definitions and validator: the shared ones (core and ``profiles/``), or its
    own when its plugins or ``PROFILES_DIR`` folders add definitions; then the default
    ``validate_resource`` hook is bound to that validator."""
    from pathlib import Path

    from hub import default_validation
    from hub.validation.definitions import hub_definitions
    from hub.validation.validator import default_validator
    from hub.validation.validator import validator_for

    folders = [Path(f) for f in str(config.get("PROFILES_DIR") or "").split(os.pathsep) if f]
    definitions = hub_definitions(pm, folders)
    validator = validator_for(definitions)
    name = default_validation.__name__
    if validator is not default_validator() and pm.get_plugin(name) is default_validation:
        pm.unregister(name=name)
        pm.register(default_validation.HubValidation(validator), name=name)
    return definitions, validator


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

    :func:`hub.lifetime.visibility.for_principal`: labels and jurisdiction in SQL, the rest
    of the rules (scopes, R/V alone, patient context) by the security layer's filters.
    """
    from hub.lifetime.visibility import for_principal
    from hub.security.principal import current

    principal = current()
    if principal is None:
        return None
    return for_principal(principal, call.hub.service.within_jurisdiction)


def _builtin_operations() -> list:
    from hub.bulk.operations import operations as bulk_operations
    from hub.default_operations import operations
    from hub.lifetime.operations import operations as lifetime_operations
    from hub.terminology.operations import operations as terminology_operations

    return operations() + lifetime_operations() + terminology_operations() + bulk_operations()
