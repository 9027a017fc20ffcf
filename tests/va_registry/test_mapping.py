import datetime as dt
from pathlib import Path

import pytest

from fhirhub_plugins import va_registry
from fhirhub_plugins.va_registry.departures import current_patient_ids
from fhirhub_plugins.va_registry.departures import departures
from fhirhub_plugins.va_registry.to_fhir import episode_id
from fhirhub_plugins.va_registry.to_fhir import veteran_status_id
from hub import codesystems as cs
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.ids import stored_content_hash
from hub.outcomes import OperationOutcomeError
from tests.golden import assert_golden
from tests.va_registry.samples import BAD_PEOPLE
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes
from tests.va_registry.samples import legacy_15
from tests.va_registry.samples import xlsx_bytes

GOLDEN = Path(__file__).parent / "golden"


def people():
    return [list(p) for p in PEOPLE]


def resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def errors(issues):
    return [i for i in issues if i["severity"] == "error"]


def test_every_encoding_gives_the_same_bundle(run):
    utf8, _ = run(csv_bytes(people(), "utf-8-sig"))
    gbk, _ = run(csv_bytes(people(), "gbk"))
    xlsx, _ = run(xlsx_bytes(people()))
    assert utf8 == gbk == xlsx


def test_row_mapping_golden(run):
    bundle, _ = run(csv_bytes(people()[:1]))
    assert_golden(bundle, GOLDEN / "disabled-serviceman.bundle.json")


def test_patient_id_is_shared_with_other_adapters(run):
    bundle, _ = run(csv_bytes(people()[:1]))
    patient = resources(bundle, "Patient")[0]
    assert patient["id"] == patient_id_for_resident_id(PEOPLE[0][2])
    assert patient["identifier"] == [
        {"use": "official", "system": RESIDENT_ID_SYSTEM, "value": PEOPLE[0][2]}
    ]


def test_veteran_status_is_separate_and_labelled(run):
    bundle, _ = run(csv_bytes(people()[:1]))
    patient = resources(bundle, "Patient")[0]
    obs = resources(bundle, "Observation")[0]
    assert "meta" not in patient or "security" not in patient["meta"]
    assert {(s["system"], s["code"]) for s in obs["meta"]["security"]} == {
        (cs.CONFIDENTIALITY, "R"),
        (cs.SENSITIVITY, "veteran-status"),
    }
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "disabled-serviceman"
    components = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert components["disability-grade"]["valueInteger"] == 6
    assert components["disability-nature"]["valueCodeableConcept"]["coding"][0]["code"] == "combat"
    assert components["pension-standard"]["valueQuantity"] == {"value": 2150, "unit": "元/月"}
    assert obs["component"][0]["code"]["coding"][0]["code"] == "benefit-status"
    episode = resources(bundle, "EpisodeOfCare")[0]
    assert episode["status"] == "active"
    assert episode["type"][0]["coding"][0]["code"] == "rongjun-kangyang"
    assert episode["managingOrganization"] == {"reference": "Organization/qd-veterans-bureau"}
    assert episode["meta"]["security"] == obs["meta"]["security"]


def test_suspended_status_puts_enrolment_on_hold(run):
    bundle, _ = run(csv_bytes([people()[2]]))
    assert resources(bundle, "EpisodeOfCare")[0]["status"] == "onhold"


def test_programmes_follow_the_site_setting(run, site):
    site.config["programmes"] = []
    bundle, _ = run(csv_bytes(people()))
    assert resources(bundle, "EpisodeOfCare") == []


def test_legacy_15_digit_and_lower_x_give_the_same_person(run):
    rows = people()
    rows[0][2] = legacy_15(rows[0][2])
    bundle, issues = run(csv_bytes(rows))
    ids = [p["id"] for p in resources(bundle, "Patient")]
    assert ids[0] == patient_id_for_resident_id(PEOPLE[0][2])
    assert resources(bundle, "Patient")[3]["identifier"][0]["value"].endswith("X")
    assert any(
        i["severity"] == "warning" and i["expression"] == ["row 2, column 身份证号"] for i in issues
    )


def test_bad_rows_are_reported_with_their_position_and_good_rows_load(run):
    bundle, issues = run(csv_bytes(people()[:2] + [list(p) for p in BAD_PEOPLE]))
    assert len(resources(bundle, "Patient")) == 2
    assert [(i["code"], i["expression"][0]) for i in errors(issues)] == [
        ("value", "row 4, column 身份证号"),
        ("value", "row 5, column 出生日期"),
        ("required", "row 6, column 姓名"),
        ("code-invalid", "row 7, column 优抚类别"),
        ("code-invalid", "row 8, column 伤残等级"),
    ]
    summary = [i for i in issues if i["severity"] == "information"][-1]
    assert summary["diagnostics"].endswith("2 loaded, 5 rejected")


def test_duplicate_person_in_one_file_is_rejected(run):
    rows = people()
    bundle, issues = run(csv_bytes(rows + [rows[0]]))
    assert len(resources(bundle, "Patient")) == 4
    assert errors(issues)[0]["code"] == "duplicate"
    assert "row 2" in errors(issues)[0]["diagnostics"]


def test_birth_date_disagreeing_with_the_id_number_is_a_warning(run):
    rows = people()
    rows[0][3] = "1950-03-13"
    bundle, issues = run(csv_bytes(rows[:1]))
    assert resources(bundle, "Patient")[0]["birthDate"] == "1950-03-12"
    assert [i["expression"] for i in issues if i["severity"] == "warning"] == [
        ["row 2, column 出生日期"]
    ]


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [(13, "冻结", "code-invalid"), (6, "因私", "code-invalid"), (12, "两千", "value")],
)
def test_other_bad_values_reject_the_row(run, column, value, code):
    rows = people()
    rows[0][column] = value
    bundle, issues = run(csv_bytes(rows[:1]))
    assert bundle["entry"] == []
    assert errors(issues)[0]["code"] == code


def test_unimported_columns_are_reported_once(run):
    _, issues = run(csv_bytes(people()))
    unused = [i["expression"][0] for i in issues if "not imported" in i.get("diagnostics", "")]
    assert unused == ["column 入伍时间", "column 退役时间"]


def test_reimport_produces_identical_content_hashes(run):
    first, _ = run(csv_bytes(people()))
    rows = people()
    rows[1][12] = "2800"  # one pension changes
    second, _ = run(csv_bytes(rows))
    old = {e["fullUrl"]: stored_content_hash(e["resource"]) for e in first["entry"]}
    changed = [
        e["fullUrl"]
        for e in second["entry"]
        if old[e["fullUrl"]] != stored_content_hash(e["resource"])
    ]
    assert changed == [f"Observation/{veteran_status_id(patient_id_for_resident_id(PEOPLE[1][2]))}"]


def test_departures_mark_people_who_left(run):
    first, _ = run(csv_bytes(people()))
    second, _ = run(csv_bytes(people()[1:]))
    gone = patient_id_for_resident_id(PEOPLE[0][2])
    entries = departures(
        current_patient_ids(first), current_patient_ids(second), on=dt.date(2026, 6, 1)
    )
    assert [e["request"] for e in entries] == [
        {"method": "PATCH", "url": f"Observation/{veteran_status_id(gone)}"},
        {"method": "PATCH", "url": f"EpisodeOfCare/{episode_id('rongjun-kangyang', gone)}"},
    ]
    assert_golden(entries, GOLDEN / "departures.json")


def test_departures_nobody_left():
    assert departures(["a", "b"], ["b", "a", "c"]) == []


def test_hook_detect_format_csv_and_xlsx():
    assert (
        va_registry.detect_format(body=csv_bytes(people(), "gbk"), content_type="text/csv")
        == "va-registry"
    )
    assert va_registry.detect_format(body=xlsx_bytes(people()), content_type=None) == "va-registry"
    assert va_registry.detect_format(body=b"MSH|^~\\&|HIS", content_type=None) is None
    assert (
        va_registry.detect_format(body=b"<ClinicalDocument/>", content_type="application/xml")
        is None
    )
    assert va_registry.detect_format(body=b"a,b\r\n1,2\r\n", content_type="text/csv") is None


def test_hook_map_inbound_ignores_other_formats(run):
    assert run(b"MSH|", fmt="hl7v2")[0] is None


def test_hook_map_inbound_unreadable_file_raises(run):
    with pytest.raises(OperationOutcomeError):
        run("姓名\r\n王\r\n".encode())


def test_hook_map_outbound_only_for_registry_sites(site):
    assert va_registry.map_outbound(resource={}, event="create", site=site, context=None) == []
    other = type("S", (), {"adapter": "hl7v2"})()
    assert va_registry.map_outbound(resource={}, event="create", site=other, context=None) is None


def test_plugin_registers_through_the_entry_point():
    from hub.plugins import get_plugin_manager

    pm = get_plugin_manager(only=["va_registry"])
    assert pm.get_plugin("va_registry") is va_registry
    body = csv_bytes(people())
    assert pm.hook.detect_format(body=body, content_type="text/csv") == "va-registry"


def test_hook_detect_format_other_workbooks_are_not_ours():
    import io

    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["品名", "数量"])
    buffer = io.BytesIO()
    book.save(buffer)
    assert va_registry.detect_format(body=buffer.getvalue(), content_type=None) is None
    assert va_registry.detect_format(body=b"PK\x03\x04broken", content_type=None) is None
