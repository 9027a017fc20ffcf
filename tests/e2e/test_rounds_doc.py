"""docs/rounds.md as a partner platform reads it: its JSON examples posted with fhirpy to a
running hub, then found in the veteran's $everything, lifetime file and the bureau's report."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from hub.cli import cli
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.resident_id import normalise
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "rounds.md"
SD = "http://fhirhub.org/fhir/StructureDefinition/"


def examples() -> list[dict]:
    """The transaction Bundles of docs/rounds.md, in the order the page gives them."""
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [json.loads(b) for b in blocks]


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.va_registry"]
    return app_config


@pytest.fixture
def veteran(hub):
    """The registry export (raw CSV) ingested: 王建国 is a registered beneficiary."""
    result = hub.pipeline.ingest(
        "veterans-registry", csv_bytes([list(p) for p in PEOPLE]), content_type="text/csv"
    )
    assert result.status == "done", result.outcome
    number = normalise(PEOPLE[0][2])
    assert number in DOC.read_text(encoding="utf-8")  # the page's examples are about him
    return patient_id_for_resident_id(number)


@pytest.fixture
def fhir(live_server):
    return SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )


def _ids(bundle: dict, kind: str) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", ())
        if e.get("resource", {}).get("resourceType") == kind
    }


def test_the_examples_are_recorded_and_found(veteran, fhir, database_url, tmp_path):
    remote, consultation = examples()
    posted = [fhir.execute("", method="post", data=b) for b in (remote, consultation)]
    # response.location: [base/]Type/id/_history/n
    locations = [
        e["response"]["location"].split("/_history")[0] for r in posted for e in r["entry"]
    ]
    created = {tuple(loc.split("/")[-2:]) for loc in locations}
    rounds = {i for kind, i in created if kind == "Encounter"}
    (plan,) = [i for kind, i in created if kind == "CarePlan"]
    assert len(rounds) == 2

    # Stored as sent, the conditional references resolved to the veteran and the hospital.
    for rid in rounds:
        enc = fhir.reference("Encounter", rid).to_resource()
        assert enc["subject"]["reference"] == f"Patient/{veteran}"
        assert enc["serviceProvider"]["reference"].startswith("Organization/")
        assert enc["meta"]["profile"] == [SD + "veteran-round"]
    found = fhir.resources("Encounter").search(
        patient=veteran, type="urn:fhirhub:codesystem:encounter-type|remote-round"
    )
    assert len(found.fetch()) == 1

    everything = fhir.execute(f"Patient/{veteran}/$everything", method="get")
    assert rounds <= _ids(everything, "Encounter")
    assert plan in _ids(everything, "CarePlan")
    assert len(_ids(everything, "Practitioner")) == 2 and len(_ids(everything, "Organization")) >= 1

    document = fhir.execute(f"Patient/{veteran}/$lifetime-file", method="get")
    composition = document["entry"][0]["resource"]
    (key,) = [
        s for s in composition["section"] if s["code"]["coding"][0]["code"] == "key-populations"
    ]
    listed = {e["reference"] for e in key.get("entry", ())}
    assert {f"Encounter/{i}" for i in rounds} | {f"CarePlan/{plan}"} <= listed

    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_LOAD_ENTRY_POINTS": "false",
        "HUB_PLUGINS": '["fhirhub_plugins.va_registry"]',
    }
    out = tmp_path / "report.csv"
    args = ["export", "veterans-report", "--since", "2026-05-01", "--until", "2026-05-31"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [
        (r["姓名"], r["事件"], r["日期"], r["医疗机构"], r["巡诊次数"], r["会诊次数"]) for r in rows
    ] == [
        ("王建国", "远程巡诊", "2026-05-06", "青岛市某合作医院", "1", "1"),
        ("王建国", "专家会诊", "2026-05-18", "青岛市某合作医院", "1", "1"),
    ]


def test_the_same_examples_sent_twice_keep_one_doctor_and_hospital(veteran, fhir):
    for bundle in examples():
        fhir.execute("", method="post", data=bundle)
    fhir.execute("", method="post", data=examples()[0])
    assert len(fhir.resources("Practitioner").fetch_all()) == 2
    assert len(fhir.resources("Organization").search(name="青岛市某合作医院").fetch_all()) == 1
    assert len(fhir.resources("Encounter").search(patient=veteran).fetch_all()) == 3


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"class": "VR", "kind": "home-round"}, "vr-2"),  # a home round at a distance
        ({"class": "AMB", "kind": "expert-consultation"}, "vr-3"),  # neither remote nor home
    ],
)
def test_a_round_breaking_the_profile_is_refused(veteran, fhir, change, rule):
    fhir.execute("", method="post", data=examples()[0])  # the hospital the second one names
    bundle = copy.deepcopy(examples()[1])
    enc = bundle["entry"][1]["resource"]
    enc["class"]["code"] = change["class"]
    enc["type"][0]["coding"][0]["code"] = change["kind"]
    with pytest.raises(OperationOutcome) as refused:
        fhir.execute("", method="post", data=bundle)
    assert rule in str(refused.value)
    assert len(fhir.resources("Encounter").search(patient=veteran).fetch()) == 1  # nothing added


def test_a_plan_without_its_round_is_refused(veteran, fhir):
    bundle = copy.deepcopy(examples()[0])
    plan = bundle["entry"][3]["resource"]
    del plan["encounter"]
    with pytest.raises(OperationOutcome) as refused:
        fhir.execute("", method="post", data=bundle)
    assert "CarePlan.encounter" in str(refused.value)
