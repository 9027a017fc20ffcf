"""CPU per search of the shared workload's queries, in-process, through the hub's engine.

    python bench/search_workload.py [--db URL] [--data DIR] [--workload FILE] [--query NAME ...]

Loads the Synthea bundles of the shared workload (``../shared/samples/synthea``) as
``bench/search_query.py`` does (a temporary SQLite file by default; a database given
with ``--db`` is reused when it already holds resources), draws the queries
with the shared workload's own ``build_queries`` (same seed, typed patient references)
and reports, per query kind, the median CPU time of a search plus its Bundle
(``getrusage`` through ``time.process_time``: steadier than wall time on a shared
machine) and the SQL statements one search runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import tempfile
import time
from urllib.parse import parse_qsl

import orjson
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from search_query import load  # noqa: E402

from hub.search.bundle import searchset_bytes  # noqa: E402
from hub.search.engine import SearchEngine  # noqa: E402
from hub.search.indexer import Indexer  # noqa: E402
from hub.search.registry import SearchRegistry  # noqa: E402
from hub.storage import schema as S  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
QUERIES = ("observation_code_patient", "observation_patient_sort_date", "condition_code")


def _workload(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location("fhir_workload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _patients(wl, folder: pathlib.Path):
    out = []
    for path in sorted(folder.glob("*.json"))[:100]:
        bundle = orjson.loads(path.read_bytes())
        info = wl.describe_bundle(bundle)
        if info is not None:
            info.server_id = info.src_id.rsplit(":", 1)[-1]  # bench/search_query.py's ids
            out.append(info)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db")
    ap.add_argument("--data", type=pathlib.Path, default=SHARED / "samples" / "synthea")
    ap.add_argument("--workload", type=pathlib.Path, default=SHARED / "bench" / "fhir_workload.py")
    ap.add_argument("--query", action="append", choices=QUERIES)
    ap.add_argument("--repeat", type=int, default=5, help="rounds over the drawn queries")
    ap.add_argument("--n", type=int, default=40, help="queries drawn per kind")
    args = ap.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = sa.create_engine(url)
    registry = SearchRegistry.load()
    engine = SearchEngine(registry)
    with db.connect() as conn:
        filled = (
            sa.inspect(conn).has_table("resource")
            and conn.execute(sa.select(sa.func.count()).select_from(S.resource)).scalar()
        )
    if not filled:
        if not any(args.data.glob("*.json")):
            raise SystemExit(f"no bundles in {args.data} (--data)")
        load(db, args.data, Indexer(registry))
    wl = _workload(args.workload)
    queries = wl.build_queries(_patients(wl, args.data), 20240601, args.n, "typed")
    statements = [0]

    @sa.event.listens_for(db, "before_cursor_execute")
    def _count(*_):
        statements[0] += 1

    print(f"{'query':<32}{'CPU ms p50':>11}{'mean':>8}{'SQL/search':>11}{'entries':>9}")
    with db.connect() as conn:
        for name in args.query or QUERIES:
            searches = []
            for q in queries[name]:
                path, _, qs = q.partition("?")
                searches.append((path, parse_qsl(qs)))
            for rtype, params in searches[:5]:  # warm caches
                engine.search(conn, rtype, params, base_url="http://x/fhir")
            cpu, entries = [], 0
            statements[0] = 0
            for _ in range(args.repeat):
                for rtype, params in searches:
                    c = time.process_time()
                    result = engine.search(conn, rtype, params, base_url="http://x/fhir")
                    searchset_bytes(result, "http://x/fhir")
                    cpu.append(time.process_time() - c)
                    entries += len(result.entries)
            n = len(cpu)
            print(
                f"{name:<32}{statistics.median(cpu) * 1e3:>11.3f}"
                f"{statistics.fmean(cpu) * 1e3:>8.3f}{statements[0] / n:>11.1f}{entries / n:>9.1f}"
            )


if __name__ == "__main__":
    main()
