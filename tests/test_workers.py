"""Several ``hub worker`` processes sharing one inbox: one killed mid-group loses and doubles nothing.

The workers are real processes (``python -m hub.cli worker``) on the test's
database. One is killed with SIGKILL while it holds a claim; the others take
its claim over once the lease expires. Every message must then be stored
exactly once in effect: one Patient, one Encounter and one Provenance per
message, each at version 1 (a message stored twice would leave a second
version of its Provenance, whose ``recorded`` differs), and every inbox item
``done``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func
from sqlalchemy import select

from hub.storage import schema as s
from tests.fixtures import adt_a04

SITE = "county-hospital-a"
MESSAGES = 120
LEASE_SECONDS = 3
DEADLINE_SECONDS = 300


def message(n: int) -> bytes:
    return adt_a04(n, "W")


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2"]
    return app_config


def _worker(database_url: str, tmp_path) -> subprocess.Popen:
    env = dict(
        os.environ,
        HUB_DATABASE_URL=database_url,
        HUB_INSTANCE_PATH=str(tmp_path),
        HUB_INBOX_LEASE_SECONDS=str(LEASE_SECONDS),
        HUB_INGEST_GROUP_SIZE="10",
        HUB_AUTO_MIGRATE="false",
    )
    # Its log goes to a file: a pipe nobody reads could fill and stall the worker.
    with open(tmp_path / f"worker-{time.monotonic_ns()}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker", "--interval", "0.2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _statuses(hub) -> dict[str, int]:
    return hub.pipeline.inbox.counts()


def _wait_for(condition, what: str, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited early with status {proc.returncode}")
        time.sleep(0.1)  # polling the database for the condition, not timing the test
    raise AssertionError(f"timed out waiting for {what}")


def _count(hub, table, *where) -> int:
    with hub.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_worker_loses_and_doubles_nothing(hub, database_url, tmp_path):
    site = hub.pipeline.site(SITE)
    bodies = [message(n) for n in range(MESSAGES)]
    fmt = hub.pipeline.format_for(site, bodies[0], None)
    hub.pipeline.inbox.receive_many(
        SITE,
        [(b, hub.pipeline.source_key(fmt, b, site)) for b in bodies],
        fmt=fmt,
        claim=False,
    )
    assert _statuses(hub) == {"pending": MESSAGES}

    victim = _worker(database_url, tmp_path)
    others: list[subprocess.Popen] = []
    try:
        # Kill it once it has committed a group and holds the claim of the next one.
        _wait_for(
            lambda: _statuses(hub).get("done", 0) > 0 and _statuses(hub).get("processing", 0) > 0,
            "the first worker's first group",
            [victim],
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        left_claimed = _statuses(hub).get("processing", 0)
        assert left_claimed > 0, "the killed worker held no claim"
        assert _statuses(hub).get("done", 0) < MESSAGES

        others = [_worker(database_url, tmp_path) for _ in range(2)]
        _wait_for(lambda: _statuses(hub) == {"done": MESSAGES}, "every item done", others)
    finally:
        for proc in [victim, *others]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    for res_type in ("Patient", "Encounter", "Provenance"):
        assert _count(hub, s.resource, s.resource.c.res_type == res_type) == MESSAGES, res_type
        versions = _count(hub, s.resource_history, s.resource_history.c.res_type == res_type)
        assert versions == MESSAGES, f"{res_type}: {versions} versions for {MESSAGES} messages"
    # Each item's successful processing was marked once (the killed group's marks rolled back).
    with hub.engine.connect() as conn:
        attempts = conn.execute(select(s.inbox.c.attempts)).scalars().all()
    assert sorted(set(attempts)) == [1]


def test_claim_taken_over_is_left_to_its_new_owner(hub):
    """A worker whose lease expired and was taken over writes nothing for those items."""
    site = hub.pipeline.site(SITE)
    body = message(1)
    fmt = hub.pipeline.format_for(site, body, None)
    hub.pipeline.inbox.receive_many(
        SITE, [(body, hub.pipeline.source_key(fmt, body, site))], fmt=fmt, claim=False
    )
    [item_id] = hub.pipeline.inbox.claim(10, lease_seconds=300)
    mine = hub.pipeline.inbox.get_many([item_id], with_body=True)[item_id]
    # Another process takes the claim over (as after an expired lease) and finishes it.
    [taken] = hub.pipeline.inbox.claim(10, lease_seconds=0)
    assert taken == item_id
    hub.pipeline.process_many([item_id])
    assert _count(hub, s.resource_history, s.resource_history.c.res_type == "Provenance") == 1

    [late] = hub.pipeline._process_items([mine])
    assert _count(hub, s.resource_history, s.resource_history.c.res_type == "Provenance") == 1
    assert late.status == "processing"  # left as it was: the item is not ours
    assert _statuses(hub) == {"done": 1}
