"""``hub audit`` run as a user runs it, against a database holding the crafted population."""

from __future__ import annotations

import json

import pytest

from hub.app import create_app
from hub.app import get_hub
from tests.completeness import population
from tests.test_cli import run_hub


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    app = create_app(
        {"DATABASE_URL": url, "LOAD_ENTRY_POINTS": False, "INSTANCE_PATH": str(tmp_path)}
    )
    population.load(get_hub(app))
    get_hub(app).close()
    return {"HUB_DATABASE_URL": url}, tmp_path


def test_completeness_json_and_csv(env):
    extra, tmp_path = env
    out = run_hub(
        "audit",
        "completeness",
        "--jurisdiction",
        "370203",
        "--period",
        "2025",
        "--as-of",
        "2025-12-01",
        "--format",
        "json",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["people"] == 5 and data["with_gaps"] == 2
    rules = {r["rule"]: r for r in data["rows"]}
    assert rules["hypertension"] == {
        "rule": "hypertension",
        "label": "高血压患者规范管理",
        "applies": 2,
        "met": 1,
        "with_gaps": 1,
        "overdue": 1,
        "complete_pct": 50.0,
    }
    csv_out = run_hub(
        "audit",
        "completeness",
        "--jurisdiction",
        "370203001",
        "--from",
        "2025-01-01",
        "--to",
        "2025-06-30",
        "--format",
        "csv",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines()[0].startswith("rule,label,applies,met")


def test_denominators_and_indicators(env, tmp_path):
    extra, path = env
    yaml_file = tmp_path / "denominators.yaml"
    yaml_file.write_text(
        "source: yearbook 2025\ndenominators:\n"
        "  - {jurisdiction: '370203', year: 2025, indicator: residents-65-plus, value: 4}\n",
        encoding="utf-8",
    )
    steps = [
        (
            "audit",
            "denominators",
            "set",
            "--jurisdiction",
            "370203",
            "--year",
            "2025",
            "--indicator",
            "resident-population",
            "--value",
            "10",
        ),
        ("audit", "denominators", "load", str(yaml_file)),
    ]
    for args in steps:
        done = run_hub(*args, env_extra=extra, tmp_path=path)
        assert done.returncode == 0, done.stderr
    out = run_hub(
        "audit",
        "indicators",
        "--jurisdiction",
        "370203",
        "--period",
        "2025",
        "--format",
        "json",
        env_extra=extra,
        tmp_path=path,
    )
    assert out.returncode == 0, out.stderr
    rates = {r["indicator"]: r["rate"] for r in json.loads(out.stdout)["rows"]}
    assert rates["record-creation-rate"] == 50.0
    assert rates["elderly-management-rate"] == 50.0
    fhir = run_hub(
        "audit",
        "indicators",
        "--jurisdiction",
        "370203",
        "--period",
        "2025",
        "--stored",
        "--format",
        "fhir",
        env_extra=extra,
        tmp_path=path,
    )
    reports = [e["resource"] for e in json.loads(fhir.stdout)["entry"]]
    assert {r["resourceType"] for r in reports} == {"MeasureReport"}
    assert len(reports) == 8  # one per Measure in mappings/measures


def test_bad_arguments_are_usage_errors(env):
    extra, tmp_path = env
    bad = run_hub(
        "audit",
        "completeness",
        "--jurisdiction",
        "37x",
        "--period",
        "2025",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert bad.returncode == 2 and "invalid jurisdiction" in bad.stderr
    negative = run_hub(
        "audit",
        "denominators",
        "set",
        "--jurisdiction",
        "370203",
        "--year",
        "2025",
        "--indicator",
        "resident-population",
        "--value",
        "-5",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert negative.returncode == 2
