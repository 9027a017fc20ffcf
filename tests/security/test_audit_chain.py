"""The audit chain resists tampering: keyed hashes, an anchored start, checkpoints outside the DB.

Each test plays an attacker with write access to the database (but not to the
audit key or the checkpoint file) and checks that ``hub audit verify`` names
exactly the events that were touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import os
import stat
import threading

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from hub import audit
from hub.app import create_app
from hub.app import get_hub
from hub.security import audit_verify
from hub.storage import schema as s
from hub.storage.db import writing

T = s.audit_event


def _fill(hub, n: int, who: str = "u") -> None:
    for i in range(n):
        audit.record_now(hub.engine, audit.build_event(interaction="read", who=f"{who}{i}"))


def _rows(hub) -> list:
    with hub.engine.connect() as conn:
        return conn.execute(select(T).order_by(T.c.seq)).all()


def _findings(hub) -> list[str]:
    result = audit_verify.verify(hub.engine)
    assert not result.ok, "tampering went unnoticed"
    return [str(f) for f in result.findings]


def _plain_sha256(prev_hash: str, event_id: str, recorded: str, content: str) -> str:
    """The unkeyed rule anyone can recompute (the scheme of rows written before the key)."""
    h = hashlib.sha256()
    for part in (prev_hash, event_id, recorded, content):
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()


@contextlib.contextmanager
def _hub_with(app_config: dict, **settings):
    app = create_app({**app_config, **settings})
    try:
        yield get_hub(app)
    finally:
        get_hub(app).close()


# -- the four ways the unkeyed chain could be tampered with unnoticed ------------------


def test_deleting_the_oldest_events_is_detected(hub):
    _fill(hub, 15)
    with writing(hub.engine) as conn:
        conn.execute(delete(T).where(T.c.seq <= 10))
    assert _findings(hub) == ["events 1–10 missing"]


def test_changing_only_the_recorded_column_is_detected(hub):
    _fill(hub, 5)
    with writing(hub.engine) as conn:
        conn.execute(
            update(T).where(T.c.seq == 3).values(recorded=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    assert _findings(hub) == ["event 3: recorded column differs from the content"]


@pytest.mark.parametrize(
    ("style", "found"),
    [
        ("plain", "unkeyed hash after the switch to keyed hashes"),
        ("prefixed", "content does not match its hash"),
    ],
)
def test_editing_the_newest_event_with_its_hash_recomputed_is_detected(hub, style, found):
    _fill(hub, 5)
    newest = _rows(hub)[-1]
    doc = orjson.loads(newest.content)
    doc["agent"][0]["who"]["display"] = "nobody"
    content = orjson.dumps(doc).decode()
    digest = _plain_sha256(newest.prev_hash, newest.id, doc["recorded"], content)
    if style == "prefixed":  # imitate the keyed rows' format without the key
        digest = newest.hash[:3] + digest[: len(newest.hash) - 3]
    with writing(hub.engine) as conn:
        conn.execute(
            update(T)
            .where(T.c.seq == newest.seq)
            .values(content=content, who="nobody", hash=digest)
        )
    assert _findings(hub) == [f"event {newest.seq}: {found}"]


def test_rewriting_a_middle_event_and_rechaining_the_rest_is_detected(hub):
    _fill(hub, 8)
    rows = _rows(hub)
    prev = rows[2].hash
    with writing(hub.engine) as conn:
        for row in rows[3:]:
            doc = orjson.loads(row.content)
            if row.seq == 4:
                doc["outcome"] = "0" if doc["outcome"] != "0" else "8"
            content = orjson.dumps(doc).decode()
            digest = _plain_sha256(prev, row.id, doc["recorded"], content)
            conn.execute(
                update(T)
                .where(T.c.seq == row.seq)
                .values(content=content, outcome=doc["outcome"], prev_hash=prev, hash=digest)
            )
            prev = digest
    assert _findings(hub) == ["events 4–8: unkeyed hash after the switch to keyed hashes"]


def test_deleting_a_middle_event_names_it(hub):
    _fill(hub, 6)
    with writing(hub.engine) as conn:
        conn.execute(delete(T).where(T.c.seq == 4))
    assert _findings(hub) == ["event 4 missing"]


def test_the_keyed_hash_covers_every_column(hub):
    _fill(hub, 1)
    row = dict(_rows(hub)[0]._mapping)
    trail = audit.trail_of(hub.engine)
    assert audit.row_hash(trail, row) == row["hash"]
    for column in T.columns:
        if column.name == "hash":
            continue
        value = row[column.name]
        if isinstance(value, dt.datetime):
            changed = value + dt.timedelta(microseconds=1)
        elif isinstance(value, int):
            changed = value + 1
        else:
            changed = (value or "") + " "
        assert audit.row_hash(trail, {**row, column.name: changed}) != row["hash"], column.name


def test_a_changed_prev_hash_is_detected(hub):
    _fill(hub, 3)
    with writing(hub.engine) as conn:
        conn.execute(update(T).where(T.c.seq == 2).values(prev_hash="0" * 64))
    assert _findings(hub) == ["event 2: content does not match its hash"]


def test_concurrent_appends_and_writes_keep_one_gap_free_chain(hub, client):
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> None:
        if i % 3 == 0:  # a write: its event is appended in the write's own transaction
            assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
        else:
            _fill(hub, 1, who=f"t{i}-")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(24)))
    rows = _rows(hub)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 24
    result = audit_verify.verify(hub.engine)
    assert result.ok, result.findings


# -- checkpoints: truncation at the newest end and re-chaining -----------------------------


def _checkpoints(hub) -> list[dict]:
    path = audit.trail_of(hub.engine).checkpoint_file
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_checkpoints_are_written_every_n_events_and_catch_truncation(app_config):
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=5) as hub:
        _fill(hub, 12)
        marks = _checkpoints(hub)
        # Every fifth append writes the (committed) head before it.
        assert [m["seq"] for m in marks] == [4, 9]
        assert {"seq", "hash", "recorded", "count", "mac"} <= set(marks[0])
        assert [m["count"] for m in marks] == [5, 5]
        path = audit.trail_of(hub.engine).checkpoint_file
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert audit_verify.verify(hub.engine).ok
        with writing(hub.engine) as conn:  # the newest events, checkpoint included, deleted
            conn.execute(delete(T).where(T.c.seq >= 7))
        assert _findings(hub) == ["events 7–9 missing"]


def test_rechaining_after_a_checkpoint_is_detected(app_config):
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=5) as hub:
        _fill(hub, 10)  # checkpoints at 4 and 9
        with writing(hub.engine) as conn:
            conn.execute(delete(T).where(T.c.seq >= 6))
        # New, correctly keyed events take the deleted events' places.
        _fill(hub, 5, who="replacement")
        assert _findings(hub) == ["events 5–9: chain after checkpoint at seq 4 rewritten"]


def test_a_forged_checkpoint_line_is_reported(app_config):
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=5) as hub:
        _fill(hub, 6)
        path = audit.trail_of(hub.engine).checkpoint_file
        line = orjson.loads(path.read_text().splitlines()[0])
        line["seq"] = 50
        with path.open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")
        assert _findings(hub) == ["checkpoint line 2: not signed with the audit key"]


def test_checkpoints_are_also_written_every_t_seconds(hub, tmp_path):
    now = [0.0]
    audit.configure(hub.engine, {"AUDIT_CHECKPOINT_SECONDS": 60}, tmp_path, clock=lambda: now[0])
    _fill(hub, 3)
    assert not audit.trail_of(hub.engine).checkpoint_file.exists()
    now[0] = 61.0
    _fill(hub, 1)
    assert [m["seq"] for m in _checkpoints(hub)] == [3]


def test_a_checkpoint_never_records_an_event_that_may_roll_back(app_config):
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=2) as hub:
        with hub.engine.connect().execution_options(hub_write=True) as conn:
            txn = conn.begin()
            for i in range(2):  # the second append is due, but its head is uncommitted
                audit.record(conn, audit.build_event(interaction="read", who=f"t{i}"))
            txn.rollback()
        assert not audit.trail_of(hub.engine).checkpoint_file.exists()
        _fill(hub, 2)  # due again: the head (event 1) is committed now
        assert [m["seq"] for m in _checkpoints(hub)] == [1]
        assert audit_verify.verify(hub.engine).ok


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict]
    arrived: threading.Event

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(orjson.loads(body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    handler = type("Receiver", (_Receiver,), {"received": [], "arrived": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_checkpoints_are_posted_to_the_configured_endpoint(app_config, receiver):
    server, handler = receiver
    url = f"http://127.0.0.1:{server.server_address[1]}/audit-checkpoints"
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=3, AUDIT_CHECKPOINT_URL=url) as hub:
        _fill(hub, 3)  # the third append checkpoints seq 2, posted in the background
        assert handler.arrived.wait(10)
        assert handler.received[0]["seq"] == 2
        handler.arrived.clear()
        mark = audit.checkpoint(hub.engine)  # on demand (``hub audit checkpoint``): synchronous
        assert mark["seq"] == 3
        assert handler.received[-1] == mark == _checkpoints(hub)[-1]


# -- the key, the old scheme, pruning and the command --------------------------------------


def test_the_key_lives_outside_the_database(hub, tmp_path):
    _fill(hub, 2)
    key_file = tmp_path / "audit_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = key_file.read_text().strip()
    with hub.engine.connect() as conn:
        dump = "".join(
            str(v) for t in s.metadata.sorted_tables for r in conn.execute(select(t)) for v in r
        )
    assert key not in dump


def test_a_configured_key_is_used_and_a_different_key_fails(app_config):
    with _hub_with(app_config, AUDIT_KEY="k1-" + "x" * 40) as hub:
        _fill(hub, 2)
        assert audit_verify.verify(hub.engine).ok
    with _hub_with(app_config, AUDIT_KEY="k2-" + "y" * 40) as hub:
        assert _findings(hub) == ["events 1–2: content does not match its hash"]


def _legacy_rows(hub, n: int) -> None:
    """Rows as the unkeyed scheme wrote them (before the upgrade to keyed hashes)."""
    prev = audit.GENESIS
    with writing(hub.engine) as conn:
        for i in range(n):
            event = audit.build_event(interaction="read", who=f"old{i}")
            content = orjson.dumps(event).decode()
            digest = _plain_sha256(prev, event["id"], event["recorded"], content)
            recorded = dt.datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
            conn.execute(
                insert(T).values(
                    id=event["id"],
                    recorded=recorded,
                    content=content,
                    prev_hash=prev,
                    hash=digest,
                    **audit.search_columns(event),
                )
            )
            prev = digest


def test_a_chain_begun_with_plain_hashes_continues_with_keyed_ones(hub):
    _legacy_rows(hub, 3)
    _fill(hub, 3)
    result = audit_verify.verify(hub.engine)
    assert result.ok and result.checked == 6
    assert "events 1–3 use the unkeyed SHA-256 rule of earlier versions" in result.notes
    # A row rewritten with the old rule after the switch to keyed hashes is refused.
    row = _rows(hub)[4]
    doc = orjson.loads(row.content)
    doc["outcome"] = "8"
    content = orjson.dumps(doc).decode()
    digest = _plain_sha256(row.prev_hash, row.id, doc["recorded"], content)
    with writing(hub.engine) as conn:
        conn.execute(
            update(T).where(T.c.seq == row.seq).values(content=content, outcome="8", hash=digest)
        )
    assert _findings(hub) == [
        "event 5: unkeyed hash after the switch to keyed hashes",
        "event 6: does not link to the event before it",
    ]


def test_deleting_the_oldest_plain_hashed_events_is_detected(hub):
    _legacy_rows(hub, 4)
    _fill(hub, 1)
    with writing(hub.engine) as conn:
        conn.execute(delete(T).where(T.c.seq <= 2))
    assert _findings(hub) == ["events 1–2 missing"]


def test_pruning_leaves_a_signed_anchor(hub):
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(days=400)
    for i in range(3):
        audit.record_now(hub.engine, audit.build_event(interaction="read", who=f"old{i}", at=old))
    _fill(hub, 2)
    assert audit.prune(hub.engine, now - dt.timedelta(days=200), 183, now) == 3
    result = audit_verify.verify(hub.engine)
    assert result.ok, result.findings
    assert "events 1–3 pruned" in result.notes
    with writing(hub.engine) as conn:  # one more of the oldest deleted behind the prune's back
        conn.execute(delete(T).where(T.c.seq == 4))
    assert _findings(hub) == ["event 4 missing"]


def test_cli_verify_lists_every_broken_range(database_url, tmp_path, hub):
    from hub.cli import cli

    _fill(hub, 20)
    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    ok = runner.invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and "audit chain intact: 20 events" in ok.output, ok.output
    made = runner.invoke(cli, ["audit", "checkpoint"])
    assert made.exit_code == 0 and "checkpoint at seq 20" in made.output
    with writing(hub.engine) as conn:
        conn.execute(delete(T).where(T.c.seq <= 10))
        conn.execute(update(T).where(T.c.seq == 15).values(who="someone else"))
        conn.execute(delete(T).where(T.c.seq >= 19))
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1
    assert [line for line in broken.output.splitlines() if line.startswith("  ")] == [
        "  events 1–10 missing",
        "  event 15: search columns differ from the content",
        "  events 19–20 missing",
    ]


def test_an_unreachable_endpoint_fails_the_checkpoint_command_but_never_an_append(app_config):
    import socket

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/audit-checkpoints"
    with _hub_with(app_config, AUDIT_CHECKPOINT_EVENTS=2, AUDIT_CHECKPOINT_URL=url) as hub:
        _fill(hub, 3)  # the background post fails and is logged; the appends stand
        assert len(_rows(hub)) == 3
        with pytest.raises(OSError):
            audit.checkpoint(hub.engine)
        assert [m["seq"] for m in _checkpoints(hub)] == [1, 3]  # the file still has both
