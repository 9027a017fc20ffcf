"""Search-test fixtures: one populated database per backend, shared by the tests.

The database is built with ``metadata.create_all`` and filled directly through
the indexer (three Synthea patients plus hand-written resources), the way the
repository stores resources. PostgreSQL gets a schema of its own; outside CI
an unreachable server skips those tests, in CI (``CI`` set) it fails them.
Tests that write do so inside a transaction they roll back.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from search_helpers import SYNTHEA
from search_helpers import insert
from search_helpers import pg_schema_engine
from search_helpers import synthea_resources
from search_samples import SAMPLES

from hub.search.engine import SearchEngine
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry
from hub.storage.schema import metadata

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
    return pg_schema_engine("search")


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
