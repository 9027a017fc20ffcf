"""The green channel through the change feed: REST writes, deletions, merges, grants.

Three hospitals ask through their manifests: ``partner-hospital`` (the example
of docs/green-channel.md: entitlements with a ZVE segment, client with the
``veteran-status`` grant), ``other-hospital`` (asks for entitlements, its client
has no grant) and ``plain-hospital`` (grant, but no ``send_entitlement``: its
results feed must not carry the entitlement as an ORU either). What each would
receive is read from the delivery queue after :func:`hub.outbound.dispatch`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from sqlalchemy import select

from hub import codesystems as cs
from hub import outbound
from hub.api.context import get_hub
from hub.app import create_app
from hub.security.clients import add_client
from hub.security.clients import revoke_client
from hub.storage import schema as s
from hub.storage.db import writing
from tests.fixtures import authed_client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "green-channel" / "partner-hospital" / "site.yaml"
ENTITLEMENT = f"{cs.VETERAN_STATUS}|veteran-entitlement"


def _site(folder: Path, name: str, edit=lambda text: text) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("partner-hospital", name)
    text = text.replace("PARTNER_HIS", name.upper().replace("-", "_"))
    (folder / name).mkdir(parents=True)
    (folder / name / "site.yaml").write_text(edit(text), encoding="utf-8")


@pytest.fixture
def green(app_config, tmp_path):
    folder = tmp_path / "sites"
    _site(folder, "partner-hospital")
    _site(folder, "other-hospital")
    _site(
        folder,
        "plain-hospital",
        lambda t: t.replace("send_entitlement: true", "send_entitlement: false").replace(
            "events: [Patient]", "events: [Patient, Observation]"
        ),
    )
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", "fhirhub_plugins.va_registry"]
    app_config["SITES_DIR"] = str(folder)
    app_config["LOAD_EXAMPLE_SITES"] = False
    app = create_app(app_config)
    hub = get_hub(app)
    with writing(hub.engine) as conn:
        add_client(conn, "partner-his", "system/Patient.rs", "partner-hospital", ["veteran-status"])
        add_client(conn, "other-his", "system/*.rs", "other-hospital", ["mental-health"])
        add_client(conn, "plain-his", "system/*.rs", "plain-hospital", ["veteran-status"])
    yield app, hub
    hub.close()


def patient(pid: str, resident: str, family: str, given: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": cs_resident(), "value": resident}],
        "name": [{"family": family, "given": [given]}],
        "gender": "male",
    }


def cs_resident() -> str:
    from hub.identity import RESIDENT_ID_SYSTEM

    return RESIDENT_ID_SYSTEM


def entitlement(oid: str, pid: str, category: str = "veteran", status: str = "active") -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"security": [dict(cs.RESTRICTED), dict(cs.VETERAN_SENSITIVITY)]},
        "status": "final",
        "category": [{"coding": [{"system": cs.OBSERVATION_CATEGORY, "code": "social-history"}]}],
        "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "veteran-entitlement"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectivePeriod": {"start": "2024-03-01"},
        "identifier": [
            {"system": "urn:fhirhub:identifier:veteran-registry-number", "value": "R-7"}
        ],
        "valueCodeableConcept": {
            "coding": [{"system": cs.VETERAN_CATEGORY, "code": category}],
            "text": "退役士兵",
        },
        "component": [
            {
                "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "benefit-status"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": cs.VETERAN_BENEFIT_STATUS, "code": status}]
                },
            },
            {
                "code": {"coding": [{"system": cs.VETERAN_STATUS, "code": "pension-standard"}]},
                "valueQuantity": {"value": 1000, "unit": "元/月"},
            },
        ],
    }


def queued(hub) -> dict[str, list[str]]:
    """Each site's queued messages as text, oldest first; the queue is emptied."""
    assert outbound.dispatch(hub) >= 0
    d = s.delivery
    out: dict[str, list[str]] = {}
    with writing(hub.engine) as conn:
        for row in conn.execute(select(d.c.site, d.c.body).order_by(d.c.id)):
            out.setdefault(row.site, []).append(bytes(row.body).decode())
        conn.execute(d.delete())
    return out


def field(message: str, segment: str, n: int) -> str | None:
    for seg in message.split("\r"):
        parts = seg.split("|")
        if parts[0] == segment:
            return parts[n] if len(parts) > n else ""
    return None


def entitled(messages: list[str]) -> list[str]:
    return [m for m in messages if field(m, "ZVE", 0) == "ZVE"]


def test_rest_write_change_and_end(green):
    app, hub = green
    fhir = authed_client(app)
    assert fhir.put(
        "/fhir/Patient/p1", json=patient("p1", "370202195003120834", "王", "建国")
    ).status_code in (200, 201)
    queued(hub)  # the Patient's own A31s
    obs = entitlement("ent-1", "p1")
    assert fhir.put("/fhir/Observation/ent-1", json=obs).status_code == 201

    got = queued(hub)
    assert set(got) == {"partner-hospital"}  # no grant: nothing; no opt-in: not even an ORU
    (a31,) = got["partner-hospital"]
    assert field(a31, "MSH", 8) == "ADT^A31^ADT_A05"
    assert field(a31, "PID", 3) == "370202195003120834^^^CHN^NNCHN"
    assert field(a31, "PID", 27) == "veteran^退役军人^99VETCAT"
    assert a31.split("\r")[4] == "ZVE|1|veteran^退役军人^99VETCAT|A|20240301||R-7"

    # A new pension standard is no business of the hospital's: nothing goes out.
    obs["component"][1]["valueQuantity"]["value"] = 1200
    assert fhir.put("/fhir/Observation/ent-1", json=obs).status_code == 200
    assert queued(hub) == {}

    # A new category does.
    obs["valueCodeableConcept"]["coding"][0]["code"] = "disabled-serviceman"
    fhir.put("/fhir/Observation/ent-1", json=obs)
    (a31,) = queued(hub)["partner-hospital"]
    assert field(a31, "PID", 27) == "disabled-serviceman^残疾军人^99VETCAT"

    # Suspended (暂停): the HIS clears it; the ZVE says why.
    obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "suspended"
    fhir.put("/fhir/Observation/ent-1", json=obs)
    (a31,) = queued(hub)["partner-hospital"]
    assert field(a31, "PID", 27) == '""' and field(a31, "ZVE", 3) == "S"

    # Active again, then deleted: the deletion clears it, with an end date.
    obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] = "active"
    fhir.put("/fhir/Observation/ent-1", json=obs)
    queued(hub)
    assert fhir.delete("/fhir/Observation/ent-1").status_code in (200, 204)
    (a31,) = queued(hub)["partner-hospital"]
    assert field(a31, "PID", 3) == "370202195003120834^^^CHN^NNCHN"
    assert field(a31, "PID", 27) == '""'
    assert field(a31, "ZVE", 3) == "E" and len(field(a31, "ZVE", 5)) == 8


def test_merge_moves_the_entitlement_to_the_surviving_record(green):
    app, hub = green
    fhir = authed_client(app)
    fhir.put("/fhir/Patient/dup", json=patient("dup", "370203194811020147", "李", "秀兰"))
    fhir.put("/fhir/Patient/keep", json=patient("keep", "370212195506070819", "李", "秀兰"))
    fhir.put("/fhir/Observation/ent-2", json=entitlement("ent-2", "dup", "martyr-survivor"))
    queued(hub)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "Patient/dup"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/keep"}},
        ],
    }
    assert fhir.post("/fhir/Patient/$merge", json=params).status_code == 200
    messages = entitled(queued(hub)["partner-hospital"])
    assert [(field(m, "PID", 3).split("^")[0], field(m, "PID", 27)) for m in messages] == [
        ("370203194811020147", '""'),  # the merged-away record loses it
        ("370212195506070819", "martyr-survivor^烈士遗属^99VETCAT"),
    ]


def test_no_grant_no_message_and_revocation_stops_them(green):
    app, hub = green
    fhir = authed_client(app)
    fhir.put("/fhir/Patient/p3", json=patient("p3", "370283196001151226", "赵", "德胜"))
    fhir.put("/fhir/Observation/ent-3", json=entitlement("ent-3", "p3"))
    got = queued(hub)
    assert len(entitled(got["partner-hospital"])) == 1
    for site in ("other-hospital", "plain-hospital"):
        assert all(field(m, "PID", 27) in (None, "") for m in got[site])
        assert all("veteran" not in m for m in got[site])

    with writing(hub.engine) as conn:
        assert revoke_client(conn, "partner-his")
    changed = copy.deepcopy(entitlement("ent-3", "p3", "serviceman"))
    fhir.put("/fhir/Observation/ent-3", json=changed)
    assert queued(hub) == {}


def test_a_queued_disclosure_is_withheld_once_the_grant_is_gone(green):
    """Queued with the grant, the client revoked before sending: nothing goes out."""
    app, hub = green
    fhir = authed_client(app)
    fhir.put("/fhir/Patient/p5", json=patient("p5", "370283196001151226", "钱", "立新"))
    queued(hub)  # the Patient's own messages are not the point here
    fhir.put("/fhir/Observation/ent-5", json=entitlement("ent-5", "p5"))
    assert outbound.dispatch(hub) >= 1
    d = s.delivery
    with writing(hub.engine) as conn:
        (row,) = conn.execute(select(d.c.id, d.c.status).where(d.c.site == "partner-hospital"))
        assert row.status == "pending"
        assert revoke_client(conn, "partner-his")
    counts = outbound.deliver(hub)
    assert counts["sent"] == 0 and counts["dead"] == 1
    with writing(hub.engine) as conn:
        kept = conn.execute(
            select(d.c.status, d.c.attempts, d.c.last_error).where(d.c.id == row.id)
        )
        status, attempts, error = kept.one()
        exports = conn.execute(
            select(s.audit_event.c.seq).where(s.audit_event.c.interaction == "export")
        ).all()
    assert (status, attempts) == ("dead", 0)  # never put on the wire
    assert error.startswith("withheld") and "veteran-status" in error
    assert exports == []  # no disclosure happened, none is audited
    # Given the grant again, the operator's retry sends it (here: the send is attempted).
    with writing(hub.engine) as conn:
        add_client(
            conn, "partner-his-2", "system/Patient.rs", "partner-hospital", ["veteran-status"]
        )
    assert outbound.retry(hub, row.id)
    counts = outbound.deliver(hub)
    assert counts["dead"] == 0 and counts["sent"] + counts["retry"] == 1


def test_site_code_table_and_no_segment(tmp_path):
    """A hospital's own PID-27 table (a code-map override) and no Z-segment unless asked."""
    from fhirhub_plugins.hl7v2.entitlement import entitlement_messages
    from hub.mapping import MappingContext
    from hub.mapping import load_code_maps
    from hub.paths import MAPPINGS_DIR
    from hub.sites import load_site

    maps = load_code_maps([MAPPINGS_DIR])
    folder = tmp_path / "own-table"
    _site(
        tmp_path,
        "own-table",
        lambda t: (
            t.replace("entitlement_segment: ZVE", "entitlement_segment: bad!")
            + "code_maps: maps/\n"
        ),
    )
    (folder / "maps").mkdir()
    (folder / "maps" / "veteran-category.yaml").write_text(
        'id: hl7v2-veteran-category\nmap:\n  "05": {code: veteran, display: 退役军人(本院)}\n',
        encoding="utf-8",
    )
    site = load_site(folder, maps)
    context = MappingContext(site, maps)
    obs = entitlement("ent-4", "p4") | {"meta": {"versionId": "1"}}
    (msg,) = entitlement_messages(obs, "create", site, context)
    segments = msg.body.decode().split("\r")
    assert field(msg.body.decode(), "PID", 27) == "05^退役军人(本院)^99VETCAT"
    assert [seg[:3] for seg in segments if seg] == ["MSH", "EVN", "PID", "PV1"]
    # Re-sent changes keep their control id (MSH-10): the HIS can recognise a duplicate.
    (again,) = entitlement_messages(obs, "create", site, context)
    assert again.key == msg.key == field(msg.body.decode(), "MSH", 9)


def test_departure_from_the_registry_clears_it_with_the_date(green):
    """A person missing from the next registry file: the adapter's PATCH ends the status."""
    import datetime as dt

    from fhirhub_plugins.va_registry.departures import departures

    app, hub = green
    fhir = authed_client(app)
    fhir.put("/fhir/Patient/p5", json=patient("p5", "370202195003120834", "王", "建国"))
    fhir.put("/fhir/Observation/ent-5", json=entitlement("ent-5", "p5", "serviceman-family"))
    queued(hub)
    patch = departures(["p5"], [], on=dt.date(2024, 5, 1), programmes=())[0]
    answer = fhir.patch(
        "/fhir/Observation/ent-5",
        json=patch["resource"],
        content_type="application/fhir+json",
    )
    assert answer.status_code == 200, answer.data
    (a31,) = queued(hub)["partner-hospital"]
    assert field(a31, "PID", 27) == '""'
    assert a31.split("\r")[4] == "ZVE|1|serviceman-family^军人家属^99VETCAT|E|20240301|20240501|R-7"
