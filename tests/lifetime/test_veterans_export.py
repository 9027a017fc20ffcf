"""``hub export veterans-report``: read from the database, masked unless --unmask."""

from __future__ import annotations

import csv

import openpyxl
import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.resident_id import mask
from hub.identity.resident_id import normalise
from hub.lifetime import consumer
from tests.lifetime.conftest import condition
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes


@pytest.fixture
def registry(hub, fhir, database_url, tmp_path):
    result = hub.pipeline.ingest(
        "veterans-registry", csv_bytes([list(p) for p in PEOPLE]), content_type="text/csv"
    )
    assert result.status == "done", result.outcome
    number = normalise(PEOPLE[0][2])  # 王建国
    pid = patient_id_for_resident_id(number)
    fhir.put(condition("ca", pid, "C16.900", onset="2026-05-10"))
    fhir.put(
        {
            "resourceType": "Encounter",
            "id": "stay",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2026-05-09T10:00:00+08:00"},
            "serviceProvider": {"reference": "Organization/h1"},
            "diagnosis": [{"condition": {"reference": "Condition/ca"}}],
        }
    )
    fhir.put({"resourceType": "Organization", "id": "h1", "name": "青岛市某医院"})
    consumer.drain(hub)
    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_LOAD_ENTRY_POINTS": "false",
        "HUB_PLUGINS": '["fhirhub_plugins.va_registry"]',
    }
    return number, env


def _run(env, *args):
    result = CliRunner().invoke(cli, ["export", "veterans-report", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def test_csv_report_masked(registry, tmp_path):
    number, env = registry
    out = tmp_path / "report.csv"
    result = _run(env, "--since", "2026-05-01", "--until", "2026-05-31", "--out", str(out))
    assert f"written to {out}" in result.output
    with open(out, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["姓名"], r["事件"], r["日期"]) for r in rows] == [
        ("王建国", "住院", "2026-05-09"),
        ("王建国", "五色分类新增", "2026-05-10"),
    ]
    assert rows[0]["身份证号"] == mask(number)
    assert rows[0]["医疗机构"] == "青岛市某医院"
    assert rows[1]["五色分类"] == "红" and rows[1]["重大疾病"] == "是"


def test_xlsx_report_unmasked(registry, tmp_path):
    number, env = registry
    out = tmp_path / "report.xlsx"
    _run(
        env,
        "--since",
        "2026-05-01",
        "--until",
        "2026-05-31",
        "--format",
        "xlsx",
        "--out",
        str(out),
        "--unmask",
    )
    sheet = openpyxl.load_workbook(out).active
    values = list(sheet.values)
    assert values[0][:2] == ("姓名", "身份证号")
    assert values[1][1] == number


def test_period_outside_and_bad_dates(registry, tmp_path):
    _number, env = registry
    out = tmp_path / "empty.csv"
    result = _run(env, "--since", "2025-01-01", "--until", "2025-01-31", "--out", str(out))
    assert result.output.strip().endswith(
        f"0 row(s) for {len(PEOPLE)} beneficiary(ies) written to {out}"
    )
    bad = CliRunner().invoke(
        cli,
        ["export", "veterans-report", "--since", "2026-05-31", "--until", "2026-05-01"],
        env=env,
    )
    assert bad.exit_code == 2 and "--until" in bad.output
