"""PostgreSQL requests without needless round trips: reads outside a transaction, search
time limits enforced by the watchdog (no statement of their own), audit appends pipelined."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event
from sqlalchemy import text

from hub import audit
from hub.security import audit_verify
from hub.storage import db
from hub.storage import deadlines


def on_postgres(test):
    marked = pytest.mark.parametrize("backend", ["postgres"], indirect=True)(test)
    return pytest.mark.postgres(marked)


def _statements_of_this_thread(engine):
    """(statement, autocommit, in a transaction) of each statement this thread runs."""
    seen = []
    me = threading.get_ident()

    def record(conn, _cursor, statement, _params, _context, _many):
        if threading.get_ident() == me:
            raw = conn.connection.driver_connection
            seen.append((statement, raw.autocommit, raw.info.transaction_status != 0))

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


@on_postgres
def test_a_request_reads_and_searches_outside_a_transaction(hub, client):
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Q"}]})
    pid = made.get_json()["id"]
    seen, stop = _statements_of_this_thread(hub.engine)
    try:
        assert client.get(f"/fhir/Patient/{pid}").status_code == 200
        assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
        assert client.get("/fhir/Patient?name=Q").get_json()["total"] == 1
        assert client.get(f"/fhir/Patient/{pid}/$everything").status_code == 200
    finally:
        stop()
    assert seen
    # No BEGIN before them, no ROLLBACK after: one round trip per statement.
    assert all(autocommit and not in_transaction for _, autocommit, in_transaction in seen), seen


@on_postgres
def test_a_search_in_a_bundle_still_reads_in_the_bundles_transaction(client):
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "B"}]})
    assert made.status_code == 201
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?name=B"}}],
    }
    resp = client.post("/fhir", json=bundle)
    assert resp.status_code == 200
    assert resp.get_json()["entry"][0]["resource"]["total"] == 1


@on_postgres
def test_the_watchdog_cancels_a_block_past_its_deadline(database_url):
    engine = db.make_engine(database_url)
    try:
        with db.standalone_reads(engine) as conn:
            started = time.monotonic()
            with pytest.raises(Exception) as caught:
                with db.statement_timeout(conn, 0.2):
                    conn.execute(text("SELECT pg_sleep(5)"))
            assert db.is_timeout(caught.value)
            assert time.monotonic() - started < 3
            # The connection is usable at once, and no setting was left on it.
            assert conn.execute(text("SHOW statement_timeout")).scalar() in ("0", "0ms")
    finally:
        engine.dispose()


@on_postgres
def test_a_cancel_that_lands_between_statements_is_sent_again(database_url):
    """The limit is on the block: a deadline passed while the client was between two
    statements (the server ignores a cancel then) still stops the next statement."""
    engine = db.make_engine(database_url)
    try:
        with db.standalone_reads(engine) as conn:
            with pytest.raises(Exception) as caught:
                with db.statement_timeout(conn, 0.1):
                    conn.execute(text("SELECT 1"))
                    time.sleep(0.3)  # past the deadline, idle
                    started = time.monotonic()
                    conn.execute(text("SELECT pg_sleep(5)"))
            assert db.is_timeout(caught.value)
            assert time.monotonic() - started < 3
    finally:
        engine.dispose()


@on_postgres
def test_a_block_that_ended_is_never_cancelled(database_url):
    """Blocks that end just before their deadline leave the watchdog first: the statements
    their connection runs next are not cancelled."""
    engine = db.make_engine(database_url)
    try:
        with db.standalone_reads(engine) as conn:
            for _ in range(30):
                try:
                    with db.statement_timeout(conn, 0.01):
                        conn.execute(text("SELECT 1"))
                except Exception as err:  # a slow machine: cancelled inside its block is fine
                    assert db.is_timeout(err)
                time.sleep(0.01)
                assert conn.execute(text("SELECT pg_sleep(0.02), 1")).one()[1] == 1
    finally:
        engine.dispose()


def test_the_watchdog_sleeps_until_the_earliest_deadline():
    """A registration wakes the thread only for a deadline earlier than the one it waits for."""
    dog = deadlines.Watchdog()

    class Conn:
        cancels = 0

        def cancel_safe(self, timeout):
            Conn.cancels += 1

    conn = Conn()
    with dog.guard(conn, 30):
        with dog.guard(conn, 0.05):
            time.sleep(0.3)
    assert Conn.cancels >= 1
    cancelled = Conn.cancels
    time.sleep(0.2)
    assert Conn.cancels == cancelled  # none after the blocks ended


@on_postgres
def test_batched_audit_appends_keep_the_chain(hub):
    events = [audit.build_event(interaction="read", who=f"r{i}") for i in range(7)]
    first = audit.record_batch(hub.engine, events[:3])
    last = audit.record_batch(hub.engine, events[3:])
    assert last.seq == first.seq + 4
    audit.record_now(hub.engine, audit.build_event(interaction="read", who="one"))
    with hub.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, who FROM audit_event ORDER BY seq")).all()
    assert [r.who for r in rows][-8:] == [f"r{i}" for i in range(7)] + ["one"]
    assert audit_verify.verify(hub.engine).ok
