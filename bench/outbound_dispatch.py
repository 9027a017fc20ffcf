"""Changes per second through outbound dispatch (change feed -> HL7 v2 deliveries).

    python bench/outbound_dispatch.py [--db URL] [--people N] [--repeat R] [--entitlements]

Builds a fresh app (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...?options=-csearch_path%3Dbench``, whose schema must exist and be
empty) with two HL7 v2 hospitals (``events: [Patient]``), loads N Patients (default 2,000) in
transactions of 100, then times :func:`hub.outbound.dispatch` over their creations, and over one
update of each (where the dispatcher also reads the version before, for adapters'
``context.previous``). ``--entitlements`` adds a veteran-entitlement Observation per person and
opts both hospitals into the green channel, one with the grant: what a registry import costs the
dispatcher. Nothing is sent (no socket): the figure is the dispatcher's alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

MANIFEST = """name: {name}
adapter: hl7v2
match: {{sending_application: {app}}}
organization: {{id: {name}, name: {name}, identifier: {{system: "urn:x", value: {name}}}}}
outbound: {{kind: mllp, host: 127.0.0.1, port: 9, events: [Patient]}}
plugins:
  hl7v2: {{send_entitlement: {green}, entitlement_segment: ZVE}}
"""
VETERAN_STATUS = "urn:fhirhub:codesystem:veteran-status"
SENSITIVITY = "urn:fhirhub:codesystem:sensitivity"


def people(start: int, count: int, version: int, entitlements: bool) -> dict:
    entries = []
    for i in range(start, start + count):
        pid = f"p{i}"
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": "王", "given": [f"建国{version}"]}],
            "gender": "male",
            "birthDate": "1950-03-12",
        }
        entries.append({"resource": patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}})
        if entitlements:
            obs = {
                "resourceType": "Observation",
                "id": f"ent-{pid}",
                "meta": {
                    "security": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                            "code": "R",
                        },
                        {"system": SENSITIVITY, "code": "veteran-status"},
                    ]
                },
                "status": "final",
                "code": {"coding": [{"system": VETERAN_STATUS, "code": "veteran-entitlement"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectivePeriod": {"start": f"202{version}-01-01"},
                "valueCodeableConcept": {
                    "coding": [
                        {"system": "urn:fhirhub:codesystem:veteran-category", "code": "veteran"}
                    ]
                },
            }
            entries.append(
                {"resource": obs, "request": {"method": "PUT", "url": f"Observation/ent-{pid}"}}
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def timed_dispatch(hub) -> tuple[float, float, int]:
    """Wall-clock seconds, CPU seconds of this process, messages queued."""
    from hub import outbound

    started, cpu = time.perf_counter(), time.process_time()
    queued = total = 0
    while True:
        queued = outbound.dispatch(hub)
        total += queued
        if queued == 0:
            return time.perf_counter() - started, time.process_time() - cpu, total


def run(db: str | None, count: int, entitlements: bool) -> tuple[list, int]:
    from hub.api.context import get_hub
    from hub.app import create_app
    from hub.security.clients import add_client
    from hub.storage.db import writing

    folder = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    for name, app_name in (("his-a", "HISA"), ("his-b", "HISB")):
        (folder / "sites" / name).mkdir(parents=True)
        (folder / "sites" / name / "site.yaml").write_text(
            MANIFEST.format(name=name, app=app_name, green=str(entitlements).lower()),
            encoding="utf-8",
        )
    app = create_app(
        {
            "DATABASE_URL": db or f"sqlite:///{folder / 'hub.db'}",
            "INSTANCE_PATH": str(folder),
            "LOAD_ENTRY_POINTS": False,
            "PLUGINS": ["fhirhub_plugins.hl7v2"],
            "SITES_DIR": str(folder / "sites"),
            "LOAD_EXAMPLE_SITES": False,
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    hub = get_hub(app)
    try:
        with writing(hub.engine) as conn:
            add_client(conn, "his-a", "system/Patient.rs", "his-a", ["veteran-status"])
            add_client(conn, "his-b", "system/Patient.rs", "his-b", [])
        client = app.test_client()
        token = hub.security.mint("bench", "system/*.cruds", kind="user", grants=("*",))
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        timings = []
        for version in (1, 2):
            for start in range(0, count, 100):
                bundle = people(start, min(100, count - start), version, entitlements)
                resp = client.post("/fhir", json=bundle, headers={"Prefer": "return=minimal"})
                assert resp.status_code == 200, resp.data[:500]
            timings.append(timed_dispatch(hub))
        return timings, count * (2 if entitlements else 1)
    finally:
        hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--entitlements", action="store_true")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"creations": [], "updates": [], "cpu": []}
    for _ in range(args.repeat):
        (created, updated), changes = run(args.db, args.people, args.entitlements)
        rates["creations"].append(changes / created[0])
        rates["updates"].append(changes / updated[0])
        rates["cpu"].append(2 * changes / (created[1] + updated[1]))
        print(
            f"{changes} changes per phase, {created[2] + updated[2]} messages queued: "
            f"creations {changes / created[0]:,.0f}/s, updates {changes / updated[0]:,.0f}/s, "
            f"{rates['cpu'][-1]:,.0f} per CPU second"
        )
    print(
        f"median of {args.repeat}: creations {statistics.median(rates['creations']):,.0f} changes/s, "
        f"updates {statistics.median(rates['updates']):,.0f} changes/s, "
        f"{statistics.median(rates['cpu']):,.0f} changes per CPU second"
    )


if __name__ == "__main__":
    main()
