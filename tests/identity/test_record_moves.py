"""A person who moves county: the new health-record number supersedes the old one.

The old number stays on the Patient as history (``use: old``, ``period.end``);
jurisdictions place the person by the current number only.
"""

from __future__ import annotations

from hub.completeness.jurisdiction import place_of
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.households import record_number_of
from hub.ingest.identity import merge_patient

RID = {"system": RESIDENT_ID_SYSTEM, "value": "370283197907050320"}
OLD_NO, NEW_NO = "37028310300100016", "37020310100200007"
NOW = "2025-06-01T08:00:00+00:00"


def patient(*numbers: str, org: str | None = None) -> dict:
    out = {
        "resourceType": "Patient",
        "identifier": [RID, *({"system": HEALTH_RECORD_SYSTEM, "value": n} for n in numbers)],
    }
    if org:
        out["managingOrganization"] = {"reference": f"Organization/{org}"}
    return out


def numbers(p: dict) -> dict[str, dict]:
    return {i["value"]: i for i in p["identifier"] if i["system"] == HEALTH_RECORD_SYSTEM}


def test_new_number_supersedes_the_old_one():
    merged = merge_patient(patient(OLD_NO, org="old-clinic"), patient(NEW_NO), now=NOW)
    kept = numbers(merged)
    assert kept[OLD_NO] == {
        "system": HEALTH_RECORD_SYSTEM,
        "value": OLD_NO,
        "use": "old",
        "period": {"end": NOW},
    }
    assert "use" not in kept[NEW_NO] and "period" not in kept[NEW_NO]
    assert place_of(merged).county == "370203"
    assert not place_of(merged).within("370283")
    assert record_number_of(merged).value == NEW_NO


def test_the_new_records_institution_takes_over():
    merged = merge_patient(
        patient(OLD_NO, org="old-clinic"), patient(NEW_NO, org="new-clinic"), now=NOW
    )
    assert merged["managingOrganization"] == {"reference": "Organization/new-clinic"}


def test_a_later_document_quoting_the_old_number_does_not_bring_it_back():
    moved = merge_patient(patient(OLD_NO, org="old-clinic"), patient(NEW_NO, org="new"), now=NOW)
    late = merge_patient(moved, patient(OLD_NO, org="old-clinic"), now="2025-06-03T00:00:00Z")
    kept = numbers(late)
    assert kept[OLD_NO]["use"] == "old" and kept[OLD_NO]["period"] == {"end": NOW}
    assert "use" not in kept[NEW_NO]
    assert place_of(late).county == "370203"
    # the old institution does not take the record back
    assert late["managingOrganization"] == {"reference": "Organization/new"}


def test_the_same_number_again_changes_nothing():
    merged = merge_patient(patient(OLD_NO, org="clinic"), patient(OLD_NO), now=NOW)
    assert numbers(merged) == {OLD_NO: {"system": HEALTH_RECORD_SYSTEM, "value": OLD_NO}}
    assert place_of(merged).county == "370283"


def test_a_message_without_a_number_keeps_the_current_one():
    merged = merge_patient(patient(OLD_NO), patient(), now=NOW)
    assert numbers(merged) == {OLD_NO: {"system": HEALTH_RECORD_SYSTEM, "value": OLD_NO}}


def test_placement_skips_an_old_number_listed_first():
    p = patient()
    p["identifier"] += [
        {"system": HEALTH_RECORD_SYSTEM, "value": OLD_NO, "use": "old"},
        {"system": HEALTH_RECORD_SYSTEM, "value": NEW_NO},
    ]
    assert place_of(p).county == "370203"
    assert record_number_of(p).value == NEW_NO
