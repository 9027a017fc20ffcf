"""Search latency on a database filled with Synthea bundles (p50/p95 per query).

    python bench/search_query.py [BUNDLE_DIR] [--db URL] [--repeat N]

Loads every bundle of BUNDLE_DIR (default: the demo bundles) into a fresh
database (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...``, whose tables are dropped and recreated), with
urn:uuid references resolved to Type/id, then times typical searches.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time
from urllib.parse import parse_qsl

import orjson
import sqlalchemy as sa

import hub
from hub.search.bundle import searchset_bytes
from hub.search.engine import SearchEngine
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.storage import schema as S

DEMO = pathlib.Path(hub.__file__).parent / "data" / "demo" / "synthea"


def _resolve(node, ids):
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve(x, ids) for x in node]
    return node


def load(db, folder: pathlib.Path, indexer: Indexer) -> int:
    S.metadata.drop_all(db)
    S.metadata.create_all(db)
    now = sa.func.now() if db.dialect.name == "postgresql" else None
    seen: set = set()
    count = 0
    t_index = 0.0
    t0 = time.perf_counter()
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].rsplit(':', 1)[-1]}"
            for e in bundle["entry"]
        }
        with db.begin() as conn:
            by_table: dict[str, list] = {}
            for e in bundle["entry"]:
                res = _resolve(e["resource"], ids)
                rtype, rid = ids[e["fullUrl"]].split("/", 1)
                if (rtype, rid) in seen:
                    continue
                seen.add((rtype, rid))
                res["id"] = rid
                t = time.perf_counter()
                result = indexer.index(res)
                t_index += time.perf_counter() - t
                pk = conn.execute(
                    S.resource.insert().values(
                        res_type=rtype,
                        res_id=rid,
                        version=1,
                        last_updated=now if now is not None else sa.func.current_timestamp(),
                        deleted=False,
                        patient_id=result.patient_id,
                        content=orjson.dumps(res).decode(),
                    )
                ).inserted_primary_key[0]
                for table, rows in result.rows.items():
                    for row in rows:
                        row["resource_pk"] = pk
                    by_table.setdefault(table, []).extend(rows)
                count += 1
            for table, rows in by_table.items():
                conn.execute(S.INDEX_TABLES[table].insert(), rows)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    else:
        with db.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    took = time.perf_counter() - t0
    print(
        f"loaded {count} resources in {took:.1f} s "
        f"(indexing {t_index / count * 1e6:.0f} µs/resource)"
    )
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=pathlib.Path, default=DEMO)
    ap.add_argument("--db")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = sa.create_engine(url)
    registry = SearchRegistry.load()
    indexer = Indexer(registry)
    engine = SearchEngine(registry)
    load(db, args.folder, indexer)

    with db.connect() as conn:
        pid = conn.execute(
            sa.select(S.resource.c.res_id).where(S.resource.c.res_type == "Patient").limit(1)
        ).scalar()
        family = orjson.loads(
            conn.execute(sa.select(S.resource.c.content).where(S.resource.c.res_id == pid)).scalar()
        )["name"][0]["family"]
    queries = [
        ("Patient", f"name={family}"),
        ("Patient", "birthdate=ge1980-01-01&gender=female"),
        ("Patient", "address-city=boston&_sort=family"),
        ("Observation", "code=http://loinc.org|8302-2"),
        ("Observation", f"subject=Patient/{pid}&_count=50"),
        ("Observation", f"patient=Patient/{pid}&code=http://loinc.org|29463-7&_sort=-date"),
        ("Observation", "value-quantity=gt100|http://unitsofmeasure.org|mg/dL"),
        ("Observation", "date=ge2018-01-01&category=vital-signs"),
        ("Observation", f"subject:Patient.name={family}"),
        ("Observation", "code=http://loinc.org|8302-2&_include=Observation:subject"),
        ("Observation", "code=http://loinc.org|8302-2&_total=accurate"),
        ("Condition", "code=http://snomed.info/sct|44054006"),
        ("Encounter", f"patient={pid}&date=ge2010"),
        ("Patient", "_has:Observation:subject:code=72166-2"),
        ("Patient", "_id=" + pid + "&_revinclude=Observation:subject&_count=100"),
    ]
    print(f"\n{'query':<80}{'hits':>6}{'p50 ms':>9}{'p95 ms':>9}")
    p50s, cpu50s = [], []
    with db.connect() as conn:
        for rtype, q in queries:
            params = parse_qsl(q)
            times, cpu = [], []
            for _ in range(args.repeat):
                t, c = time.perf_counter(), time.process_time()
                result = engine.search(conn, rtype, params, base_url="http://x/fhir")
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)  # steadier than wall time on a busy machine
            cpu50s.append(statistics.median(cpu) * 1e3)
            times.sort()
            p50 = statistics.median(times) * 1e3
            p50s.append(p50)
            p95 = times[int(len(times) * 0.95) - 1] * 1e3
            print(f"{(rtype + '?' + q)[:79]:<80}{len(result.entries):>6}{p50:>9.2f}{p95:>9.2f}")
        plain = engine.search(conn, "Observation", [("_count", "20")], base_url="")
        assert plain.entries
        t = time.perf_counter()
        for _ in range(args.repeat):
            engine.search(conn, "Observation", [("_count", "20")], base_url="")
        print(
            f"{'Observation?_count=20':<80}{'':>6}{(time.perf_counter() - t) / args.repeat * 1e3:>9.2f}"
        )
        # The Bundle around the largest page: stored JSON spliced in, never parsed.
        big = max(
            (engine.search(conn, t, parse_qsl(q), base_url="") for t, q in queries),
            key=lambda r: len(r.entries),
        )
        c = time.process_time()
        for _ in range(args.repeat * 10):
            searchset_bytes(big, "http://x/fhir")
        spliced = (time.process_time() - c) / (args.repeat * 10) * 1e6
        print(f"searchset Bundle of {len(big.entries)} entries: {spliced:.0f} µs CPU")
    print(
        f"\nmedian of the per-query p50s: {statistics.median(p50s):.2f} ms "
        f"(CPU: {statistics.median(cpu50s):.2f} ms)"
    )


if __name__ == "__main__":
    main()
