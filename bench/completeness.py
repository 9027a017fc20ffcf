"""Completeness-audit benchmark: N generated people on PostgreSQL, then the dashboard.

    python bench/completeness.py --people 100000 [--url POSTGRES_URL] [--schema bench_completeness]

1. Generates N people (Patients with 17-digit health-record numbers in one
   county, 10 townships, 10 villages each; conditions, follow-ups, health checks,
   blood pressures, family-doctor contracts, newborn screens) straight into the
   ``resource`` table with COPY (no search indexes: the audit does not use them).
2. Runs the audit job (``hub.completeness.batch.run_audit``) for the county and
   the year in a child process and reports wall time and the child's peak RSS.
3. Times the dashboard pages (overview of county and township, first page of
   the gap list) through the Flask app at that size: median of 5 requests.

Prints one JSON document with the figures and the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import subprocess
import sys
import time

import orjson
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub import codesystems as cs

BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COUNTY = "370203"
YEAR = 2025
FOLLOWUP = cs.CARE_PROGRAMME
ENCOUNTER_TYPE = cs.ENCOUNTER_TYPE
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def schema_url(base: str, schema: str) -> str:
    return (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


def person_resources(n: int, rng: random.Random) -> list[tuple[str, str, dict]]:
    """One generated person: ``(type, id, resource)`` rows."""
    pid = f"p{n}"
    subject = {"reference": f"Patient/{pid}"}
    township, village = n % 10 + 1, (n // 10) % 10 + 1
    age = rng.choice([0] * 1 + [rng.randint(1, 64)] * 69 + [rng.randint(65, 95)] * 30)
    birth = dt.date(YEAR - age, rng.randint(1, 12), rng.randint(1, 28))
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "system": "urn:oid:2.16.156.10011.1.3",
                "value": f"{COUNTY}{birth:%Y%m%d}{n % 1000:03d}X",
            },
            {
                "system": "urn:oid:2.16.156.10011.1.2",
                "value": f"{COUNTY}{township:03d}{village:03d}{n % 100000:05d}",
            },
        ],
        "name": [{"text": f"居民{n}"}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": birth.isoformat(),
        "address": [{"text": f"示范镇{village}村"}],
        "managingOrganization": {"reference": f"Organization/clinic-{township}"},
    }
    if rng.random() < 0.8:
        patient["telecom"] = [{"system": "phone", "value": f"138{n:08d}"}]
    rows = [("Patient", pid, patient)]
    k = 0

    def add(res):
        nonlocal k
        k += 1
        res["id"] = f"{pid}-{k}"
        res.setdefault("subject", subject)
        rows.append((res["resourceType"], res["id"], res))

    def encounter(day, type_system, code, cls="AMB"):
        add(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": ACT, "code": cls},
                "type": [{"coding": [{"system": type_system, "code": code}]}],
                "period": {"start": day.isoformat()},
            }
        )

    def day():
        return dt.date(YEAR, rng.randint(1, 12), rng.randint(1, 28))

    for programme, icd, share in (("hypertension", "I10", 0.25), ("diabetes", "E11.9", 0.1)):
        if age >= 35 and rng.random() < share:
            add(
                {
                    "resourceType": "Condition",
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": icd}]},
                    "onsetDateTime": "2018-03-01",
                }
            )
            for _ in range(rng.randint(0, 5)):
                when = day()
                encounter(when, FOLLOWUP, programme, rng.choice(["AMB", "AMB", "HH", "VR"]))
                if programme == "hypertension":
                    add(
                        {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                            "effectiveDateTime": when.isoformat(),
                            "component": [
                                {
                                    "code": {
                                        "coding": [{"system": "http://loinc.org", "code": "8480-6"}]
                                    },
                                    "valueQuantity": {"value": rng.randint(110, 170)},
                                },
                                {
                                    "code": {
                                        "coding": [{"system": "http://loinc.org", "code": "8462-4"}]
                                    },
                                    "valueQuantity": {"value": rng.randint(65, 100)},
                                },
                            ],
                        }
                    )
    if age >= 65 and rng.random() < 0.7:
        encounter(day(), ENCOUNTER_TYPE, "health-check")
    if rng.random() < 0.4:
        add(
            {
                "resourceType": "EpisodeOfCare",
                "status": "active",
                "type": [
                    {
                        "coding": [
                            {
                                "system": cs.CARE_PROGRAMME,
                                "code": "family-doctor-contract",
                            }
                        ]
                    }
                ],
                "extension": [
                    {
                        "url": cs.SERVICE_PACKAGE_EXTENSION,
                        "valueCoding": {
                            "system": cs.SERVICE_PACKAGE,
                            "code": rng.choice(["basic", "intermediate", "advanced"]),
                        },
                    }
                ],
                "patient": subject,
                "period": {"start": f"{YEAR}-01-01", "end": f"{YEAR}-12-31"},
            }
        )
        rows[-1][2].pop("subject", None)
    return rows


def generate(url: str, people: int, seed: int) -> dict:
    from hub.storage import db

    engine = create_engine(url)
    db.create_all(engine)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    count = 0
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(
            "COPY resource (res_type, res_id, version, last_updated, deleted, patient_id, content)"
            " FROM STDIN"
        ) as copy:
            for n in range(1, people + 1):
                for kind, rid, res in person_resources(n, rng):
                    copy.write_row((kind, rid, 1, now, False, f"p{n}", orjson.dumps(res).decode()))
                    count += 1
        raw.commit()
        cur.execute("ANALYZE resource")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    return {"resources": count, "generate_seconds": round(time.perf_counter() - t0, 1)}


def audit_child(url: str) -> None:
    """Run in a fresh process so that its peak RSS is the audit's alone."""
    from hub.completeness.batch import run_audit
    from hub.completeness.periods import Period
    from hub.storage import db

    engine = db.make_engine(url)
    t0 = time.perf_counter()
    run = run_audit(engine, Period.year(YEAR), COUNTY, as_of=dt.date(YEAR, 12, 1))
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "audited_people": run.people,
                "audit_seconds": round(seconds, 1),
                "people_per_second": round(run.people / seconds),
                "audit_peak_rss_mib": round(peak_kib / 1024, 1),
                "with_gaps": run.summary.get("with-gaps"),
            }
        )
    )


def time_pages(url: str) -> dict:
    import re

    from hub.app import create_app
    from hub.app import get_hub
    from hub.security.users import create_user

    app = create_app({"DATABASE_URL": url, "LOAD_ENTRY_POINTS": False, "SECRET_KEY": "bench"})
    with get_hub(app).engine.begin() as conn:
        create_user(conn, "bench", "bench-password", ["admin"], "")
    client = app.test_client()
    page = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    client.post(
        "/ui/login", data={"username": "bench", "password": "bench-password", "csrf_token": token}
    )
    out = {}
    pages = {
        "overview_county": f"/ui/?jurisdiction={COUNTY}&period={YEAR}",
        "overview_township": f"/ui/?jurisdiction={COUNTY}001&period={YEAR}",
        "gaps_first_page": f"/ui/gaps?jurisdiction={COUNTY}&period={YEAR}",
        "gaps_overdue_hypertension": f"/ui/gaps?jurisdiction={COUNTY}&period={YEAR}"
        "&rule=hypertension&overdue=1&sort=next_due",
    }
    for name, path in pages.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            resp = client.get(path)
            times.append(time.perf_counter() - t0)
            assert resp.status_code == 200, (path, resp.status_code)
        out[f"{name}_ms"] = round(1000 * statistics.median(times), 1)
    get_hub(app).close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--url", default=BASE_URL)
    parser.add_argument("--schema", default="bench_completeness")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--keep", action="store_true", help="Keep the schema afterwards.")
    parser.add_argument("--audit-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.audit_child:
        audit_child(args.audit_child)
        return
    url = schema_url(args.url, args.schema)
    admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{args.schema}"'))
    try:
        result = {"people": args.people, **generate(url, args.people, args.seed)}
        child = subprocess.run(
            [sys.executable, __file__, "--audit-child", url],
            capture_output=True,
            text=True,
            check=True,
        )
        result.update(json.loads(child.stdout.strip().splitlines()[-1]))
        result.update(time_pages(url))
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
        admin.dispose()
    result["command"] = "python bench/completeness.py " + " ".join(sys.argv[1:])
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
