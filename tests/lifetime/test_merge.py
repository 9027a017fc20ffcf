"""``Patient/$merge`` and ``$unmerge``: re-pointing, Provenance, exact round trip, A40."""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from hub.identity.ids import patient_id_for_resident_id
from hub.identity.ids import stable_id
from hub.lifetime import consumer
from hub.storage import schema as s
from tests.lifetime.conftest import condition
from tests.lifetime.conftest import observation
from tests.lifetime.conftest import parameters
from tests.lifetime.conftest import patient

MRN = "urn:oid:2.16.156.10011.0.99.1001.1"
HOUSEHOLD = "urn:fhirhub:identifier:household-number"


def snapshot(hub) -> dict[str, dict]:
    """Every current resource (without meta versions), Provenance left out."""
    out = {}
    with hub.engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.resource.c.res_type, s.resource.c.res_id, s.resource.c.content).where(
                s.resource.c.deleted == sa.false(), s.resource.c.res_type != "Provenance"
            )
        )
        for t, i, content in rows:
            res = orjson.loads(content)
            res.pop("meta", None)
            out[f"{t}/{i}"] = res
    return out


def two_records(fhir, hub):
    fhir.put(
        patient(
            "keep",
            identifier=[{"system": MRN, "value": "0001"}, {"system": HOUSEHOLD, "value": "H1"}],
            birthDate="1980-01-01",
        )
    )
    fhir.put(
        patient(
            "dup",
            identifier=[{"system": MRN, "value": "0099"}, {"system": HOUSEHOLD, "value": "H2"}],
            gender="male",
        )
    )
    fhir.put(patient("spouse", identifier=[{"system": HOUSEHOLD, "value": "H2"}]))
    fhir.put(condition("hyp", "dup", "I10"))
    fhir.put(observation("bp", "dup", "2024-01-01", performer=[{"reference": "Patient/dup"}]))
    fhir.put(observation("wt", "keep", "2024-02-01"))
    fhir.put(
        {
            "resourceType": "Encounter",
            "id": "visit",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/dup"},
        }
    )
    consumer.drain(hub)  # colours computed: the steady state before a merge


def test_merge_repoints_links_and_records_provenance(fhir, hub):
    two_records(fhir, hub)
    out = fhir.post(
        "Patient/$merge", parameters(source_patient="Patient/dup", target_patient="Patient/keep")
    )
    params = {p["name"]: p["resource"] for p in out["parameter"]}
    result, prov = params["result"], params["provenance"]
    assert {"other": {"reference": "Patient/dup"}, "type": "replaces"} in result["link"]
    assert {"system": MRN, "value": "0099", "use": "old"} in result["identifier"]
    dup = fhir.get("Patient/dup")
    assert dup["active"] is False
    assert dup["link"] == [{"other": {"reference": "Patient/keep"}, "type": "replaced-by"}]
    assert fhir.get("Condition/hyp")["subject"]["reference"] == "Patient/keep"
    bp = fhir.get("Observation/bp")
    assert bp["subject"]["reference"] == "Patient/keep"
    assert bp["performer"][0]["reference"] == "Patient/keep"
    assert fhir.get("Encounter/visit")["subject"]["reference"] == "Patient/keep"
    targets = {t["reference"] for t in prov["target"]}
    assert "Condition/hyp/_history/2" in targets and "Encounter/visit/_history/2" in targets
    revisions = {e["what"]["reference"] for e in prov["entity"] if e["role"] == "revision"}
    assert {
        "Condition/hyp/_history/1",
        "Patient/dup/_history/1",
        "Patient/keep/_history/1",
    } <= revisions
    # the colours moved with the evidence
    colours = fhir.get("Patient/keep/$colours")
    assert [p["valueCoding"]["code"] for p in colours["parameter"] if p["name"] == "displayed"] == [
        "orange"
    ]
    assert not [p for p in fhir.get("Patient/dup/$colours")["parameter"] if p["name"] == "colour"]
    # the stored Provenance is in both compartments
    assert f"Provenance/{prov['id']}" in fhir.ids(
        fhir.get("Patient/dup/$everything?_type=Provenance")
    )


def test_merge_then_unmerge_restores_exactly_the_prior_state(fhir, hub):
    two_records(fhir, hub)
    before = snapshot(hub)
    out = fhir.post(
        "Patient/$merge", parameters(source_patient="Patient/dup", target_patient="Patient/keep")
    )
    prov = next(p["resource"] for p in out["parameter"] if p["name"] == "provenance")
    assert snapshot(hub) != before
    h2 = fhir.get(f"Group/{stable_id('household', 'H2')}")
    assert [m["entity"]["reference"] for m in h2["member"]] == ["Patient/spouse"]  # dup retired
    undo = fhir.post("Patient/$unmerge", parameters(provenance=f"Provenance/{prov['id']}"))
    undo_prov = next(p["resource"] for p in undo["parameter"] if p["name"] == "provenance")
    assert {"role": "source", "what": {"reference": f"Provenance/{prov['id']}"}} in undo_prov[
        "entity"
    ]
    assert snapshot(hub) == before  # households included: dup is back in H2
    # a merge is undone once
    again = fhir.post(
        "Patient/$unmerge", parameters(provenance=f"Provenance/{prov['id']}"), status=409
    )
    assert again["resourceType"] == "OperationOutcome"


def test_unmerge_by_patients_keeps_later_changes(fhir, hub):
    two_records(fhir, hub)
    fhir.post(
        "Patient/$merge", parameters(source_patient="Patient/dup", target_patient="Patient/keep")
    )
    changed = fhir.get("Observation/bp")
    changed["valueString"] = "recorded after the merge"
    fhir.put(changed)
    fhir.post(
        "Patient/$unmerge", parameters(source_patient="Patient/dup", target_patient="Patient/keep")
    )
    bp = fhir.get("Observation/bp")
    assert bp["valueString"] == "recorded after the merge"
    assert bp["subject"]["reference"] == "Patient/dup"
    dup = fhir.get("Patient/dup")
    assert dup.get("active", True) is True and "link" not in dup


def test_merge_errors(fhir, hub):
    two_records(fhir, hub)
    fhir.put(patient("third"))
    fhir.post("Patient/$merge", parameters(source_patient="Patient/dup"), status=400)
    fhir.post(
        "Patient/$merge",
        parameters(source_patient="Patient/dup", target_patient="Patient/nobody"),
        status=404,
    )
    fhir.post(
        "Patient/$merge",
        parameters(source_patient="Patient/dup", target_patient="Patient/dup"),
        status=422,
    )
    fhir.post(
        "Patient/$merge", parameters(source_patient="Patient/dup", target_patient="Patient/keep")
    )
    oo = fhir.post(
        "Patient/$merge",
        parameters(source_patient="Patient/dup", target_patient="Patient/third"),
        status=409,
    )
    assert "already merged" in oo["issue"][0]["diagnostics"]
    fhir.post(
        "Patient/$merge",
        parameters(source_patient="Patient/third", target_patient="Patient/dup"),
        status=409,
    )
    fhir.post(
        "Patient/$unmerge",
        parameters(source_patient="Patient/third", target_patient="Patient/keep"),
        status=404,
    )


def test_linked_search_follows_the_merge(fhir, hub):
    two_records(fhir, hub)
    fhir.put(observation("late", "dup", "2024-03-01"))
    assert fhir.ids(fhir.get("Observation?subject=Patient/keep")) == ["Observation/wt"]
    linked = fhir.get("Observation?subject:linked=Patient/keep")
    assert fhir.ids(linked) == ["Observation/wt"]  # not linked yet
    fhir.put(patient("dup", link=[{"other": {"reference": "Patient/keep"}, "type": "seealso"}]))
    linked = fhir.get("Observation?subject:linked=Patient/keep&_sort=date")
    assert fhir.ids(linked) == ["Observation/bp", "Observation/wt", "Observation/late"]
    everywhere = fhir.get("Observation?patient=keep&_linked=true&_sort=date")
    assert fhir.ids(everywhere) == fhir.ids(linked)
    fhir.get("Observation?subject:linked=Encounter/visit", status=400)
    fhir.get("Observation?subject=Patient/keep&_linked=maybe", status=400)


A40 = (
    "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240601120000||ADT^A40^ADT_A39|A40-0001|P|2.5\r"
    "EVN|A40|20240601120000\r"
    "PID|1||0012345^^^XRMYY^MR~410102198001010018^^^CHN^NNCHN||张^伟||19800101|M\r"
    "MRG|0012399^^^XRMYY^MR||||||张^伟\r"
)
A08_OLD_MRN = (
    "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240301120000||ADT^A04^ADT_A01|A04-OLD|P|2.5\r"
    "EVN|A04|20240301120000\r"
    "PID|1||0012399^^^XRMYY^MR||张^伟||19800101|M\r"
    "PV1|1|O\r"
    "DG1|1||E11.900^2型糖尿病^ICD10||20240301|A\r"
)


def _ingest(client, body: str):
    resp = client.post(
        "/fhir/$ingest?site=county-hospital-a",
        data=body.encode(),
        content_type="application/hl7-v2",
    )
    assert resp.status_code == 200, resp.get_json()
    return resp


def test_adt_a40_goes_through_the_merge(client, fhir, hub):
    _ingest(client, A08_OLD_MRN)
    with hub.engine.connect() as conn:
        old_ids = [
            r[0]
            for r in conn.execute(
                sa.select(s.resource.c.res_id).where(s.resource.c.res_type == "Patient")
            )
        ]
    assert len(old_ids) == 1
    old = old_ids[0]
    old_encounters = fhir.get(f"Encounter?subject=Patient/{old}")
    assert fhir.ids(old_encounters)
    _ingest(client, A40)
    survivor = patient_id_for_resident_id("410102198001010018")
    assert fhir.get(f"Patient/{old}")["active"] is False
    assert fhir.ids(fhir.get(f"Encounter?subject=Patient/{old}")) == []
    assert fhir.ids(fhir.get(f"Encounter?subject=Patient/{survivor}")) == fhir.ids(old_encounters)
    merges = [
        r
        for r in (e["resource"] for e in fhir.get("Provenance?_count=50").get("entry", []))
        if any(c.get("code") == "merge" for c in r["activity"].get("coding", []))
        and r.get("extension")
    ]
    assert len(merges) == 1
    # the diabetes diagnosis moved: the survivor is orange, computed inline by the pipeline
    flags = fhir.get(f"Flag?subject=Patient/{survivor}")
    active = [e["resource"] for e in flags["entry"] if e["resource"].get("status") == "active"]
    assert [f["code"]["coding"][0]["code"] for f in active] == ["orange"]
    # replaying the A40 is a no-op; unmerge reverses it
    _ingest(client, A40.replace("A40-0001", "A40-0002"))
    again = [
        r
        for r in (e["resource"] for e in fhir.get("Provenance?_count=50").get("entry", []))
        if r.get("extension")
    ]
    assert [r["id"] for r in again] == [merges[0]["id"]]  # the replay merged nothing
    fhir.post("Patient/$unmerge", parameters(provenance=f"Provenance/{merges[0]['id']}"))
    assert fhir.ids(fhir.get(f"Encounter?subject=Patient/{old}")) == fhir.ids(old_encounters)
    assert fhir.get(f"Patient/{old}").get("active", True) is True
