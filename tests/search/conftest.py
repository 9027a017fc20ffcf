"""Search-test fixtures: one populated database per backend, shared by the tests.

The database is built with ``metadata.create_all`` and filled directly through
the indexer (three Synthea patients plus hand-written resources), the way the
repository stores resources. PostgreSQL gets a schema of its own; outside CI
an unreachable server skips those tests, in CI (``CI`` set) it fails them.
Tests that write do so inside a transaction they roll back.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import sqlalchemy as sa
from search_helpers import SYNTHEA
from search_helpers import insert
from search_helpers import synthea_resources
from search_samples import SAMPLES

from hub.search.engine import SearchEngine
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.storage.schema import metadata

PG_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def registry():
    return SearchRegistry.load()


@pytest.fixture(scope="session")
def indexer(registry):
    return Indexer(registry)


@pytest.fixture(scope="session")
def engine(registry):
    return SearchEngine(registry)


def _populate(db, indexer):
    metadata.create_all(db)
    with db.begin() as conn:
        for path in SYNTHEA:
            for res in synthea_resources(path):
                insert(conn, indexer, res, T0)
        for i, res in enumerate(SAMPLES):
            insert(conn, indexer, res, T0 + dt.timedelta(days=i + 1))


def _pg_engine():
    try:
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {err}")
        pytest.skip(f"PostgreSQL unreachable: {str(err).splitlines()[0]}")
    schema = f"search_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return admin, schema, sa.create_engine(url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db(request, tmp_path_factory, indexer):
    """A populated database engine, SQLite or PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("search") / "hub.db"
        eng = sa.create_engine(f"sqlite:///{path}")
        _populate(eng, indexer)
        yield eng
        eng.dispose()
        return
    admin, schema, eng = _pg_engine()
    _populate(eng, indexer)
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def conn(db):
    """A connection in a transaction that is rolled back after the test."""
    with db.connect() as c:
        tx = c.begin()
        yield c
        tx.rollback()
