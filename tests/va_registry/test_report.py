import datetime as dt

import openpyxl
import pytest

from fhirhub_plugins.va_registry.report import COLUMNS
from fhirhub_plugins.va_registry.report import build_veterans_report
from fhirhub_plugins.va_registry.report import write_csv
from fhirhub_plugins.va_registry.report import write_xlsx
from hub.colours import classify
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes

ICD = "http://hl7.org/fhir/sid/icd-10"
SINCE, UNTIL = dt.date(2026, 5, 1), dt.date(2026, 5, 31)


@pytest.fixture
def resources(run):
    bundle, _ = run(csv_bytes([list(p) for p in PEOPLE]))
    stored = [e["resource"] for e in bundle["entry"]]
    veteran = stored[0]["id"]  # 王建国, disabled serviceman
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": f"Patient/{veteran}"},
        "code": {"coding": [{"system": ICD, "code": "C16.900", "display": "胃恶性肿瘤"}]},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "onsetDateTime": "2026-05-10",
    }
    encounters = [
        _encounter("e1", veteran, "IMP", "2026-05-09T10:00:00+08:00", condition="Condition/c1"),
        _encounter("e2", veteran, "AMB", "2026-05-12T10:00:00+08:00"),  # outpatient: not reported
        _encounter("e3", veteran, "IMP", "2026-04-01T10:00:00+08:00"),  # before the period
        _encounter("e4", "not-a-veteran", "IMP", "2026-05-09T10:00:00+08:00"),
    ]
    flags = classify(veteran, stored + [condition], as_of=dt.date(2026, 5, 10)).flags
    organization = {"resourceType": "Organization", "id": "h1", "name": "青岛市某医院"}
    return stored + [condition, organization, *encounters, *flags]


def _encounter(eid, pid, cls, start, condition=None):
    enc = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
        "serviceProvider": {"reference": "Organization/h1"},
    }
    if condition:
        enc["diagnosis"] = [{"condition": {"reference": condition}, "rank": 1}]
    return enc


def test_report_rows(resources):
    rows = build_veterans_report(resources, SINCE, UNTIL, unmask=False)
    assert [(r["事件"], r["日期"], r["五色分类"]) for r in rows] == [
        ("住院", "2026-05-09", ""),
        ("五色分类新增", "2026-05-10", "红"),
        ("五色分类新增", "2026-05-10", "绿"),
    ]
    admission = rows[0]
    assert admission == {
        "姓名": "王建国",
        "身份证号": PEOPLE[0][2][:6] + "********" + PEOPLE[0][2][-4:],
        "优抚类别": "残疾军人",
        "所属区市": "市南区",
        "事件": "住院",
        "日期": "2026-05-09",
        "医疗机构": "青岛市某医院",
        "诊断": "C16.900 胃恶性肿瘤",
        "五色分类": "",
        "重大疾病": "是",
        "巡诊次数": "0",
        "会诊次数": "0",
    }


def test_report_unmasked_for_entitled_callers(resources):
    rows = build_veterans_report(resources, SINCE, UNTIL, unmask=True)
    assert rows[0]["身份证号"] == PEOPLE[0][2]


def test_report_empty_period(resources):
    assert build_veterans_report(resources, dt.date(2020, 1, 1), dt.date(2020, 12, 31)) == []


def test_report_leaves_out_people_who_left(resources):
    for res in resources:
        if res["resourceType"] == "Observation" and "component" in res:
            res["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "ended"
    assert build_veterans_report(resources, SINCE, UNTIL) == []


def test_write_csv_utf8_bom_crlf(resources, tmp_path):
    rows = build_veterans_report(resources, SINCE, UNTIL)
    path = tmp_path / "report.csv"
    write_csv(rows, path)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf" + ",".join(COLUMNS).encode("utf-8") + b"\r\n")
    assert data.count(b"\r\n") == 1 + len(rows)


def test_write_xlsx_text_cells(resources, tmp_path):
    rows = build_veterans_report(resources, SINCE, UNTIL)
    path = tmp_path / "report.xlsx"
    write_xlsx(rows, path)
    book = openpyxl.load_workbook(path, read_only=True)
    sheet = book["优抚对象健康报告"]
    values = list(sheet.iter_rows(values_only=True))
    book.close()
    assert values[0] == COLUMNS
    assert values[1][1] == rows[0]["身份证号"]
    assert len(values) == 1 + len(rows)


def _round(eid, pid, kind, cls, start, status="finished"):
    enc = _encounter(eid, pid, cls, start)
    enc["status"] = status
    enc["type"] = [{"coding": [{"system": "urn:fhirhub:codesystem:encounter-type", "code": kind}]}]
    return enc


def test_rounds_and_consultations_are_events_and_counted_per_veteran(resources):
    veteran = resources[0]["id"]
    resources += [
        _round("r1", veteran, "remote-round", "VR", "2026-05-03T09:00:00+08:00"),
        _round("r2", veteran, "home-round", "HH", "2026-05-20T15:00:00+08:00"),
        _round("r3", veteran, "expert-consultation", "VR", "2026-05-21T10:00:00+08:00"),
        _round("r4", veteran, "home-round", "HH", "2026-05-28", status="planned"),  # not held
        _round("r5", veteran, "remote-round", "VR", "2026-06-02"),  # after the period
        _round("r6", "not-a-veteran", "remote-round", "VR", "2026-05-03"),
    ]
    rows = build_veterans_report(resources, SINCE, UNTIL)
    assert [(r["事件"], r["日期"]) for r in rows] == [
        ("远程巡诊", "2026-05-03"),
        ("住院", "2026-05-09"),
        ("五色分类新增", "2026-05-10"),
        ("五色分类新增", "2026-05-10"),
        ("入户巡诊", "2026-05-20"),
        ("专家会诊", "2026-05-21"),
    ]
    assert {(r["巡诊次数"], r["会诊次数"]) for r in rows} == {("2", "1")}
    assert rows[0]["医疗机构"] == "青岛市某医院" and rows[0]["诊断"] == ""
