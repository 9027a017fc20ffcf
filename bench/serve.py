"""Start a throw-away hub for a benchmark: fresh database, gunicorn, loopback port.

    with hub_server("sqlite") as base_url:
        ...  # http://127.0.0.1:PORT/fhir

``backend`` is ``sqlite`` (a new file in a temporary folder) or ``postgres``
(a new schema in the local server's ``test`` database, dropped afterwards).
A ``bench`` client with every scope is registered; :func:`auth_headers` gives
the bearer token header for requests to the running hub.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

TOKEN: str | None = None
# The environment of the hub started by :func:`hub_server` (for a `hub worker` beside it).
ENV: dict[str, str] | None = None
PROC: subprocess.Popen | None = None  # the running gunicorn master


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header for the hub started by :func:`hub_server`."""
    return {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


PG_URL = os.environ.get(
    "HUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def hub_server(backend: str, workers: int = 2, threads: int = 4, extra_env: dict | None = None):
    tmp = tempfile.mkdtemp(prefix="hub-bench-")
    schema = None
    env = dict(os.environ, HUB_INSTANCE_PATH=tmp, **(extra_env or {}))
    if backend == "sqlite":
        env["HUB_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    elif backend == "postgres":
        from sqlalchemy import create_engine
        from sqlalchemy import text

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        env["HUB_DATABASE_URL"] = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    # Migrate once before the workers start, so they do not race to create tables.
    subprocess.run(
        [sys.executable, "-m", "hub.cli", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    global TOKEN
    hub_cli = [sys.executable, "-m", "hub.cli"]
    subprocess.run(
        [*hub_cli, "clients", "add", "bench", "--scopes", "system/*.cruds", "--grant-label", "*"],
        env=env,
        check=True,
        capture_output=True,
    )
    TOKEN = subprocess.run(
        [*hub_cli, "token", "bench", "--lifetime", "86400"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    env["HUB_AUTO_MIGRATE"] = "false"
    global ENV
    ENV = env
    # Benchmarks send far more requests per client than a site does.
    env.setdefault("HUB_RATE_LIMIT_PER_SECOND", "0")
    # As `hub serve --gunicorn` sets it: threaded workers keep fewer malloc arenas.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
            "hub.wsgi:app",
        ],
        env=env,
    )
    global PROC
    PROC = proc
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/metadata", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the hub did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
        if schema:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def worker_rss_mib() -> list[float]:
    """Resident memory (MiB) of each web worker of the running hub (Linux ``/proc``)."""
    if PROC is None:
        return []
    out = []
    children = Path(f"/proc/{PROC.pid}/task/{PROC.pid}/children")
    for pid in children.read_text().split() if children.exists() else ():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out.append(round(int(line.split()[1]) / 1024, 1))
    return out
