"""``Patient/{id}/$everything`` on the shared workload's Synthea patients: CPU per call.

    python bench/everything_synthea.py [--db URL] [--patients N] [--repeat R] [--data DIR]

Builds a fresh app (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...?options=-csearch_path%3Dbench``, whose schema must exist and
be empty), loads the first N Synthea bundles of the shared samples (default 100, as the shared
workload does, each as one transaction), then calls ``$everything`` on every patient R times
through the Flask test client with the workload's kind of token (every scope, every label).
Reports the CPU time of this process per call (``time.process_time``: steadier than wall time
on a shared machine; on PostgreSQL the server's own time is not in it) and the wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"


def as_transaction(bundle: dict) -> dict:
    """The bundle as a transaction (PUT with an id, POST without), as the workload sends it."""
    entries = []
    for entry in bundle.get("entry", []):
        entry = dict(entry)
        res = entry.get("resource") or {}
        if "request" not in entry:
            url = f"{res['resourceType']}/{res['id']}" if res.get("id") else res["resourceType"]
            entry["request"] = {"method": "PUT" if res.get("id") else "POST", "url": url}
        entries.append(entry)
    return {**bundle, "type": "transaction", "entry": entries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=None)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from hub.app import create_app
    from hub.app import get_hub

    url = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
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
    files = sorted(args.data.glob("*.json"))[: args.patients]
    if not files:
        raise SystemExit(f"no Synthea bundles in {args.data} (--data DIR)")
    patients = []
    for path in files:
        bundle = as_transaction(orjson.loads(path.read_bytes()))
        resp = client.post(
            "/fhir", data=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"}
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        for entry in resp.get_json()["entry"]:
            location = entry["response"].get("location", "")
            if "Patient/" in location:
                patients.append(location.split("Patient/")[1].split("/")[0])
                break
    if url.startswith("postgresql"):
        # What autovacuum does shortly after a load: planner statistics for the new rows (the
        # hub's tables only, not every schema of the database).
        from hub.storage.schema import metadata

        with get_hub(app).engine.connect() as conn:
            for table in metadata.sorted_tables:
                conn.exec_driver_sql(f"ANALYZE {table.name}")
            conn.commit()

    for pid in patients:  # warm caches and the connection pool
        client.get(f"/fhir/Patient/{pid}/$everything")
    cpu, wall, entries = [], [], []
    for repeat in range(args.repeat):
        for pid in patients:
            c, w = time.process_time(), time.perf_counter()
            resp = client.get(f"/fhir/Patient/{pid}/$everything")
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
            assert resp.status_code == 200
            if repeat == 0:
                entries.append(len(resp.get_json().get("entry", [])))
    print(
        f"{url.split(':', 1)[0]}: {len(patients)} Synthea patients, "
        f"{statistics.median(entries):.0f} entries (median); $everything CPU p50 "
        f"{statistics.median(cpu):.2f} ms, mean {statistics.mean(cpu):.2f} ms; "
        f"wall p50 {statistics.median(wall):.1f} ms over {len(cpu)} calls"
    )


if __name__ == "__main__":
    main()
