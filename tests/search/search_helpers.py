"""Test helpers: store resources with their index rows, as the repository will."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import uuid

import orjson
import pytest
import sqlalchemy as sa

import hub
from hub.search.indexer import Indexer
from hub.search.reindex import write_index
from hub.storage import schema as S

DEMO = pathlib.Path(hub.__file__).parent / "data" / "demo" / "synthea"
SYNTHEA = sorted(DEMO.glob("*.json"))


def insert(conn, indexer: Indexer, resource: dict, last_updated: dt.datetime | None = None) -> int:
    """Insert (or replace) ``resource`` and its index rows; returns its pk."""
    result = indexer.index(resource)
    r = S.resource
    existing = conn.execute(
        sa.select(r.c.pk, r.c.version).where(
            r.c.res_type == resource["resourceType"], r.c.res_id == resource["id"]
        )
    ).first()
    when = last_updated or dt.datetime.now(dt.UTC)
    content = orjson.dumps(resource).decode()
    if existing:
        pk = existing.pk
        conn.execute(
            r.update()
            .where(r.c.pk == pk)
            .values(
                version=existing.version + 1,
                last_updated=when,
                content=content,
                patient_id=result.patient_id,
                deleted=False,
            )
        )
        for table in S.INDEX_TABLES.values():
            conn.execute(table.delete().where(table.c.resource_pk == pk))
    else:
        pk = conn.execute(
            r.insert().values(
                res_type=resource["resourceType"],
                res_id=resource["id"],
                version=1,
                last_updated=when,
                deleted=False,
                patient_id=result.patient_id,
                content=content,
            )
        ).inserted_primary_key[0]
    write_index(conn, pk, result)
    return pk


def delete(conn, res_type: str, res_id: str) -> None:
    r = S.resource
    pk = conn.execute(
        sa.select(r.c.pk).where(r.c.res_type == res_type, r.c.res_id == res_id)
    ).scalar_one()
    conn.execute(r.update().where(r.c.pk == pk).values(deleted=True, content=None))
    for table in S.INDEX_TABLES.values():
        conn.execute(table.delete().where(table.c.resource_pk == pk))


def _resolve_urns(node, ids: dict):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in ids:
                out[k] = ids[v]
            else:
                out[k] = _resolve_urns(v, ids)
        return out
    if isinstance(node, list):
        return [_resolve_urns(x, ids) for x in node]
    return node


def synthea_resources(path: pathlib.Path) -> list[dict]:
    """The resources of a Synthea transaction bundle, urn:uuid references made Type/id."""
    bundle = orjson.loads(path.read_bytes())
    ids = {}
    for e in bundle["entry"]:
        res = e["resource"]
        rid = res.get("id") or e["fullUrl"].rsplit(":", 1)[-1]
        ids[e["fullUrl"]] = f"{res['resourceType']}/{rid}"
    out = []
    for e in bundle["entry"]:
        res = _resolve_urns(e["resource"], ids)
        res["id"] = ids[e["fullUrl"]].split("/", 1)[1]
        out.append(res)
    return out


PG_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pg_schema_engine(prefix: str):
    """(admin engine, schema, engine in a fresh schema) on the test PostgreSQL; skips when it
    is unreachable outside CI, fails in CI."""
    try:
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {err}")
        pytest.skip(f"PostgreSQL unreachable: {str(err).splitlines()[0]}")
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return admin, schema, sa.create_engine(url)
