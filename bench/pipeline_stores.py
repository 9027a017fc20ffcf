"""Documents and registry rows per second through the whole ingestion pipeline, into the database.

    python bench/pipeline_stores.py [--docs 300] [--rows 2000] [--group 1]
        [--backend sqlite --backend postgres]

For each backend (a fresh SQLite file; a fresh schema in the local PostgreSQL
``test`` database): CDA documents (the county-platform kit's accepted
documents, each copy with a new document id and a new resident, so every one
is new data) and one veterans-registry CSV of ``--rows`` synthetic people go
through ``Pipeline.ingest`` exactly as ``$ingest`` would: inbox, mapping,
identity, checks, transaction, provenance, derived colours. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.app import create_app  # noqa: E402
from hub.app import get_hub  # noqa: E402
from hub.identity.resident_id import check_character  # noqa: E402
from tests.va_registry.samples import csv_bytes  # noqa: E402
from tests.va_registry.samples import generated_rows  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KIT = ROOT / "conformance" / "sites" / "county-platform" / "cases"
DOC_ID = re.compile(rb'(root="2\.16\.156\.10011\.1\.1" extension=")[^"]*(")')
RESIDENT = re.compile(rb'(root="2\.16\.156\.10011\.1\.3" extension=")[^"]*(")')


def documents(count: int) -> list[bytes]:
    samples = [
        (d / "input.xml").read_bytes()
        for d in sorted(KIT.iterdir())
        if (d / "expected.json").is_file()
        and (d / "input.xml").is_file()
        and b"RPLC" not in (d / "input.xml").read_bytes()
    ]
    out = []
    for i in range(count):
        body = samples[i % len(samples)]
        first17 = f"370283{1940 + i % 60}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
        number = (first17 + check_character(first17)).encode()
        body = DOC_ID.sub(rb"\g<1>" + f"BENCH-{uuid.uuid4().hex}".encode() + rb"\g<2>", body)
        body = RESIDENT.sub(rb"\g<1>" + number + rb"\g<2>", body)
        out.append(body)
    return out


def run(url: str, docs: list[bytes], registry_csv: bytes, rows: int, group: int = 1) -> dict:
    app = create_app(
        {
            "DATABASE_URL": url,
            "TESTING": True,
            "RATE_LIMIT_PER_SECOND": 0,
            "INGEST_GROUP_SIZE": group,
        }
    )
    hub = get_hub(app)
    try:
        t0 = time.perf_counter()
        statuses: dict[str, int] = {}
        for i in range(0, len(docs), group):
            if group == 1:
                results = [
                    hub.pipeline.ingest("county-platform", docs[i], content_type="application/xml")
                ]
            else:  # as ``hub ingest`` of a folder: group commit
                results = hub.pipeline.ingest_many(
                    "county-platform", docs[i : i + group], content_type="application/xml"
                )
            for result in results:
                statuses[result.status] = statuses.get(result.status, 0) + 1
        cda_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        reg = hub.pipeline.ingest("veterans-registry", registry_csv, content_type="text/csv")
        reg_s = time.perf_counter() - t0
        return {
            "cda_documents": len(docs),
            "cda_statuses": statuses,
            "cda_documents_per_second": round(len(docs) / cda_s, 1),
            "registry_rows": rows,
            "registry_status": reg.status,
            "registry_rows_per_second": round(rows / reg_s, 1),
        }
    finally:
        hub.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument(
        "--group",
        type=int,
        default=1,
        help="documents per group commit (1: one $ingest per document; 50: as hub ingest)",
    )
    args = ap.parse_args()
    docs = documents(args.docs)
    registry_csv = csv_bytes(generated_rows(args.rows))
    out = {}
    for backend in args.backend or ["sqlite", "postgres"]:
        if backend == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
            out[backend] = run(url, docs, registry_csv, args.rows, args.group)
        else:
            schema = f"bench_pipe_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            try:
                out[backend] = run(
                    f"{PG}?options=-csearch_path%3D{schema}",
                    docs,
                    registry_csv,
                    args.rows,
                    args.group,
                )
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        print(f"{backend}: {out[backend]}", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
