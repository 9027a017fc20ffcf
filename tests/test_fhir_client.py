"""A real FHIR client library (fhirpy) against the running server over HTTP."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound


@pytest.fixture
def fhir(live_server):
    return SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )


def test_fhirpy_create_read_update_search_delete(fhir):
    p = fhir.resource(
        "Patient",
        name=[{"family": "欧阳", "given": ["娜娜"]}],
        gender="female",
        birthDate="1990-05-01",
    )
    p.save()
    assert p.id and p["meta"]["versionId"] == "1"
    got = fhir.reference("Patient", p.id).to_resource()
    assert got["name"][0]["family"] == "欧阳"
    got["birthDate"] = "1990-05-02"
    got.save()
    assert fhir.reference("Patient", p.id).to_resource()["meta"]["versionId"] == "2"
    found = fhir.resources("Patient").search(_id=p.id).fetch()
    assert [r.id for r in found] == [p.id]
    by_name = fhir.resources("Patient").search(name="欧阳").fetch()
    assert p.id in [r.id for r in by_name]
    assert fhir.resources("Patient").search(birthdate="1990-05-02").count() == 1
    got.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", p.id).to_resource()
