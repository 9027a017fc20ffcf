"""Reads from a real streaming replica (READ_DATABASE_URL), writes and read-your-writes on the primary.

``tools/pg_replica.sh`` makes (once) a PostgreSQL standby of the test server on
another loopback port with ``pg_basebackup -R``. The test pauses the standby's
replay, so what it serves is provably the replica's: a Patient written on the
primary is not found by a plain search, and is found by a search carrying the
write's ``X-Hub-Write-LSN`` (the replica is behind it, so the hub reads from the
primary). Once replay resumes and passes that LSN, the plain search finds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
REPLICA_PORT = int(os.environ.get("HUB_TEST_REPLICA_PORT", "5433"))
HEADER = "X-Hub-Write-LSN"


@pytest.fixture(scope="session")
def replica_port():
    if shutil.which("pg_basebackup") is None and not os.environ.get("CI"):
        pytest.skip("pg_basebackup is not installed")
    run = subprocess.run(
        [str(ROOT / "tools" / "pg_replica.sh"), str(REPLICA_PORT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    yield int(run.stdout.strip().splitlines()[-1])
    # Stopped with its slot dropped: a replica nobody runs must not hold the primary's WAL.
    subprocess.run(
        [str(ROOT / "tools" / "pg_replica.sh"), "stop", str(REPLICA_PORT)],
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def replica_url(pg_schema_url, replica_port) -> str:
    return make_url(pg_schema_url).set(port=replica_port).render_as_string(hide_password=False)


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.fixture
def app_config(app_config, replica_url):
    app_config["READ_DATABASE_URL"] = replica_url
    return app_config


def _replayed(engine, lsn: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT pg_last_wal_replay_lsn() >= CAST(:l AS pg_lsn)"), {"l": lsn}
            ).scalar()
        )


def _wait_replayed(engine, lsn: str) -> None:
    deadline = time.monotonic() + 120
    while not _replayed(engine, lsn):
        assert time.monotonic() < deadline, f"the replica did not reach {lsn}"
        time.sleep(0.05)  # polling the replica's progress, not timing the test


def _primary_lsn(hub) -> str:
    with hub.engine.connect() as conn:
        return conn.execute(sa.text("SELECT CAST(pg_current_wal_insert_lsn() AS text)")).scalar()


@pytest.mark.postgres
def test_searches_read_the_replica_and_own_writes_the_primary(hub, live_server):
    replica = hub.read_engine
    assert replica is not None
    _wait_replayed(replica, _primary_lsn(hub))  # the schema and tables are there
    http = live_server.session()
    with replica.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SELECT pg_wal_replay_pause()"))
    try:
        created = http.post(
            live_server.fhir + "/Patient",
            json={"resourceType": "Patient", "name": [{"family": "副本测试"}]},
        )
        assert created.status_code == 201, created.text
        lsn = created.headers[HEADER]
        patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]

        plain = http.get(live_server.fhir + "/Patient", params={"family": "副本测试"})
        assert plain.status_code == 200
        assert plain.json().get("entry", []) == []
        assert http.get(f"{live_server.fhir}/Patient/{patient_id}").status_code == 404

        own = http.get(
            live_server.fhir + "/Patient", params={"family": "副本测试"}, headers={HEADER: lsn}
        )
        assert [e["resource"]["id"] for e in own.json()["entry"]] == [patient_id]
        read = http.get(f"{live_server.fhir}/Patient/{patient_id}", headers={HEADER: lsn})
        assert read.status_code == 200
        # Not an LSN the hub handed out: the primary answers (never an error).
        odd = http.get(f"{live_server.fhir}/Patient/{patient_id}", headers={HEADER: "x'; --"})
        assert odd.status_code == 200
    finally:
        with replica.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_wal_replay_resume()"))

    _wait_replayed(replica, lsn)
    caught_up = http.get(live_server.fhir + "/Patient", params={"family": "副本测试"})
    assert [e["resource"]["id"] for e in caught_up.json()["entry"]] == [patient_id]
