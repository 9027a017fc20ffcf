"""``Patient/{id}/$everything`` latency for a person with 1,000 resources (p50/p95).

    python bench/everything.py [--db URL] [--resources N] [--others K] [--repeat R]

Builds a fresh app (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...?options=-csearch_path%3Dbench``, whose schema must exist and
be empty), loads one synthetic person with N resources (default 1,000: encounters,
observations, conditions, procedures, medication requests, each referring to a practitioner
and an organisation, the person split over two linked Patient records) plus K other people of
the same size, then times ``GET /fhir/Patient/{id}/$everything`` through the Flask test client
(routing, query, Bundle assembly; no network). Reference figure: Medplum answers a Synthea
patient in about 57 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import orjson


def person(pid: str, n: int) -> list[dict]:
    """``n`` resources of one person: two linked Patient records and their clinical data."""
    out: list[dict] = [
        {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1960-01-01"},
        {
            "resourceType": "Patient",
            "id": f"{pid}-old",
            "active": False,
            "link": [{"other": {"reference": f"Patient/{pid}"}, "type": "replaced-by"}],
        },
    ]
    kinds = ("Encounter", "Observation", "Observation", "Observation", "Condition", "Procedure")
    i = 0
    while len(out) < n:
        kind = kinds[i % len(kinds)]
        subject = {"reference": f"Patient/{pid if i % 5 else pid + '-old'}"}
        day = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        rid = f"{pid}-{kind.lower()}-{i}"
        if kind == "Encounter":
            res = {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": subject,
                "period": {"start": day},
                "participant": [{"individual": {"reference": "Practitioner/bench-doc"}}],
                "serviceProvider": {"reference": "Organization/bench-org"},
            }
        elif kind == "Observation":
            res = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": subject,
                "effectiveDateTime": day,
                "valueQuantity": {"value": 60 + i % 40, "unit": "/min"},
                "performer": [{"reference": "Practitioner/bench-doc"}],
            }
        elif kind == "Condition":
            res = {
                "resourceType": "Condition",
                "subject": subject,
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J06.9"}]},
                "onsetDateTime": day,
            }
        else:
            res = {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": subject,
                "code": {"text": "procedure"},
                "performedDateTime": day,
            }
        res["id"] = rid
        out.append(res)
        i += 1
    return out


def load(client, resources: list[dict]) -> None:
    for start in range(0, len(resources), 500):
        chunk = resources[start : start + 500]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in chunk
            ],
        }
        resp = client.post("/fhir", json=bundle, headers={"Prefer": "return=minimal"})
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=None)
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--others", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    from hub.app import create_app

    tmp = tempfile.mkdtemp()
    url = args.db or f"sqlite:///{tmp}/bench.db"
    from hub.app import get_hub

    app = create_app(
        {
            "DATABASE_URL": url,
            "LOAD_ENTRY_POINTS": False,
            "TESTING": True,
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    client = app.test_client()
    token = get_hub(app).security.mint("bench", "system/*.cruds", kind="user", grants=("*",))
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    t0 = time.perf_counter()
    load(
        client,
        [
            {"resourceType": "Practitioner", "id": "bench-doc"},
            {"resourceType": "Organization", "id": "bench-org", "name": "bench"},
        ],
    )
    for k in range(args.others + 1):
        load(client, person(f"p{k}", args.resources))
    loaded = time.perf_counter() - t0
    if url.startswith("postgresql"):
        # What autovacuum does shortly after a load: planner statistics for the new rows.
        from hub.app import get_hub

        with get_hub(app).engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    path = "/fhir/Patient/p0/$everything"
    first = client.get(path)
    body = orjson.loads(first.data)
    entries = len(body["entry"])
    for _ in range(5):  # warm caches and the connection pool
        client.get(path)
    times, cpu = [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        resp = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)  # steadier than wall time on a busy machine
        assert resp.status_code == 200
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    backend = url.split(":", 1)[0]
    print(
        f"{backend}: {args.others + 1} people x {args.resources} resources loaded in {loaded:.1f} s"
    )
    print(
        f"$everything: {entries} entries ({len(first.data) / 1024:.0f} KiB), "
        f"p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms over {args.repeat} calls "
        f"(CPU p50 {statistics.median(cpu):.1f} ms)"
    )


if __name__ == "__main__":
    main()
