"""Audit events of reads are appended in batches off the request path, chain intact, none lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import orjson
from click.testing import CliRunner
from fhirpy import SyncFHIRClient
from sqlalchemy import func
from sqlalchemy import select

from hub.app import create_app
from hub.app import get_hub
from hub.cli import cli
from hub.storage import schema as s
from tests.fixtures import mint_token

T = s.audit_event


def _count(engine, interaction: str | None = None) -> int:
    stmt = select(func.count()).select_from(T)
    if interaction:
        stmt = stmt.where(T.c.interaction == interaction)
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def _verify_cli(database_url: str, instance: str):
    runner = CliRunner(
        env={
            "HUB_DATABASE_URL": database_url,
            "HUB_INSTANCE_PATH": instance,
            "HUB_LOAD_ENTRY_POINTS": "false",
        }
    )
    return runner.invoke(cli, ["audit", "verify"])


def test_concurrent_reads_and_writes_leave_a_chain_that_verifies(
    app, hub, live_server, database_url, app_config
):
    fhir = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {live_server.token}")
    for i in range(4):
        fhir.resource("Patient", name=[{"family": f"Li{i}"}]).save()
    patients = [p["id"] for p in fhir.resources("Patient").fetch_all()]
    hub.audit_writer.flush()
    before = _count(hub.engine)

    def work(i: int) -> None:
        client = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {live_server.token}")
        if i % 5 == 0:  # a write: its event commits in the write's own transaction
            client.resource("Observation", status="final", code={"text": f"w{i}"}).save()
        elif i % 2:
            client.reference("Patient", patients[i % len(patients)]).to_resource()
        else:
            client.resources("Patient").search(family="Li").fetch()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(60)))
    hub.audit_writer.flush()
    rows = _count(hub.engine) - before
    assert rows == 60, "every request, read or write, has exactly one event"
    with hub.engine.connect() as conn:
        seqs = [r.seq for r in conn.execute(select(T.c.seq).order_by(T.c.seq))]
    assert seqs == list(range(1, len(seqs) + 1))
    result = _verify_cli(database_url, app_config["INSTANCE_PATH"])
    assert result.exit_code == 0 and "intact" in result.output, result.output


def test_reads_wait_in_the_queue_and_closing_the_hub_appends_them(app_config):
    # A long interval: nothing is appended before the hub closes (a clean shutdown).
    app = create_app({**app_config, "AUDIT_FLUSH_INTERVAL": 600})
    hub = get_hub(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {mint_token(app)}"}
    for _ in range(5):
        assert client.get("/fhir/Patient", headers=headers).status_code == 200
    engine = hub.engine
    assert _count(engine, "search") == 0, "the reads' events are not yet appended"
    hub.audit_writer.close()
    assert _count(engine, "search") == 5
    hub.close()


def test_a_write_is_audited_in_its_own_transaction_even_when_reads_are_queued(app_config):
    app = create_app({**app_config, "AUDIT_FLUSH_INTERVAL": 600})
    hub = get_hub(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {mint_token(app)}"}
    assert client.get("/fhir/Patient", headers=headers).status_code == 200
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert resp.status_code == 201
    assert _count(hub.engine, "create") == 1, "committed before the answer"
    assert _count(hub.engine, "search") == 0
    hub.audit_writer.close()
    assert _count(hub.engine, "search") == 1
    hub.close()


def test_the_audit_search_sees_reads_answered_before_it(app_config):
    # However long the interval, an auditor's search flushes the queue first.
    app = create_app({**app_config, "AUDIT_FLUSH_INTERVAL": 600})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {mint_token(app)}"}
    auditor = {"Authorization": f"Bearer {mint_token(app, 'user/AuditEvent.rs', labels=())}"}
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    pid = resp.get_json()["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers=headers).status_code == 200
    bundle = client.get(
        f"/fhir/AuditEvent?entity=Patient/{pid}&subtype=read", headers=auditor
    ).get_json()
    get_hub(app).close()
    assert [e["resource"]["subtype"][0]["code"] for e in bundle["entry"]] == ["read"]


def test_events_queued_at_interpreter_exit_are_appended(app_config, tmp_path):
    # A process that serves reads and exits without closing its hub: atexit appends them.
    script = textwrap.dedent(
        f"""
        from hub.app import create_app
        from tests.fixtures import mint_token
        app = create_app({{**{app_config!r}, "AUDIT_FLUSH_INTERVAL": 600}})
        client = app.test_client()
        headers = {{"Authorization": "Bearer " + mint_token(app)}}
        for _ in range(7):
            assert client.get("/fhir/Patient", headers=headers).status_code == 200
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=_root(), timeout=120)
    app = create_app(app_config)
    hub = get_hub(app)
    try:
        assert _count(hub.engine, "search") == 7
        with hub.engine.connect() as conn:
            last = conn.execute(select(T.c.content).order_by(T.c.seq.desc())).scalar()
        assert orjson.loads(last)["subtype"][0]["code"] == "search"
    finally:
        hub.close()


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])
