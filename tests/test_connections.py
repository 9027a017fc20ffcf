"""A request checks out one pooled connection, unpinged, and a read survives a dropped one."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
from fhirpy import SyncFHIRClient

from hub.app import create_app
from hub.app import get_hub


def test_a_read_and_a_search_each_check_out_one_connection(hub, client):
    pid = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Wang"}]}
    ).get_json()["id"]
    hub.audit_writer.flush()
    checkouts: list[int] = []

    def count(*_args) -> None:
        # The request's own thread (the audit writer appends from a thread of its own).
        if threading.get_ident() == me:
            checkouts.append(1)

    me = threading.get_ident()

    sa.event.listen(hub.engine, "checkout", count)
    try:
        for path in (f"/fhir/Patient/{pid}", "/fhir/Patient?name=Wang", "/fhir/Patient"):
            checkouts.clear()
            assert client.get(path).status_code == 200
            assert len(checkouts) == 1, path
    finally:
        sa.event.remove(hub.engine, "checkout", count)


def test_a_read_whose_pooled_connection_was_dropped_is_answered(backend, database_url, tmp_path):
    if backend != "postgres":
        pytest.skip("SQLite has no server to drop a connection")
    name = f"hubtest_{uuid.uuid4().hex[:8]}"
    url = sa.engine.make_url(database_url).update_query_dict({"application_name": name})
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "LOAD_ENTRY_POINTS": False,
            "INSTANCE_PATH": str(tmp_path),
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    hub = get_hub(app)
    assert not hub.engine.pool._pre_ping, "no liveness ping on every checkout"
    from tests.fixtures import LiveServer

    try:
        with LiveServer(app) as server:
            fhir = SyncFHIRClient(server.fhir, authorization=f"Bearer {server.token}")
            patient = fhir.resource("Patient", name=[{"family": "Zhao"}])
            patient.save()
            hub.audit_writer.flush()
            admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = :n"
                    ),
                    {"n": name},
                ).scalar()
            admin.dispose()
            assert killed >= 1, "the hub's pooled connections were dropped"
            again = fhir.reference("Patient", patient.id).to_resource()
            assert again.id == patient.id
            assert fhir.resources("Patient").search(family="Zhao").count() == 1
    finally:
        hub.close()
