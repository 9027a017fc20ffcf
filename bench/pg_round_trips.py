"""PostgreSQL: a read's statement in a transaction against standalone, in one process.

    HUB_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/pg_round_trips.py [N]

Alternates, five times, N runs of each way of running ``Patient/<id>``'s statement:
in a transaction (``BEGIN``, the SELECT, ``ROLLBACK``: how a request read before)
and standalone (autocommit, :func:`hub.storage.db.standalone_reads`); then a REST
search's set-up before (``BEGIN``, ``set_config('statement_timeout')``, the SELECT,
``ROLLBACK``) and now (autocommit, the watchdog's deadline, the SELECT). Prints
the median and minimum client CPU (``time.thread_time``) and wall time per run.
Works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from hub.storage import db
from hub.storage import schema as S
from hub.storage.repository import _CURRENT_COLS

BASE = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def main(n: int) -> None:
    schema = "bench_rt_" + uuid.uuid4().hex[:8]
    admin = make_url(BASE).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(BASE).update_query_dict({"options": f"-csearch_path={schema}"})
        run(url.render_as_string(hide_password=False), n)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run(url: str, n: int) -> None:
    engine = db.make_engine(url)
    db.create_all(engine)
    r = S.resource
    stmt = select(*_CURRENT_COLS).where(r.c.res_type == "Patient", r.c.res_id == "x")

    def in_transaction():
        with engine.connect() as c:
            c.execute(stmt).first()

    def standalone():
        with db.standalone_reads(engine) as c:
            c.execute(stmt).first()

    def search_before():
        with engine.connect() as c:
            c.exec_driver_sql(
                "SELECT set_config('statement_timeout', %(v)s, true)", {"v": "30000ms"}
            )
            c.execute(stmt).first()

    def search_now():
        with db.standalone_reads(engine) as c, db.statement_timeout(c, 30):
            c.execute(stmt).first()

    ways = {
        "read in a transaction": in_transaction,
        "read standalone": standalone,
        "search set-up before": search_before,
        "search set-up now": search_now,
    }
    out: dict[str, list] = {name: [] for name in ways}
    for f in ways.values():
        for _ in range(200):
            f()
    for _ in range(5):
        for name, f in ways.items():
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(n):
                f()
            out[name].append(
                ((time.thread_time() - cpu) * 1e6 / n, (time.perf_counter() - wall) * 1e6 / n)
            )
    for name, runs in out.items():
        cpu = sorted(x[0] for x in runs)
        wall = sorted(x[1] for x in runs)
        print(
            f"{name:22s} client CPU median {cpu[2]:.0f} us (min {cpu[0]:.0f}),"
            f" wall median {wall[2]:.0f} us (min {wall[0]:.0f})"
        )
    engine.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
