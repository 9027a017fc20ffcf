"""Bulk export throughput and memory: ``$export`` of the 100 Synthea patients (or any database).

    python bench/bulk_export.py [--db URL] [--skip-load] [--page-size N] [--out FILE]

Loads the Synthea bundles (``../shared/samples/synthea``, the data ``bench/ingest.py`` posts)
through the hub's write path (``hub load``'s code) into a fresh database (default: a temporary
SQLite file; PostgreSQL with ``--db postgresql+psycopg://...?options=-csearch_path%3Dbench_bulk``,
whose schema must exist and be empty), kicks off a system-level ``$export`` over HTTP (the
Flask test client, ``Prefer: respond-async``) and runs the job in a separate process exactly
as ``hub worker`` does. Reports resources per second (lines written / the job's wall time),
the files, and the worker process's resident memory before the job and at its peak
(``VmRSS``, and ``VmHWM`` reset before the job; Linux): the export streams page by page, so the peak should not grow with the data.

``--skip-load`` exports what the database already holds (e.g. the million-resource schema
``bench/search_million.py`` builds: ``--db ...?options=-csearch_path%3Dbench_million``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

DATA = (
    Path(
        os.environ.get(
            "HUB_SAMPLES_DIR", Path(__file__).resolve().parents[2] / "shared" / "samples"
        )
    )
    / "synthea"
)


def _config(db: str, instance: str, page_size: int) -> dict:
    return {
        "DATABASE_URL": db,
        "INSTANCE_PATH": instance,
        "LOAD_ENTRY_POINTS": False,
        "RATE_LIMIT_PER_SECOND": 0,
        "BULK_PAGE_SIZE": page_size,
        "LIFETIME_INLINE": False,
    }


def load(db: str, instance: str, page_size: int) -> int:
    from hub.app import create_app
    from hub.app import get_hub
    from hub.fhir import bundles
    from hub.fhir.service import WriteOptions

    app = create_app(_config(db, instance, page_size))
    hub = get_hub(app)
    paths = sorted(DATA.glob("*.json"))
    if not paths:
        raise SystemExit(f"no Synthea bundles in {DATA} (set HUB_SAMPLES_DIR)")
    for path in paths:
        bundles.process(
            hub.service, orjson.loads(path.read_bytes()), "", WriteOptions(prefer_return="minimal")
        )
    hub.close()
    return len(paths)


def kick_off(db: str, instance: str, page_size: int) -> str:
    from hub.app import create_app
    from hub.app import get_hub

    app = create_app(_config(db, instance, page_size))
    hub = get_hub(app)
    token = hub.security.mint("bench", "system/*.rs", kind="user", grants=["*"])
    client = app.test_client()
    r = client.get(
        "/fhir/$export",
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
    )
    assert r.status_code == 202, r.get_data(as_text=True)
    hub.close()
    return r.headers["Content-Location"].rsplit("/", 1)[1]


def _reset_peak() -> None:
    """Start the peak-RSS count (``VmHWM``) afresh: the job's peak, not start-up's."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_worker(db: str, instance: str, page_size: int) -> dict:
    """In the child process: one worker step, timed, with its memory."""
    from hub.app import create_app
    from hub.app import get_hub
    from hub.bulk import status
    from hub.storage.jobs import JobStore

    app = create_app(_config(db, instance, page_size))
    hub = get_hub(app)
    _reset_peak()
    before_kib = _status_kib("VmRSS")
    t0 = time.perf_counter()
    ran = status.run_due(hub, worker="bench")
    seconds = time.perf_counter() - t0
    peak_kib = _status_kib("VmHWM")
    (job,) = JobStore(hub.engine).list(limit=1)
    hub.close()
    assert ran == 1 and job.status == "done", job.outcome
    output = job.manifest["output"]
    lines = sum(i["count"] for i in output)
    return {
        "resources": lines,
        "seconds": round(seconds, 2),
        "resources_per_second": round(lines / seconds, 1),
        "files": len(output),
        "types": len({i["type"] for i in output}),
        "rss_before_mib": round(before_kib / 1024, 1),
        "rss_peak_mib": round(peak_kib / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite file)")
    ap.add_argument("--skip-load", action="store_true", help="Export what the database holds.")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=2, metavar=("DB", "INSTANCE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_worker(args.child[0], args.child[1], args.page_size)))
        return
    instance = tempfile.mkdtemp(prefix="bench-bulk-")
    db = args.db or f"sqlite:///{instance}/hub.db"
    summary: dict = {"database": db.split(":", 1)[0], "page_size": args.page_size}
    if not args.skip_load:
        t0 = time.perf_counter()
        summary["bundles_loaded"] = load(db, instance, args.page_size)
        summary["load_seconds"] = round(time.perf_counter() - t0, 1)
    kick_off(db, instance, args.page_size)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--page-size",
            str(args.page_size),
            "--child",
            db,
            instance,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    summary.update(json.loads(child.stdout.strip().splitlines()[-1]))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
