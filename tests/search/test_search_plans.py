"""The workload's key searches on PostgreSQL, planned over a table of tens of thousands of rows.

A generated population (300 patients, each with observations, conditions and
encounters: about 24,000 resources and their index rows) is written with the
hub's own indexer, analysed, and every key query's plan is checked: no
sequential scan of the resource or index tables, no sort that carries the
resources' JSON (the page's pks are ordered first, and only the page's rows are
read), and token and reference lookups answered from the index alone.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid

import orjson
import pytest
import sqlalchemy as sa
from search_helpers import PG_URL
from search_helpers import pg_schema_engine

from hub.storage import schema as S
from hub.storage.db import analyze
from hub.storage.repository import bulk_insert

pytestmark = pytest.mark.postgres

PATIENTS = 300
LOINC = [f"{1000 + i}-{i % 10}" for i in range(20)]
SNOMED = [str(400000 + i) for i in range(15)]
RARE = "9999-9"
BIG = ("resource", "sp_token", "sp_string", "sp_date", "sp_reference", "compartment")


def _population(rng: random.Random, patients: int = PATIENTS):
    for p in range(patients):
        pid = str(uuid.UUID(int=rng.getrandbits(128)))
        yield {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": f"Family{p % 50}", "given": ["Test"]}],
            "gender": "female" if p % 2 else "male",
            "birthDate": f"{1930 + p % 70}-0{1 + p % 9}-1{p % 9}",
        }
        subject = {"reference": f"Patient/{pid}"}
        encounters = []
        for e in range(10):
            eid = str(uuid.UUID(int=rng.getrandbits(128)))
            encounters.append(eid)
            yield {
                "resourceType": "Encounter",
                "id": eid,
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": subject,
                "period": {"start": f"20{10 + e}-03-04T10:00:00Z"},
            }
        for c in range(10):
            yield {
                "resourceType": "Condition",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": SNOMED[c]}]},
                "subject": subject,
            }
        if p % 100 == 0:
            # A code only three patients have: _has must start from its few index rows.
            yield {
                "resourceType": "Observation",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": RARE}]},
                "subject": subject,
            }
        for o in range(60):
            yield {
                "resourceType": "Observation",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": LOINC[o % 20]}]},
                "subject": subject,
                "encounter": {"reference": f"Encounter/{encounters[o % 10]}"},
                "effectiveDateTime": f"20{10 + o % 10}-05-0{1 + o % 9}T08:00:00Z",
                "valueQuantity": {"value": o, "unit": "mg", "system": "http://unitsofmeasure.org"},
            }


def _pg_engine():
    return pg_schema_engine("plans")


def _write(eng, indexer, population, flush_statistics: bool = False) -> int:
    """Store ``population`` with its index rows (no ANALYZE); returns the resources' count.

    ``flush_statistics``: the writing session reports its changes to the statistics
    collector at once (``pg_stat_force_next_flush``, PostgreSQL 15), so that
    ``n_mod_since_analyze`` counts them when the test looks."""
    S.metadata.create_all(eng)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    resources, by_table = [], {}
    for pk, res in enumerate(population, 1):
        result = indexer.index(res)
        resources.append(
            {
                "pk": pk,
                "res_type": res["resourceType"],
                "res_id": res["id"],
                "version": 1,
                "last_updated": now,
                "deleted": False,
                "patient_id": result.patient_id,
                "content": orjson.dumps(res).decode(),
            }
        )
        for table, rows in result.rows.items():
            for row in rows:
                row["resource_pk"] = pk
            by_table.setdefault(table, []).extend(rows)
    with eng.begin() as conn:
        bulk_insert(conn, S.resource, resources)
        for table, rows in by_table.items():
            bulk_insert(conn, S.INDEX_TABLES[table], rows)
        if flush_statistics:
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    return len(resources)


def _analyze(eng) -> None:
    # This schema's tables only: a bare ANALYZE would give statistics to the tables other
    # tests (other xdist workers) keep deliberately never analysed.
    analyze(eng)
    # Pooled connections keep their view of the statistics for a while: start afresh.
    eng.dispose()


@pytest.fixture(scope="module")
def big(indexer):
    """A PostgreSQL schema holding the generated population, analysed."""
    admin, schema, eng = _pg_engine()
    count = _write(eng, indexer, _population(random.Random(7)))
    _analyze(eng)
    with eng.connect() as conn:
        sample = conn.execute(
            sa.text("SELECT res_id FROM resource WHERE res_type = 'Patient' ORDER BY pk LIMIT 1")
        ).scalar()
    yield eng, sample, count
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _queries(pid: str) -> list[tuple[str, str]]:
    return [
        ("Patient", "name=Family7&_count=20"),
        ("Observation", f"code=http://loinc.org|{LOINC[3]}&patient=Patient/{pid}"),
        ("Observation", f"patient=Patient/{pid}&_sort=-date&_count=50"),
        ("Condition", f"code=http://snomed.info/sct|{SNOMED[2]}&_count=20"),
        ("Encounter", f"patient=Patient/{pid}&_revinclude=Observation:encounter&_count=20"),
    ]


def _plan(engine, conn, res_type: str, query: str) -> tuple[list[str], int]:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    result = engine.search(conn, res_type, [*params, ("_explain", "true")])
    return result.explain["plan"], len([e for e in result.entries if e.mode == "match"])


def test_the_population_is_tens_of_thousands_of_rows(big):
    eng, _, count = big
    assert count > 20_000
    with eng.connect() as conn:
        tokens = conn.execute(sa.text("SELECT count(*) FROM sp_token")).scalar()
    assert tokens > 20_000


@pytest.mark.parametrize("index", range(5))
def test_key_queries_use_indexes_and_sort_no_json(big, engine, index):
    eng, pid, _ = big
    res_type, query = _queries(pid)[index]
    with eng.connect() as conn:
        plan, matches = _plan(engine, conn, res_type, query)
    text = "\n".join(plan)
    assert matches > 0, query
    for line in plan:
        for table in BIG:
            assert f"Seq Scan on {table} " not in line + " ", f"{query}:\n{text}"
        if "Sort " in line and "Sort Key" not in line:
            # Only the page's keys are sorted; the JSON is read after the LIMIT.
            width = int(re.search(r"width=(\d+)", line).group(1))
            assert width <= 64, f"{query} sorts whole rows:\n{text}"
    assert "on resource rc" in text, "the page's JSON is read after its rows are chosen"


def test_token_and_reference_lookups_are_answered_from_the_index(big, engine):
    eng, pid, _ = big
    with eng.connect() as conn:
        plan, _ = _plan(engine, conn, "Observation", _queries(pid)[1][1])
    text = "\n".join(plan)
    # resource_pk closes the token and reference indexes: the pks come from the index alone.
    assert re.search(r"Index Only Scan using \S+ on sp_(token|reference) ", text), text


def _has_query(code: str, count: int = 20) -> str:
    return f"_has:Observation:patient:code=http://loinc.org|{code}&_count={count}"


def _expected_has(conn, code: str) -> set[str]:
    """The Patients some Observation with ``code`` refers to, read from the JSON alone."""
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT split_part(content->'subject'->>'reference', '/', 2) FROM resource"
            " WHERE res_type = 'Observation' AND content->'code'->'coding'->0->>'code' = :c"
        ),
        {"c": code},
    )
    return {r[0] for r in rows}


def _match_ids(engine, conn, query: str) -> set[str]:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    result = engine.search(conn, "Patient", params)
    return {e.res_id for e in result.entries if e.mode == "match"}


@pytest.mark.parametrize("code", [LOINC[3], RARE])
def test_has_is_a_semi_join_over_the_reference_rows(big, engine, code):
    """On analysed tables ``_has`` is an EXISTS over the reference index rows, which the
    planner may start from either side (a rare code: from its few index rows), instead of
    every matching Observation's pk read into an array first."""
    eng, _, _ = big
    with eng.connect() as conn:
        plan, matches = _plan(engine, conn, "Patient", _has_query(code))
        found = _match_ids(engine, conn, _has_query(code, 1000))
        expected = _expected_has(conn, code)
    text = "\n".join(plan)
    assert found == expected and matches == min(20, len(expected)), text
    assert "InitPlan" not in text, text
    for line in plan:
        for table in BIG:
            assert f"Seq Scan on {table} " not in line + " ", text
    # A semi-join the planner orders by its estimates (over a million resources: the
    # Patients in page order, each probed, for a common code; bench/search_million.py).
    assert "Semi Join" in text or code == RARE, text


def test_has_keeps_its_run_once_form_until_the_tables_have_statistics(indexer, engine):
    """Never analysed, PostgreSQL takes every step to return one row and a join form of
    ``_has`` probes the wrong index for every reference (minutes over 20,000 references):
    ``_has`` stays a run-once InitPlan until the tables have statistics, then becomes the
    semi-join, with the same answer."""
    from hub.search.engine import _statistics_fresh

    admin, schema, eng = _pg_engine()
    try:
        _write(eng, indexer, _population(random.Random(3), patients=120))
        query = _has_query(RARE, 1000)
        with eng.connect() as conn:
            assert not _statistics_fresh(conn)
            plan, _ = _plan(engine, conn, "Patient", query)
            before = _match_ids(engine, conn, query)
            expected = _expected_has(conn, RARE)
        assert "InitPlan" in "\n".join(plan)
        _analyze(eng)
        with eng.connect() as conn:
            assert _statistics_fresh(conn)
            plan, _ = _plan(engine, conn, "Patient", query)
            after = _match_ids(engine, conn, query)
        assert "InitPlan" not in "\n".join(plan)
        assert before == after == expected and len(expected) == 2
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_code_and_patient_intersect_their_index_rows_before_the_resource_table(big, engine):
    """``code`` and ``patient`` meet among their index rows: only the pks in both lists
    reach the resource table (not every Observation of the patient, nor of the code)."""
    eng, pid, _ = big
    params = [tuple(p.split("=", 1)) for p in _queries(pid)[1][1].split("&")]
    with eng.connect() as conn:
        result = engine.search(conn, "Observation", [*params, ("_explain", "true")])
        matches = len(result.entries)
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + result.explain["sql"]
        ).scalar()
    plan = plan if isinstance(plan, list) else orjson.loads(plan)
    visited = []

    def walk(node):
        if node.get("Relation Name") == "resource" and node.get("Alias") == "r":
            visited.append(node["Actual Rows"] * node["Actual Loops"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    # The population gives each patient three Observations of each code.
    assert matches == 3
    assert visited and sum(visited) <= matches, orjson.dumps(plan).decode()


def test_stale_statistics_are_refreshed_without_autovacuum(indexer, engine):
    """Tables analysed while empty (a new database) and then filled: the statistics keeper
    analyses them, and the planner then reads a code from the code's own index."""
    from hub.storage.statistics import StatisticsKeeper

    admin, schema, eng = pg_schema_engine("stats")
    try:
        with eng.connect() as conn:
            if conn.exec_driver_sql("SHOW autovacuum").scalar() == "on":
                pytest.skip("autovacuum keeps the statistics on this server")
            if conn.dialect.server_version_info < (15,):
                pytest.skip("pg_stat_force_next_flush needs PostgreSQL 15")
        S.metadata.create_all(eng)
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("resource", *S.INDEX_TABLES):
                conn.exec_driver_sql(f'ANALYZE "{table}"')
        population = [r for r in _population(random.Random(3)) if r["resourceType"] != "Encounter"][
            :4000
        ]
        _write(eng, indexer, population, flush_statistics=True)
        analysed = StatisticsKeeper(10).refresh(eng)
        assert {"resource", "sp_token", "sp_reference"} <= set(analysed)
        assert StatisticsKeeper(10).refresh(eng) == []  # fresh now: nothing to do
        query = f"code=http://loinc.org|{LOINC[3]}&_count=20"
        with eng.connect() as conn:
            plan, matches = _plan(engine, conn, "Observation", query)
        assert matches == 20
        assert any("res_type_param_code_system_resource_pk" in line for line in plan), plan
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
@pytest.mark.parametrize("fresh", [True, False], ids=["semi-join", "run-once"])
def test_both_forms_of_has_give_the_same_answers(conn, engine, monkeypatch, fresh):
    """The sample data's ``_has`` searches, in the semi-join form and the run-once form; a
    deleted Observation no longer counts (its index rows go with it)."""
    from search_helpers import delete

    from hub.search import engine as search_engine

    monkeypatch.setattr(search_engine, "_statistics_fresh", lambda conn: fresh)

    def found(query: str) -> set[str]:
        params = [tuple(p.split("=", 1)) for p in f"{query}&_count=1000".split("&")]
        result = engine.search(conn, "Patient", params)
        return {e.res_id for e in result.entries if e.mode == "match" and len(e.res_id) < 20}

    assert found("_has:Observation:subject:code=8310-5") == {"zs"}
    assert found("_has:Observation:subject:status=preliminary") == {"wxm"}
    nested = "_has:Observation:patient:_has:Provenance:target:agent=Organization/org-cn"
    assert found(nested) == {"zs"}
    assert found("_has:Observation:subject:_id=obs-temp") == {"zs"}
    delete(conn, "Observation", "obs-temp")
    assert found("_has:Observation:subject:_id=obs-temp") == set()
    assert found("_has:Observation:subject:code=8310-5") == set()


def test_hub_connections_plan_each_statement_with_its_values():
    """A prepared search must not fall back to a generic plan made without its values (a
    common code and a rare one need opposite plans)."""
    from hub.storage.db import make_engine

    eng = make_engine(PG_URL)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    finally:
        eng.dispose()
