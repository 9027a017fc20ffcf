"""The entitlement for FHIR partners: the documented searches, with and without the grant.

docs/green-channel.md documents two searches a partner's system makes at
registration: the entitlement Observation of one patient
(``Observation?subject=Patient/<id>&code=<system>|veteran-entitlement``) and the
entitled patients (``Patient?_has:Observation:subject:code=...``). A client
with the ``veteran-status`` grant finds them; one without finds nothing, not
even by ``_has``. The registry number (优抚证号) travels as the Observation's
identifier.
"""

from __future__ import annotations

import pytest
import requests
from fhirpy import SyncFHIRClient

from hub.api.context import get_hub
from hub.codesystems import VETERAN_STATUS
from hub.identity.ids import patient_id_for_resident_id
from hub.security.clients import add_client
from hub.storage.db import writing

from .conftest import Site

ENTITLEMENT = f"{VETERAN_STATUS}|veteran-entitlement"
CSV = (
    "姓名,性别,身份证号,出生日期,优抚类别,状态,待遇开始日期,优抚证号\r\n"
    "王建国,男,370202195003120834,1950-03-12,残疾军人,正常,2023-01-01,鲁优字0001\r\n"
).encode("utf-8-sig")
WANG = patient_id_for_resident_id("370202195003120834")


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", "fhirhub_plugins.va_registry"]
    return app_config


def partner(live_server, app, name: str, grants: list[str]) -> SyncFHIRClient:
    """A partner system's registered client, its token from the token endpoint."""
    hub = get_hub(app)
    with writing(hub.engine) as conn:
        client, secret = add_client(
            conn, name, "system/Patient.rs system/Observation.rs", None, grants
        )
    answer = requests.post(
        live_server.url + "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, secret),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    return SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {token}",
        extra_headers={"Accept": "application/fhir+json"},
    )


def test_partner_with_the_grant_finds_it_and_one_without_does_not(app, client, live_server):
    answer = client.post("/fhir/$ingest?site=veterans-registry", data=CSV, content_type="text/csv")
    assert answer.status_code == 200, answer.data

    granted = partner(live_server, app, "green-channel-partner", ["veteran-status"])
    found = (
        granted.resources("Observation")
        .search(subject=f"Patient/{WANG}", code=ENTITLEMENT)
        .fetch_all()
    )
    assert len(found) == 1
    obs = found[0].serialize()
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "disabled-serviceman"
    assert obs["effectivePeriod"] == {"start": "2023-01-01"}
    assert obs["identifier"][0]["value"] == "鲁优字0001"
    entitled = granted.resources("Patient").search(**{"_has:Observation:subject:code": ENTITLEMENT})
    assert [p.id for p in entitled.fetch_all()] == [WANG]

    blind = partner(live_server, app, "other-partner", [])
    assert blind.resources("Patient").search(_id=WANG).count() == 1  # the person, yes
    assert (
        blind.resources("Observation").search(subject=f"Patient/{WANG}", code=ENTITLEMENT).count()
        == 0
    )
    has = blind.resources("Patient").search(**{"_has:Observation:subject:code": ENTITLEMENT})
    assert has.fetch_all() == []


def test_registry_number_column_becomes_the_identifier(code_maps):
    from fhirhub_plugins.va_registry.read import read_table
    from fhirhub_plugins.va_registry.to_fhir import REGISTRY_NUMBER_SYSTEM
    from fhirhub_plugins.va_registry.to_fhir import RowMapper
    from hub.mapping import MappingContext

    table = read_table(CSV, None)
    for systems, expected in (
        ({}, REGISTRY_NUMBER_SYSTEM),
        ({"registry_number": "urn:x:n"}, "urn:x:n"),
    ):
        site = Site(identifier_systems=systems)
        mapped = RowMapper(MappingContext(site, code_maps)).map_row(table.rows[0])
        obs = next(r for r in mapped.resources if r["resourceType"] == "Observation")
        assert obs["identifier"] == [{"system": expected, "value": "鲁优字0001"}]
