"""Limits that keep one search from exhausting the database: chain depth, statement time."""

from __future__ import annotations

import pytest

# _has links nest one subquery each; the innermost parameter is _id.
HAS_LINK = "_has:Provenance:target:"


def _has_chain(links: int) -> str:
    return "/fhir/Patient?_has:Observation:subject:" + HAS_LINK * (links - 1) + "_id=none"


def test_chain_depth_is_limited_with_a_clear_400(client, anon_client, auth_headers):
    client.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert client.get(_has_chain(3)).status_code == 200
    # The deepest allowed search with every row filter on (labels, jurisdiction) still runs:
    # four links of it overflowed SQLite's parser (a 500).
    filtered = auth_headers("system/*.rs", labels=(), jurisdiction="110105001")
    assert anon_client.get(_has_chain(3), headers=filtered).status_code == 200
    resp = client.get(_has_chain(4))
    assert resp.status_code == 400, resp.data
    issue = resp.get_json()["issue"][0]
    assert issue["code"] == "invalid"
    assert "at most 3" in issue["diagnostics"]
    assert issue["expression"][0].startswith("http._has:Observation")
    chained = client.get(
        "/fhir/Observation?subject:Patient.link:Patient.link:Patient.link:Patient.name=x"
    )
    assert chained.status_code == 400


@pytest.mark.parametrize("depth", [10])
def test_chain_depth_is_one_setting(app_config, backend, depth):
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    app_config["SEARCH_MAX_CHAIN_DEPTH"] = depth
    app = create_app(app_config)
    try:
        client = authed_client(app)
        assert client.get(_has_chain(4)).status_code == 200
        assert client.get(_has_chain(11)).status_code == 400
        # Past what the database can parse (SQLite: 6 links) it is a 400, never a 500.
        deep = client.get(_has_chain(8))
        assert deep.status_code in (200, 400), deep.data
        if backend == "sqlite":
            assert deep.status_code == 400
            assert deep.get_json()["issue"][0]["code"] == "too-costly"
    finally:
        get_hub(app).close()


def test_statement_timeout_stops_a_slow_statement(database_url):
    """The same session setup the engine uses cancels a really slow statement."""
    from sqlalchemy import text

    from hub.storage import db

    engine = db.make_engine(database_url)
    slow = (
        "SELECT pg_sleep(5)"
        if engine.dialect.name == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    try:
        with engine.connect() as conn:
            with pytest.raises(Exception) as caught:
                with db.statement_timeout(conn, 0.2):
                    conn.execute(text(slow))
            assert db.is_timeout(caught.value)
        with engine.connect() as conn:
            with db.statement_timeout(conn, 5):
                assert conn.execute(text("SELECT 1")).scalar() == 1
            # The limit ends with the block.
            if engine.dialect.name == "postgresql":
                assert conn.execute(text("SHOW statement_timeout")).scalar() in ("0", "0ms")
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_slow_search_answers_503_too_costly(app_config, backend):
    """A search blocked past SEARCH_TIMEOUT (here: a table locked by another session) is
    stopped and answered with an OperationOutcome, not left hanging or turned into a 500."""
    from sqlalchemy import create_engine
    from sqlalchemy import text

    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    app_config["SEARCH_TIMEOUT"] = 0.3
    app = create_app(app_config)
    locker = create_engine(app_config["DATABASE_URL"])
    try:
        client = authed_client(app)
        assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
        assert client.get("/fhir/Patient").status_code == 200
        with locker.connect() as conn, conn.begin():
            conn.execute(text("LOCK TABLE resource IN ACCESS EXCLUSIVE MODE"))
            resp = client.get("/fhir/Patient?gender=female")
        assert resp.status_code == 503, resp.data
        issue = resp.get_json()["issue"][0]
        assert issue["code"] == "too-costly"
        assert "SEARCH_TIMEOUT" in issue["diagnostics"]
        # The connection went back to the pool without the limit or an aborted transaction.
        assert client.get("/fhir/Patient").status_code == 200
    finally:
        locker.dispose()
        get_hub(app).close()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_chain_and_has_links_do_not_hinge_on_statistics(hub, client, monkeypatch):
    """On PostgreSQL each chain/_has link is an InitPlan run once whose values drive index
    lookups: as joins, tables never analysed made the planner loop over every reference
    for every match (a _has over 20 000 Observations took 21 s; now well under one)."""
    from hub.search import engine as engine_module
    from hub.search.engine import SearchEngine

    # The state this test is about: tables without (fresh) statistics. Whether the worker's
    # schema has them otherwise depends on the tests run before it (``hub db upgrade``
    # analyses the empty tables; earlier tests' rows make those statistics stale); the
    # switch to the semi-join once they are fresh is test_search_plans.py's.
    monkeypatch.setattr(engine_module, "_statistics_fresh", lambda conn: False)

    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
    pid = pid.get_json()["id"]
    client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "c1"}]},
            "subject": {"reference": f"Patient/{pid}"},
        },
    )
    engine: SearchEngine = hub.service.search_engine
    with hub.engine.connect() as conn:
        for res_type, params in (
            ("Patient", [("_has:Observation:patient:code", "c1")]),
            ("Observation", [("subject:Patient.gender", "female")]),
        ):
            result = engine.search(conn, res_type, [*params, ("_explain", "true")])
            assert len(result.entries) == 1
            plan = "\n".join(result.explain["plan"])
            assert "InitPlan" in plan, plan
