"""The partition plan of docs/scaling.md: index tables LIST-partitioned by resource type.

Two PostgreSQL schemas get the same resources, one with the plain index tables
and one with them partitioned by ``res_type`` (hub.storage.partitions). The
search tests' core queries (the parametrised string, token, date, number,
quantity, reference, composite and chain cases of test_search_engine.py) must
find the same resources on both, and the partitioned one must hold its rows in
the per-type partitions and prune a typed search to its type's partition.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import test_search_engine as cases
from search_helpers import SYNTHEA
from search_helpers import insert
from search_helpers import pg_schema_engine
from search_helpers import synthea_resources
from search_samples import SAMPLES

from hub.storage.db import analyze
from hub.storage.partitions import partition_index_tables
from hub.storage.partitions import partition_name
from hub.storage.schema import metadata

PARTITIONED_TYPES = ("Patient", "Observation", "Condition", "Encounter")

# (test function, the type it searches when not parametrised)
CORE = {
    "test_string": "Patient",
    "test_token": None,
    "test_token_hierarchy": "Condition",
    "test_date": "Observation",
    "test_number": "RiskAssessment",
    "test_quantity": "Observation",
    "test_reference": "Observation",
    "test_composite": "Observation",
    "test_chains": None,
}


def core_queries() -> list[tuple[str, str]]:
    """(type, query) of every parametrised case of the core search tests."""
    out = []
    for name, fixed_type in CORE.items():
        func = getattr(cases, name)
        for mark in getattr(func, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            names = [n.strip() for n in mark.args[0].split(",")]
            for values in mark.args[1]:
                values = values.values if hasattr(values, "values") else values
                row = dict(zip(names, values, strict=True))
                query = row["query"] + ("&date=gt2020" if name == "test_date" else "")
                out.append((row.get("res_type", fixed_type), query))
    return out


def _schema(indexer, partitioned: bool):
    admin, schema, eng = pg_schema_engine("part")
    metadata.create_all(eng)
    with eng.begin() as conn:
        if partitioned:
            partition_index_tables(conn, PARTITIONED_TYPES)
        for path in SYNTHEA:
            for res in synthea_resources(path):
                insert(conn, indexer, res)
        for res in SAMPLES:
            insert(conn, indexer, res)
    analyze(eng)  # this schema's tables only (a bare ANALYZE reaches other tests' schemas)
    return admin, schema, eng


@pytest.fixture(scope="module")
def flat_and_partitioned(indexer):
    made = [_schema(indexer, False), _schema(indexer, True)]
    yield made[0][2], made[1][2]
    for admin, schema, eng in made:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_core_queries_find_the_same_on_partitioned_tables(flat_and_partitioned, engine):
    flat, partitioned = flat_and_partitioned
    queries = core_queries()
    assert len(queries) > 60  # the parametrised cases were found
    with flat.connect() as a, partitioned.connect() as b:
        for res_type, query in queries:
            expected = cases.ids(a, engine, res_type, query)
            assert cases.ids(b, engine, res_type, query) == expected, f"{res_type}?{query}"


def test_rows_are_in_their_types_partitions_and_searches_are_pruned(flat_and_partitioned):
    flat, partitioned = flat_and_partitioned
    with partitioned.connect() as conn:
        kinds = dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, p.partstrat FROM pg_partitioned_table p "
                    "JOIN pg_class c ON c.oid = p.partrelid "
                    "WHERE c.relnamespace = CAST(current_schema() AS regnamespace)"
                )
            ).all()
        )
        assert set(kinds) == {
            "sp_string",
            "sp_token",
            "sp_date",
            "sp_number",
            "sp_quantity",
            "sp_reference",
            "sp_uri",
            "sp_composite",
            "compartment",
        }
        assert set(kinds.values()) == {"l"}  # LIST
        part = partition_name("sp_token", "Observation")
        in_part = conn.execute(sa.text(f"SELECT count(*) FROM {part}")).scalar_one()
        wrong = conn.execute(
            sa.text(f"SELECT count(*) FROM {part} WHERE res_type <> 'Observation'")
        ).scalar_one()
        assert in_part > 0 and wrong == 0
        plan = "\n".join(
            conn.execute(
                sa.text(
                    "EXPLAIN SELECT resource_pk FROM sp_token "
                    "WHERE res_type = 'Observation' AND param = 'code' AND code = '8867-4'"
                )
            ).scalars()
        )
        assert part in plan
        assert partition_name("sp_token", "Patient") not in plan
    with flat.connect() as a, partitioned.connect() as b:
        for table in ("sp_token", "sp_string", "sp_reference", "compartment"):
            count = f"SELECT count(*) FROM {table}"
            assert a.execute(sa.text(count)).scalar_one() == b.execute(sa.text(count)).scalar_one()
