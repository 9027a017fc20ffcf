from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR

TODAY = dt.date(2026, 6, 1)


@dataclasses.dataclass
class Site:
    name: str = "veterans-registry"
    adapter: str = "va_registry"
    timezone: str = "Asia/Shanghai"
    organization: dict = dataclasses.field(
        default_factory=lambda: {"id": "qd-veterans-bureau", "name": "青岛市退役军人事务局"}
    )
    identifier_systems: dict = dataclasses.field(default_factory=dict)
    code_map_overrides: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)

    def plugin_config(self, adapter: str) -> dict:
        return self.config if adapter == "va_registry" else {}


@pytest.fixture(autouse=True)
def development_identity_key(monkeypatch):
    # Golden ids are computed with the development key.
    monkeypatch.delenv("HUB_IDENTITY_KEY", raising=False)


@pytest.fixture(scope="session")
def code_maps():
    return load_code_maps([MAPPINGS_DIR])


@pytest.fixture
def site():
    return Site(config={"today": TODAY})


@pytest.fixture
def run(site, code_maps):
    """Map bytes through the adapter's hook; returns (bundle, issues)."""
    from fhirhub_plugins import va_registry

    def _run(body: bytes, fmt: str = "va-registry"):
        context = MappingContext(site, code_maps)
        bundle = va_registry.map_inbound(message=InboundMessage(fmt, body, site), context=context)
        return bundle, context.issues

    return _run
