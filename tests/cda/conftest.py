from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub.mapping import MappingContext
from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cda"
DOCUMENTS = sorted(GOLDEN.glob("*/*.xml"))

# The county platform as the conformance kit declares it (site.yaml).
COUNTY_CONFIG = {"data_element_aliases": {"DE075.00": "DE05.10.075.00"}}


@dataclasses.dataclass
class Site:
    name: str = "county-platform"
    adapter: str = "cda"
    timezone: str = "Asia/Shanghai"
    organization: dict = dataclasses.field(
        default_factory=lambda: {
            "id": "pd-hospital",
            "name": "平度市人民医院",
            "identifier": {"system": "urn:oid:2.16.156.10011.1.5", "value": "437028300001"},
        }
    )
    identifier_systems: dict = dataclasses.field(default_factory=dict)
    code_map_overrides: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=lambda: dict(COUNTY_CONFIG))

    def plugin_config(self, adapter: str) -> dict:
        return self.config if adapter == "cda" else {}


@pytest.fixture(autouse=True)
def development_identity_key(monkeypatch):
    # Golden Patient ids are computed with the development identity key.
    monkeypatch.delenv("HUB_IDENTITY_KEY", raising=False)


@pytest.fixture(scope="session")
def code_maps():
    return load_code_maps([MAPPINGS_DIR])


@pytest.fixture
def site():
    return Site()


@pytest.fixture
def inbound(site, code_maps):
    """Map document bytes; returns (bundle, issues)."""
    from fhirhub_plugins.cda import to_fhir

    def run(body: bytes, at_site=None):
        use = at_site or site
        context = MappingContext(use, code_maps)
        bundle = to_fhir.document_bundle(body, context, use)
        return bundle, context.issues

    return run


def custodian_site(body: bytes) -> Site:
    """A site whose organization is the document's custodian (for round trips)."""
    from fhirhub_plugins.cda import parse

    root = parse.parse(body)
    org = root.find(
        "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization", parse.NS
    )
    ident = org.find("v3:id", parse.NS)
    return Site(
        organization={
            "id": ident.get("extension"),
            "name": org.find("v3:name", parse.NS).text,
            "identifier": {
                "system": "urn:oid:" + ident.get("root"),
                "value": ident.get("extension"),
            },
        }
    )


def resources(bundle: dict, *types: str) -> list[dict]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if not types or e["resource"]["resourceType"] in types
    ]
