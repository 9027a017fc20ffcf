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
from search_helpers import pg_schema_engine

from hub.storage import schema as S
from hub.storage.repository import bulk_insert

pytestmark = pytest.mark.postgres

PATIENTS = 300
LOINC = [f"{1000 + i}-{i % 10}" for i in range(20)]
SNOMED = [str(400000 + i) for i in range(15)]
BIG = ("resource", "sp_token", "sp_string", "sp_date", "sp_reference", "compartment")


def _population(rng: random.Random):
    for p in range(PATIENTS):
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


@pytest.fixture(scope="module")
def big(indexer):
    """A PostgreSQL schema holding the generated population, analysed."""
    admin, schema, eng = _pg_engine()
    S.metadata.create_all(eng)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    resources, by_table = [], {}
    for pk, res in enumerate(_population(random.Random(7)), 1):
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
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
        sample = conn.execute(
            sa.text("SELECT res_id FROM resource WHERE res_type = 'Patient' ORDER BY pk LIMIT 1")
        ).scalar()
    yield eng, sample, len(resources)
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
    from hub.search.statistics import StatisticsKeeper

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
        rows, resources = {}, []
        now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        population = [r for r in _population(random.Random(3)) if r["resourceType"] != "Encounter"][
            :4000
        ]
        for pk, res in enumerate(population, 1):
            result = indexer.index(res)
            content = orjson.dumps(res).decode()
            resources.append(
                {
                    "pk": pk,
                    "res_type": res["resourceType"],
                    "res_id": res["id"],
                    "version": 1,
                    "last_updated": now,
                    "deleted": False,
                    "patient_id": result.patient_id,
                    "content": content,
                }
            )
            for table, found in result.rows.items():
                for row in found:
                    row["resource_pk"] = pk
                rows.setdefault(table, []).extend(found)
        with eng.begin() as conn:
            bulk_insert(conn, S.resource, resources)
            for table, found in rows.items():
                bulk_insert(conn, S.INDEX_TABLES[table], found)
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
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
