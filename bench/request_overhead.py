"""CPU per ``GET /fhir/Patient/{id}`` in one process: what every request pays besides its query.

    python bench/request_overhead.py [--db URL] [--reads 1000] [--repeat 3]

Builds a fresh app (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...?options=-csearch_path%3Dbench``, whose schema must exist and
be empty), registers a client with every scope, loads the first Synthea bundle of
``../shared/samples/synthea`` and reads its Patient ``--reads`` times through the Flask test
client with the client's bearer token (token check, routing, one query, the response, the
read's audit event). Prints, per repetition, wall and CPU milliseconds per read; CPU is the
process's ``getrusage`` time, the audit writer thread included, so it moves far less than wall
time on a loaded machine. Compare two trees by running each alternately (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=SYNTHEA)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hub-overhead-")
    os.environ["HUB_INSTANCE_PATH"] = tmp
    os.environ["HUB_DATABASE_URL"] = args.db or f"sqlite:///{tmp}/bench.db"
    os.environ["HUB_RATE_LIMIT_PER_SECOND"] = "0"
    from hub.api.context import get_hub
    from hub.app import create_app
    from hub.security import clients

    app = create_app()
    with app.app_context():
        hub = get_hub()
        with hub.engine.begin() as conn:
            client, _ = clients.add_client(conn, "bench", "system/*.cruds", None, ["*"])
        token = hub.security.mint(client.client_id, "system/*.cruds", grants=["*"])
    headers = {"Authorization": f"Bearer {token}"}
    web = app.test_client()
    bundle = json.loads(sorted(args.data.glob("*.json"))[0].read_text())
    loaded = web.post("/fhir", json=bundle, headers=headers)
    if loaded.status_code != 200:
        raise SystemExit(f"loading the bundle failed: {loaded.status_code}")
    url = next(
        "/fhir/" + e["response"]["location"].split("/fhir/")[-1].split("/_history")[0]
        for e in loaded.get_json()["entry"]
        if "Patient/" in e["response"]["location"]
    )
    for _ in range(50):
        assert web.get(url, headers=headers).status_code == 200
    for rep in range(args.repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        for _ in range(args.reads):
            web.get(url, headers=headers)
        wall = (time.perf_counter() - t0) * 1000 / args.reads
        cpu = (cpu_seconds() - c0) * 1000 / args.reads
        print(f"repeat {rep + 1}: {wall:.3f} ms wall, {cpu:.3f} ms CPU per read", flush=True)
    one, five, fifteen = os.getloadavg()
    print(f"load average: {one:.2f} {five:.2f} {fifteen:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
