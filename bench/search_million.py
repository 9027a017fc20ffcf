"""Search at a million resources on PostgreSQL, with every query's plan checked for index use.

    python bench/search_million.py [--copies 46] [--db URL] [--keep]

Fills a fresh PostgreSQL schema (``bench_million`` in the local ``test``
database by default) with the 100 Synthea patients replicated ``--copies``
times under new ids (46 copies: 1,009,884 resources), indexed by the hub's
own indexer and written with ``COPY`` (loading goes straight to the tables:
this benchmark measures search, ``bench/ingest.py`` measures the write path).
Then it times the issue's search mix through ``SearchEngine`` (p50/p95 over
``--repeat`` runs, parameters drawn from the data) and prints each query's
plan, failing when a plan scans a large table sequentially.

Results go to stdout as JSON (``--out`` also writes them).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
import zoneinfo
from pathlib import Path

import orjson
import sqlalchemy as sa

from hub.search.engine import SearchEngine
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.storage import schema as S
from hub.storage.repository import bulk_insert

DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BIG = ("resource", "sp_token", "sp_string", "sp_date", "sp_reference", "sp_quantity", "compartment")


def _rewrite(node, ids):
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(x, ids) for x in node]
    return node


def load(db, bundles: list[dict], copies: int, indexer: Indexer) -> int:
    S.metadata.drop_all(db)
    S.metadata.create_all(db)
    pk = 0
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    t0 = time.perf_counter()
    total = copies * sum(len(b["entry"]) for b in bundles)
    for copy in range(copies):
        for bundle in bundles:
            ids = {
                e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4()}"
                for e in bundle["entry"]
            }
            resources, by_table = [], {}
            for e in bundle["entry"]:
                res = _rewrite(e["resource"], ids)
                rtype, rid = ids[e["fullUrl"]].split("/", 1)
                res["id"] = rid
                res["meta"] = {"versionId": "1", "lastUpdated": now}
                result = indexer.index(res)
                pk += 1
                resources.append(
                    {
                        "pk": pk,
                        "res_type": rtype,
                        "res_id": rid,
                        "version": 1,
                        "patient_id": result.patient_id,
                        "content": orjson.dumps(res).decode(),
                    }
                )
                for table, rows in result.rows.items():
                    for row in rows:
                        row["resource_pk"] = pk
                    by_table.setdefault(table, []).extend(rows)
            with db.begin() as conn:
                raw = conn.connection.driver_connection
                with (
                    raw.cursor() as cur,
                    cur.copy(
                        "COPY resource (pk, res_type, res_id, version, last_updated, deleted, patient_id, content) FROM STDIN"
                    ) as cp,
                ):
                    for r in resources:
                        cp.write_row(
                            (
                                r["pk"],
                                r["res_type"],
                                r["res_id"],
                                1,
                                now.replace("T", " ").rstrip("Z"),
                                False,
                                r["patient_id"],
                                r["content"],
                            )
                        )
                for table, rows in by_table.items():
                    bulk_insert(conn, S.INDEX_TABLES[table], rows)
        done = (copy + 1) * total // copies
        rate = done / (time.perf_counter() - t0)
        print(f"  loaded {done:,}/{total:,} resources ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    with db.begin() as conn:
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('resource', 'pk'), :v)"), {"v": pk}
        )
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return pk


def sample(db) -> dict:
    with db.connect() as conn:
        pids = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT res_id FROM resource WHERE res_type='Patient' ORDER BY random() LIMIT 50"
                )
            )
        ]
        families = [
            orjson.loads(r[0])["name"][0]["family"]
            for r in conn.execute(
                sa.text(
                    "SELECT content::text FROM resource WHERE res_type='Patient' ORDER BY random() LIMIT 50"
                )
            )
        ]
        loinc = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT code FROM sp_token WHERE res_type='Observation' AND param='code' AND system='http://loinc.org' GROUP BY code ORDER BY count(*) DESC LIMIT 10"
                )
            )
        ]
        snomed = [
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT code FROM sp_token WHERE res_type='Condition' AND param='code' GROUP BY code ORDER BY count(*) DESC LIMIT 10"
                )
            )
        ]
    return {"pids": pids, "families": families, "loinc": loinc, "snomed": snomed}


def queries(s: dict, rng: random.Random) -> list[tuple[str, str, str]]:
    pid, fam = rng.choice(s["pids"]), rng.choice(s["families"])
    year = rng.randint(1930, 2000)
    return [
        ("patient_name", "Patient", f"name={fam}&_count=20"),
        ("patient_birthdate_ge", "Patient", f"birthdate=ge{year}-01-01&_count=20"),
        (
            "observation_code_patient",
            "Observation",
            f"code=http://loinc.org|{rng.choice(s['loinc'])}&patient=Patient/{pid}",
        ),
        (
            "observation_patient_sorted",
            "Observation",
            f"patient=Patient/{pid}&_sort=-date&_count=50",
        ),
        (
            "condition_code",
            "Condition",
            f"code=http://snomed.info/sct|{rng.choice(s['snomed'])}&_count=20",
        ),
        (
            "encounter_revinclude",
            "Encounter",
            f"patient=Patient/{pid}&_revinclude=Observation:encounter&_count=20",
        ),
        ("observation_chained_name", "Observation", f"patient.name={fam}&_count=20"),
        (
            "patient_has_observation",
            "Patient",
            f"_has:Observation:patient:code=http://loinc.org|{rng.choice(s['loinc'])}&_count=20",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=PG + "?options=-csearch_path%3Dbench_million")
    ap.add_argument("--copies", type=int, default=46)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--skip-load", action="store_true", help="Reuse the data of an earlier run.")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA, help="Folder of the Synthea bundles.")
    args = ap.parse_args()
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS bench_million"))
    db = sa.create_engine(args.db)
    registry = SearchRegistry.load()
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    indexer, engine = Indexer(registry, default_tz=tz), SearchEngine(registry, default_tz=tz)
    bundles = [orjson.loads(p.read_bytes()) for p in sorted(args.data.glob("*.json"))]
    t0 = time.perf_counter()
    count = None if args.skip_load else load(db, bundles, args.copies, indexer)
    load_s = time.perf_counter() - t0
    with db.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM resource")).scalar()
    s = sample(db)
    rng = random.Random(42)
    timings: dict[str, list[float]] = {}
    plans: dict[str, list[str]] = {}
    seq_scans: dict[str, list[str]] = {}
    with db.connect() as conn:
        for _ in range(args.repeat):
            for name, rtype, query in queries(s, rng):
                params = [tuple(p.split("=", 1)) for p in query.split("&")]
                t = time.perf_counter()
                result = engine.search(conn, rtype, params, base_url="")
                timings.setdefault(name, []).append((time.perf_counter() - t) * 1000)
                if name not in plans:
                    plan = (
                        engine.search(
                            conn, rtype, [*params, ("_explain", "true")], base_url=""
                        ).explain
                        or {}
                    )
                    lines = plan.get("plan") or [] if isinstance(plan, dict) else []
                    plans[name] = lines
                    bad = [
                        ln
                        for ln in lines
                        if "Seq Scan on" in ln and any(f"Seq Scan on {t} " in ln + " " for t in BIG)
                    ]
                    if bad:
                        seq_scans[name] = bad
                assert result is not None
    summary = {
        "resources": count,
        "load_seconds": round(load_s, 1),
        "queries": {
            n: {
                "p50_ms": round(statistics.median(v), 2),
                "p95_ms": round(sorted(v)[int(len(v) * 0.95) - 1], 2),
            }
            for n, v in timings.items()
        },
        "sequential_scans_of_large_tables": seq_scans,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    for name, lines in plans.items():
        print(f"\n-- {name}", file=sys.stderr)
        for ln in lines[:25]:
            print("   " + ln, file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    if seq_scans:
        raise SystemExit(f"sequential scans of large tables in: {', '.join(seq_scans)}")


if __name__ == "__main__":
    main()
