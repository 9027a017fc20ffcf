"""Search at a million resources on PostgreSQL, with every query's plan checked for index use.

    python bench/search_million.py [--copies 46] [--schema NAME] [--db URL] [--skip-load]

Fills a fresh PostgreSQL schema (``bench_million`` in the local ``test``
database by default; several GB, drop it afterwards) with the 100 Synthea
patients replicated ``--copies`` times under new ids (46 copies: 1,009,884
resources). The first copy is indexed by the hub's own indexer and written with
``COPY``; the others are its resource and index rows replicated in SQL with
shifted keys and ids, and the indexes are built once at the end (loading goes
straight to the tables: this benchmark measures search, ``bench/ingest.py``
measures the write path). Then it times the issue's search mix through
``SearchEngine`` on the hub's own database engine (p50/p95 over ``--repeat``
runs, parameters drawn from the data) and prints each query's plan, failing
when a plan scans a large table sequentially. With another tree's ``hub`` on
``PYTHONPATH`` and ``--skip-load`` it times that tree's engine on the same data.

Results go to stdout as JSON (``--out`` also writes them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
from hub.storage.db import make_engine
from hub.storage.repository import bulk_insert

DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BIG = ("resource", "sp_token", "sp_string", "sp_date", "sp_reference", "sp_quantity", "compartment")


# Ids of the first copy start with eight zeros; copy k's ids start with k in hex instead
# (still UUIDs), so replicating a copy is a prefix change in every id and reference.
FIRST = "00000000"


def _rewrite(node, ids):
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(x, ids) for x in node]
    return node


def _copy_rows(bundles: list[dict], indexer: Indexer, now: str):
    """The first copy: every resource under a new id, indexed by the hub's own indexer."""
    resources, by_table = [], {}
    loaded_at = dt.datetime.fromisoformat(now)
    for bundle in bundles:
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{FIRST}{str(uuid.uuid4())[8:]}"
            for e in bundle["entry"]
        }
        for e in bundle["entry"]:
            res = _rewrite(e["resource"], ids)
            rtype, rid = ids[e["fullUrl"]].split("/", 1)
            res["id"] = rid
            res["meta"] = {"versionId": "1", "lastUpdated": now}
            result = indexer.index(res)
            pk = len(resources) + 1
            resources.append(
                {
                    "pk": pk,
                    "res_type": rtype,
                    "res_id": rid,
                    "version": 1,
                    "last_updated": loaded_at,
                    "deleted": False,
                    "patient_id": result.patient_id,
                    "content": orjson.dumps(res).decode(),
                }
            )
            for table, rows in result.rows.items():
                for row in rows:
                    row["resource_pk"] = pk
                by_table.setdefault(table, []).extend(rows)
    return resources, by_table


def _without_indexes(conn) -> list[str]:
    """Drop the tables' indexes and keys (built once after the load); their DDL to restore."""
    restore = []
    for table in S.metadata.sorted_tables:
        for name, definition in conn.execute(
            sa.text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"
            ),
            {"t": table.name},
        ):
            conn.execute(sa.text(f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{name}"'))
            restore.append(f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{name}" {definition}')
        for name, definition in conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename = :t"
            ),
            {"t": table.name},
        ):
            conn.execute(sa.text(f'DROP INDEX "{name}"'))
            restore.append(definition)
    return restore


def _shifted(column: str, table: str) -> str:
    """The SQL of ``column`` in copy ``:k``: keys shifted by ``:n``, ids re-prefixed."""
    if column in ("pk", "resource_pk"):
        return f"{column} + CAST(:k AS bigint) * :n"
    if column == "content":
        return f"CAST(replace(CAST(content AS text), '{FIRST}-', :prefix) AS jsonb)"
    if (table, column) in _ID_COLUMNS:
        return f"CASE WHEN {column} LIKE '{FIRST}-%' THEN :prefix || substr({column}, 10) ELSE {column} END"
    return column


# Columns that hold resource ids (and so change from copy to copy).
_ID_COLUMNS = {
    ("resource", "res_id"),
    ("resource", "patient_id"),
    ("sp_reference", "target_id"),
    ("compartment", "comp_id"),
}


def load(db, bundles: list[dict], copies: int, indexer: Indexer) -> int:
    """Fill the schema with ``copies`` copies of the bundles; returns the resources' count.

    Only the first copy goes through the indexer (and ``COPY``); the others are that
    copy's resource and index rows replicated in SQL with shifted keys and ids, and
    the indexes are built once at the end. The tables are UNLOGGED (no WAL for
    gigabytes of rows): reading them, which is all this benchmark times, is the same.
    """
    S.metadata.drop_all(db)
    S.metadata.create_all(db)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    t0 = time.perf_counter()
    resources, by_table = _copy_rows(bundles, indexer, now)
    n = len(resources)
    print(
        f"  indexed the first copy: {n:,} resources ({time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    with db.begin() as conn:
        for table in S.metadata.sorted_tables:
            conn.execute(sa.text(f'ALTER TABLE "{table.name}" SET UNLOGGED'))
        restore = _without_indexes(conn)
        bulk_insert(conn, S.resource, resources)
        for table, rows in by_table.items():
            bulk_insert(conn, S.INDEX_TABLES[table], rows)
    tables = [S.resource, *(S.INDEX_TABLES[t] for t in by_table)]
    for k in range(1, copies):
        with db.begin() as conn:
            for table in tables:
                cols = [c.name for c in table.c]
                shifted = ", ".join(_shifted(c, table.name) for c in cols)
                key = "pk" if table is S.resource else "resource_pk"
                conn.execute(
                    sa.text(
                        f'INSERT INTO "{table.name}" ({", ".join(cols)})'
                        f' SELECT {shifted} FROM "{table.name}" WHERE {key} <= :n'
                    ),
                    {"k": k, "n": n, "prefix": f"{k:08x}-"},
                )
        done = (k + 1) * n
        rate = done / (time.perf_counter() - t0)
        print(
            f"  loaded {done:,}/{copies * n:,} resources ({rate:,.0f}/s)",
            file=sys.stderr,
            flush=True,
        )
    t1 = time.perf_counter()
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
        for ddl in restore:
            conn.execute(sa.text(ddl))
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('resource', 'pk'), :v)"),
            {"v": copies * n},
        )
        print(
            f"  built {len(restore)} indexes ({time.perf_counter() - t1:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        t1 = time.perf_counter()
        # VACUUM sets the visibility map, which index-only scans need; ANALYZE the statistics.
        conn.execute(sa.text("VACUUM ANALYZE"))
        print(
            f"  vacuumed and analysed ({time.perf_counter() - t1:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    return copies * n


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
    ap.add_argument("--schema", default="bench_million", help="PostgreSQL schema to fill.")
    ap.add_argument("--db", default=PG, help="PostgreSQL database (the schema goes in it).")
    ap.add_argument("--copies", type=int, default=46)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--skip-load", action="store_true", help="Reuse the data of an earlier run.")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA, help="Folder of the Synthea bundles.")
    args = ap.parse_args()
    admin = sa.create_engine(args.db, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{args.schema}"'))
    sep = "&" if "?" in args.db else "?"
    # The hub's own engine: its connections' settings are part of what is measured.
    db = make_engine(f"{args.db}{sep}options=-csearch_path%3D{args.schema}")
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
        "engine": str(Path(sys.modules[SearchEngine.__module__].__file__).parents[2]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
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
