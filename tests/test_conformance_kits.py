"""The kit runner: JSON diffs with paths, golden rules, ``hub conformance run`` and its reports."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.paths import SITES_DIR
from hub.scaffold import scaffold_site
from hub.testing import MappingResult
from hub.testing import assert_matches_golden
from hub.testing import golden_differences
from hub.testing import json_diff
from hub.testing import write_golden


def paths(differences):
    return [d.path for d in differences]


# -- json_diff -----------------------------------------------------------------


def test_json_diff_names_the_paths_that_differ():
    expected = {"a": {"b": [1, 2, {"c": "x"}]}, "gone": 1}
    actual = {"a": {"b": [1, 3, {"c": "y"}, 4]}, "new": True}
    assert paths(json_diff(expected, actual)) == ["a.b[1]", "a.b[2].c", "a.b[3]", "gone", "new"]
    assert json_diff(expected, expected) == []


def test_json_diff_tells_types_apart():
    assert paths(json_diff({"v": 1}, {"v": True})) == ["v"]
    assert paths(json_diff({"v": 1}, {"v": 1.0})) == ["v"]


def test_bundle_entries_are_matched_by_request_url():
    def entry(ref, **extra):
        res_type, rid = ref.split("/")
        return {"resource": {"resourceType": res_type, "id": rid, **extra}, "request": {"url": ref}}

    expected = {"entry": [entry("Patient/p"), entry("Encounter/e", status="finished")]}
    actual = {
        "entry": [entry("Patient/p"), entry("Task/t"), entry("Encounter/e", status="planned")]
    }
    # The inserted Task is one difference; the Encounter is still compared with its golden.
    assert paths(json_diff(expected, actual)) == [
        "entry[Encounter/e].resource.status",
        "entry[Task/t]",
    ]
    swapped = {"entry": list(reversed(expected["entry"]))}
    assert paths(json_diff(expected, swapped)) == ["entry (order)"]


# -- golden rules ----------------------------------------------------------------

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "resource": {"resourceType": "Patient", "id": "p", "gender": "female"},
            "request": {"method": "PUT", "url": "Patient/p"},
        }
    ],
}
WARNING = {
    "severity": "warning",
    "code": "code-invalid",
    "diagnostics": "code 'X' is not in code map sex",
    "expression": ["PID-8"],
}
INFO = {"severity": "information", "code": "informational", "diagnostics": "PV1-3 not mapped"}


def test_golden_round_trip_ignores_server_meta_and_information(tmp_path):
    write_golden(MappingResult(BUNDLE, [WARNING, INFO]), tmp_path)
    written = json.loads((tmp_path / "expected-outcome.json").read_text(encoding="utf-8"))
    assert written["issue"] == [WARNING]  # information issues are not part of the contract
    stored = json.loads(json.dumps(BUNDLE))
    stored["entry"][0]["resource"]["meta"] = {
        "versionId": "3",
        "lastUpdated": "2024-01-01T00:00:00Z",
    }
    assert golden_differences(MappingResult(stored, [WARNING]), tmp_path) == []


def test_a_new_warning_is_a_difference(tmp_path):
    write_golden(MappingResult(BUNDLE, []), tmp_path)
    assert not (tmp_path / "expected-outcome.json").exists()
    diffs = golden_differences(MappingResult(BUNDLE, [WARNING]), tmp_path)
    assert paths(diffs) == ["expected-outcome.json.issue[0]"]


def test_diagnostics_are_compared_only_when_the_golden_gives_them(tmp_path):
    golden = {"resourceType": "OperationOutcome", "issue": [{**WARNING}]}
    del golden["issue"][0]["diagnostics"]
    (tmp_path / "expected.json").write_text(json.dumps(BUNDLE), encoding="utf-8")
    (tmp_path / "expected-outcome.json").write_text(json.dumps(golden), encoding="utf-8")
    reworded = {**WARNING, "diagnostics": "other words"}
    assert golden_differences(MappingResult(BUNDLE, [reworded]), tmp_path) == []
    moved = {**WARNING, "expression": ["PID-7"]}
    assert paths(golden_differences(MappingResult(BUNDLE, [moved]), tmp_path)) == [
        "expected-outcome.json.issue[0].expression[0]"
    ]


def test_rejection_and_acceptance_are_told_apart(tmp_path):
    rejected = MappingResult(None, [{**WARNING, "severity": "error"}], 422)
    write_golden(rejected, tmp_path)
    assert not (tmp_path / "expected.json").exists()
    assert golden_differences(rejected, tmp_path) == []
    assert paths(golden_differences(MappingResult(BUNDLE, []), tmp_path)) == [
        "expected-outcome.json"
    ]
    write_golden(MappingResult(BUNDLE, []), tmp_path)
    assert paths(golden_differences(rejected, tmp_path)) == ["expected.json"]


def test_assert_matches_golden_lists_paths_and_regenerates_on_request(tmp_path, monkeypatch):
    write_golden(MappingResult(BUNDLE, []), tmp_path)
    changed = json.loads(json.dumps(BUNDLE))
    changed["entry"][0]["resource"]["gender"] = "male"
    with pytest.raises(AssertionError, match=r"entry\[Patient/p\]\.resource\.gender"):
        assert_matches_golden(MappingResult(changed, []), tmp_path)
    monkeypatch.setenv("HUB_REGEN_GOLDEN", "1")
    assert_matches_golden(MappingResult(changed, []), tmp_path)
    monkeypatch.delenv("HUB_REGEN_GOLDEN")
    assert_matches_golden(MappingResult(changed, []), tmp_path)


def test_a_case_without_golden_files_fails(tmp_path):
    diffs = golden_differences(MappingResult(BUNDLE, []), tmp_path)
    assert "expected.json or expected-outcome.json" in str(diffs[0])


# -- hub conformance run ----------------------------------------------------------


def run(*args):
    return CliRunner().invoke(cli, ["conformance", "run", *map(str, args)])


@pytest.mark.parametrize("adapter", ["hl7v2", "va_registry"])
def test_a_scaffolded_site_passes_at_once(tmp_path, adapter):
    folder = scaffold_site("new-clinic", adapter, tmp_path)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "hub conformance run new-clinic" in readme and "--update" in readme
    result = run("--sites-dir", tmp_path, "--junit", tmp_path / "kit.xml")
    assert result.exit_code == 0, result.output
    assert "new-clinic  1 passed" in result.output
    suite = ET.parse(tmp_path / "kit.xml").getroot().find("testsuite")
    assert suite.get("name") == "new-clinic" and suite.get("tests") == "1"


@pytest.fixture
def county_kit(tmp_path):
    """A copy of the county hospital's kit with two of its cases."""
    sites = tmp_path / "sites"
    shutil.copytree(
        SITES_DIR / "county-hospital-a",
        sites / "county-hospital-a",
        ignore=lambda folder, names: [
            n
            for n in names
            if folder.endswith("cases")
            and n not in ("admit-inpatient", "reject-mislabelled-charset")
        ],
    )
    return sites


def break_golden(case):
    path = case / "expected.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["resource"]["birthDate"] = "1999-09-09"
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    return patient["request"]["url"]


def test_a_failing_case_shows_its_paths_in_every_report(county_kit, tmp_path):
    url = break_golden(county_kit / "county-hospital-a" / "cases" / "admit-inpatient")
    result = run(
        "--sites-dir", county_kit, "--junit", tmp_path / "r.xml", "--html", tmp_path / "r.html"
    )
    assert result.exit_code == 1
    assert "county-hospital-a  1 passed, 1 failed" in result.output
    assert f'entry[{url}].resource.birthDate: expected "1999-09-09"' in result.output
    suites = ET.parse(tmp_path / "r.xml").getroot()
    assert suites.get("failures") == "1" and suites.get("tests") == "2"
    failure = suites.find("testsuite/testcase[@name='admit-inpatient']/failure")
    assert f"entry[{url}].resource.birthDate" in failure.text
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<section id="county-hospital-a">' in page and "birthDate" in page
    assert "<script" not in page and "http" not in page.split("<body>")[0]  # self-contained


def test_update_rewrites_the_golden_then_the_case_passes(county_kit):
    case = county_kit / "county-hospital-a" / "cases" / "admit-inpatient"
    break_golden(case)
    result = run("county-hospital-a", "--sites-dir", county_kit, "--update")
    assert result.exit_code == 0, result.output
    assert "2 updated" in result.output
    assert run("--sites-dir", county_kit).exit_code == 0


def test_a_golden_expecting_a_rejection_fails_when_the_hub_accepts(county_kit):
    case = county_kit / "county-hospital-a" / "cases" / "admit-inpatient"
    (case / "expected.json").rename(case / "expected-outcome.json")
    result = run("--sites-dir", county_kit)
    assert result.exit_code == 1
    assert 'expected-outcome.json: expected "a rejection"' in result.output


def test_unknown_site_is_a_usage_error(county_kit):
    result = run("nowhere", "--sites-dir", county_kit)
    assert result.exit_code == 2
    assert "unknown site(s) nowhere; known: county-hospital-a" in result.output


# -- Pipeline.map ----------------------------------------------------------------


def test_pipeline_map_is_the_mapping_step_alone(app_config):
    from hub.app import create_app
    from hub.app import get_hub
    from hub.outcomes import OperationOutcomeError
    from hub.storage import schema as s

    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2"]
    the_hub = get_hub(create_app(app_config))
    site = the_hub.sites["county-hospital-a"]
    cases = SITES_DIR / "county-hospital-a" / "cases"
    body = (cases / "admit-inpatient" / "input.hl7").read_bytes()
    bundle, issues = the_hub.pipeline.map(site, body, "application/hl7-v2")
    golden = json.loads((cases / "admit-inpatient" / "expected.json").read_text(encoding="utf-8"))
    assert json_diff(golden, bundle) == []
    assert all(i["severity"] == "information" for i in issues)
    with the_hub.engine.connect() as conn:  # nothing was received or stored
        assert conn.execute(s.inbox.select()).first() is None
    bad = (cases / "reject-mislabelled-charset" / "input.hl7").read_bytes()
    with pytest.raises(OperationOutcomeError):
        the_hub.pipeline.map(site, bad, "application/hl7-v2")
    the_hub.close()


def test_the_deployment_identity_key_does_not_change_golden_ids(county_kit, monkeypatch):
    monkeypatch.setenv("HUB_IDENTITY_KEY", "a-deployment-secret")
    result = run("--sites-dir", county_kit)
    assert result.exit_code == 0, result.output
    assert os.environ["HUB_IDENTITY_KEY"] == "a-deployment-secret"  # restored afterwards


def test_a_rejection_must_be_the_senders_fault(tmp_path):
    crash = MappingResult(None, [{"severity": "fatal", "code": "exception"}], 500)
    write_golden(crash, tmp_path)
    assert [str(d) for d in golden_differences(crash, tmp_path)] == [
        '(status): expected "4xx", got 500'
    ]


def test_show_prints_the_bundle_and_every_issue_without_writing(county_kit):
    case = county_kit / "county-hospital-a" / "cases" / "admit-inpatient"
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    result = run("--sites-dir", county_kit, "county-hospital-a", "--show", "admit-inpatient")
    assert result.exit_code == 0, result.output
    bundle_text, _, outcome_text = result.output.partition(
        '\n}\n{\n  "resourceType": "OperationOutcome"'
    )
    bundle = json.loads(bundle_text + "\n}")
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    outcome = json.loads('{\n  "resourceType": "OperationOutcome"' + outcome_text)
    # Information issues too, which the golden outcome leaves out.
    assert any(i["severity"] == "information" for i in outcome["issue"])
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before
    refused = run(
        "--sites-dir", county_kit, "county-hospital-a", "--show", "reject-mislabelled-charset"
    )
    assert refused.exit_code == 0 and "rejected (HTTP" in refused.output
    unknown = run("--sites-dir", county_kit, "county-hospital-a", "--show", "nope")
    assert (
        unknown.exit_code == 2
        and "cases: admit-inpatient, reject-mislabelled-charset" in unknown.output
    )
