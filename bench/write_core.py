"""The write path's core per resource: structure check, search indexing and the flush.

    python bench/write_core.py [--data DIR] [--bundles N] [--backend sqlite|postgres]

Posts Synthea transaction bundles to an in-process hub (Flask test client, no HTTP server,
no profiler; the first ten bundles warm up) and prints resources per wall second and per CPU
second of this process, then the CPU microseconds per resource of the three parts of the
core (``check_structure``, ``Indexer.index`` and ``Writer.flush``) and of the structure
check and indexing over the same resources alone. CPU seconds move less than wall time on a
shared machine; compare two trees by running this in each, alternately.

PostgreSQL: ``--backend postgres`` uses ``HUB_TEST_POSTGRES_URL`` (default: the local server)
with a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _cpu_meter(owner, name: str, totals: dict) -> None:
    """Replace ``owner.name`` with a wrapper adding its CPU seconds to ``totals[name]``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.process_time() - start

    setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--bundles", type=int, default=40)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp()
    schema = None
    if args.backend == "postgres":
        schema = f"write_core_{uuid.uuid4().hex[:8]}"
        base = os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_PG)
        import sqlalchemy as sa

        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        url = f"{base}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp}/hub.db"
    env = dict(
        os.environ,
        HUB_RATE_LIMIT_PER_SECOND="0",
        HUB_INSTANCE_PATH=tmp,
        HUB_DATABASE_URL=url,
    )
    os.environ.update(env)

    def cli(*a: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", *a], env=env, check=True, capture_output=True
        )
        return done.stdout.decode().strip()

    try:
        cli("db", "upgrade")
        cli("clients", "add", "bench", "--scopes", "system/*.cruds", "--grant-label", "*")
        token = cli("token", "bench", "--lifetime", "86400")
        _run(args, token)
    finally:
        if schema:
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def _run(args, token: str) -> None:
    import hub.search.indexer as indexer_module
    import hub.storage.repository as repository_module
    import hub.validation.structure as structure_module
    from hub.app import create_app

    totals: dict[str, float] = {}
    _cpu_meter(structure_module, "check_structure", totals)
    _cpu_meter(indexer_module.Indexer, "index", totals)
    _cpu_meter(repository_module.Writer, "flush", totals)
    from hub.app import freeze_startup_objects

    app = create_app()
    freeze_startup_objects()  # as hub.wsgi does
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    bodies = [p.read_bytes() for p in sorted(args.data.glob("*.json"))[: args.bundles]]
    for body in bodies[:10]:
        client.post("/fhir", data=body, headers=headers)
    totals.clear()
    measured = bodies[10:]
    if not measured:
        raise SystemExit(f"fewer than 11 bundles in {args.data}")
    n = sum(len(json.loads(b)["entry"]) for b in measured)
    wall, cpu = time.perf_counter(), time.process_time()
    for body in measured:
        assert client.post("/fhir", data=body, headers=headers).status_code == 200
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.backend}: {n} resources in {len(measured)} transactions: "
        f"{n / wall:,.0f} resources/s wall, {n / cpu:,.0f} per CPU second "
        f"({cpu * 1e6 / n:.0f} CPU µs each; load average {os.getloadavg()[0]:.1f})"
    )
    for name, seconds in totals.items():
        print(f"  {name}: {seconds * 1e6 / n:.1f} CPU µs per resource (inside the transactions)")
    _alone(measured)


def _alone(bodies: list[bytes]) -> None:
    """The structure check and indexing over the bundles' resources, out of the request."""
    from hub.search.indexer import Indexer
    from hub.search.registry import SearchRegistry
    from hub.validation.structure import check_structure

    resources = [e["resource"] for b in bodies for e in json.loads(b)["entry"]]
    indexer = Indexer(SearchRegistry.load())
    for name, fn in (("check_structure", check_structure), ("index", indexer.index)):
        runs = []
        for _ in range(3):
            start = time.process_time()
            for res in resources:
                fn(res)
            runs.append(time.process_time() - start)
        best = sorted(runs)[1]
        print(
            f"  {name} alone: {best * 1e6 / len(resources):.1f} CPU µs per resource (median of 3)"
        )


if __name__ == "__main__":
    main()
