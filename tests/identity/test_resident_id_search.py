"""Searching by resident ID number finds the person whatever form the caller types.

Linking normalises the number (``x`` -> ``X``, 15 -> 18 digits) before it is
stored; a search value in the resident-ID system is normalised the same way.
"""

from __future__ import annotations

import pytest

from hub.identity import RESIDENT_ID_SYSTEM

STORED = "11010519491231002X"  # the 18-digit form of the legacy 110105491231002
OTHER = "110105194912310021"  # not a valid number (wrong check digit)


@pytest.fixture
def patient_id(client):
    resp = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": STORED}],
            "name": [{"text": "李明"}],
        },
    )
    assert resp.status_code == 201, resp.data
    return resp.get_json()["id"]


def _ids(client, query: str) -> list[str]:
    resp = client.get(f"/fhir/Patient?{query}")
    assert resp.status_code == 200, resp.data
    return [e["resource"]["id"] for e in resp.get_json().get("entry", [])]


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002x",  # lower-case check character
        "110105491231002",  # the legacy 15-digit number
        " 11010519491231002X",  # stray space, as typed
        STORED,
    ],
)
def test_resident_id_search_is_normalised(client, patient_id, value):
    assert _ids(client, f"identifier={RESIDENT_ID_SYSTEM}|{value}") == [patient_id]
    # Without a system the stored number is found too (the raw value still matches as typed).
    assert _ids(client, f"identifier={value.strip()}") == [patient_id]


def test_other_values_are_searched_as_given(client, patient_id):
    assert _ids(client, f"identifier={RESIDENT_ID_SYSTEM}|{OTHER}") == []
    assert _ids(client, "identifier=urn:example:mrn|11010519491231002x") == []
    # ``:not`` excludes the person whatever form the number is given in.
    assert _ids(client, f"identifier:not={RESIDENT_ID_SYSTEM}|110105491231002") == []
