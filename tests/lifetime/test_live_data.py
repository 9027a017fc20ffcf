"""Colours and Groups as live data: the change-feed consumer, ``$colours``, ``hub groups``."""

from __future__ import annotations

import datetime as dt

from hub.identity.ids import stable_id
from hub.lifetime import consumer
from hub.lifetime import groups
from hub.lifetime.visibility import Visibility
from tests.lifetime.conftest import condition
from tests.lifetime.conftest import patient

HOUSEHOLD = "urn:fhirhub:identifier:household-number"
RECORD = "urn:oid:2.16.156.10011.1.2"
MENTAL = ("urn:fhirhub:codesystem:sensitivity", "mental-health")


def colour_flags(fhir, pid):
    bundle = fhir.get(f"Flag?subject=Patient/{pid}")
    return {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]["status"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    }


def displayed(fhir, pid):
    params = fhir.get(f"Patient/{pid}/$colours")["parameter"]
    return [p["valueCoding"]["code"] for p in params if p["name"] == "displayed"]


def test_colours_follow_the_evidence(fhir, hub):
    fhir.put(patient("p", birthDate="1960-01-01"))
    fhir.put(condition("htn", "p", "I10"))
    assert displayed(fhir, "p") == ["orange"]  # $colours computes from what is stored
    assert colour_flags(fhir, "p") == {}  # not written until the consumer runs
    consumer.drain(hub)
    assert colour_flags(fhir, "p") == {"orange": "active"}
    fhir.put(condition("ca", "p", "C16.9", onset=dt.date.today().isoformat()))
    consumer.drain(hub)
    assert colour_flags(fhir, "p") == {"red": "active", "orange": "active"}
    assert displayed(fhir, "p") == ["red"]
    provs = fhir.get("Provenance?_count=50")["entry"]
    assert any(e["resource"]["activity"].get("text") == "five-colour classification" for e in provs)
    # evidence removed: the colour is lifted (inactive), not forgotten
    client = fhir.client
    assert client.delete("/fhir/Condition/ca").status_code == 200
    consumer.drain(hub)
    assert colour_flags(fhir, "p") == {"red": "inactive", "orange": "active"}
    # nothing changed: another round writes nothing
    before = fhir.get("Flag?_count=50")["entry"]
    consumer.drain(hub)
    assert fhir.get("Flag?_count=50")["entry"] == before


def test_colours_hide_what_the_caller_may_not_see(fhir, hub):
    fhir.put(patient("m"))
    fhir.put(condition("scz", "m", "F20.0"))
    fhir.put(condition("htn", "m", "I10"))
    assert displayed(fhir, "m") == ["yellow"]
    hub.visibility_for = lambda call: Visibility(hidden_labels=(MENTAL,))
    params = fhir.get("Patient/m/$colours")["parameter"]
    assert [p["valueCoding"]["code"] for p in params if p["name"] == "displayed"] == ["orange"]
    assert all(
        f["resource"]["code"]["coding"][0]["code"] != "yellow"
        for f in (p for p in params if p["name"] == "flag")
    )


def test_colours_of_an_unknown_patient(fhir):
    fhir.get("Patient/nobody/$colours", status=404)


def _member_ids(fhir, gid):
    group = fhir.get(f"Group/{gid}")
    return sorted(m["entity"]["reference"] for m in group["member"])


def test_households_and_villages_follow_the_patients(fhir, hub):
    village = "410102001101"
    for pid, household, seq in (("a", "H1", "00001"), ("b", "H1", "00002"), ("c", "H2", "00003")):
        fhir.put(
            patient(
                pid,
                identifier=[
                    {"system": HOUSEHOLD, "value": household},
                    {"system": RECORD, "value": village + seq},
                ],
            )
        )
    consumer.drain(hub)
    h1, h2, v = (
        stable_id("household", "H1"),
        stable_id("household", "H2"),
        stable_id("village", village),
    )
    assert _member_ids(fhir, h1) == ["Patient/a", "Patient/b"]
    assert _member_ids(fhir, h2) == ["Patient/c"]
    assert _member_ids(fhir, v) == ["Patient/a", "Patient/b", "Patient/c"]
    # b moves to household H2; c's record is merged away (inactive)
    fhir.put(
        patient(
            "b",
            identifier=[
                {"system": HOUSEHOLD, "value": "H2"},
                {"system": RECORD, "value": village + "00002"},
            ],
        )
    )
    fhir.put(patient("c", active=False, identifier=[{"system": HOUSEHOLD, "value": "H2"}]))
    consumer.drain(hub)
    assert _member_ids(fhir, h1) == ["Patient/a"]
    assert _member_ids(fhir, h2) == ["Patient/b"]
    assert _member_ids(fhir, v) == ["Patient/a", "Patient/b"]
    # the last member leaves: the Group goes
    fhir.put(patient("a"))
    consumer.drain(hub)
    fhir.get(f"Group/{h1}", status=410)


def test_groups_rebuild(fhir, hub, runner, monkeypatch):
    fhir.put(patient("a", identifier=[{"system": HOUSEHOLD, "value": "H9"}]))
    stale = {
        "resourceType": "Group",
        "id": stable_id("household", "GONE"),
        "type": "person",
        "actual": True,
        "code": {"coding": [{"system": "urn:fhirhub:codesystem:group-kind", "code": "household"}]},
        "identifier": [{"system": HOUSEHOLD, "value": "GONE"}],
    }
    fhir.put(stale)
    counts = hub.repo.write(groups.rebuild)
    assert counts == {"household": 1, "village": 0, "deleted": 1}
    assert _member_ids(fhir, stable_id("household", "H9")) == ["Patient/a"]
    fhir.get(f"Group/{stale['id']}", status=410)


def _cli_env(database_url, tmp_path):
    return {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_LOAD_ENTRY_POINTS": "false",
    }


def test_worker_and_groups_commands(fhir, database_url, tmp_path):
    from click.testing import CliRunner

    from hub.cli import cli

    fhir.put(patient("w", identifier=[{"system": HOUSEHOLD, "value": "H7"}]))
    fhir.put(condition("htn", "w", "I10"))
    env = _cli_env(database_url, tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "change(s) checked for colours and groups" in result.output
    assert colour_flags(fhir, "w") == {"orange": "active"}
    assert _member_ids(fhir, stable_id("household", "H7")) == ["Patient/w"]
    rebuilt = CliRunner().invoke(cli, ["groups", "rebuild"], env=env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "1 household and 0 village group(s), 0 stale group(s) deleted" in rebuilt.output
