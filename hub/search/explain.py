"""``_explain=true``: the SQL of a search and the database's plan for it."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def sql_text(conn: Connection, stmt) -> str:
    """The statement as SQL for this connection's dialect, values inlined when possible."""
    try:
        return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    except Exception:  # noqa: BLE001 - a type without a literal renderer: show placeholders
        return str(stmt.compile(dialect=conn.dialect))


def explain(conn: Connection, stmt) -> dict:
    """``{"sql": ..., "plan": [...]}``: EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (PostgreSQL)."""
    sql = sql_text(conn, stmt)
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    try:
        rows = list(conn.exec_driver_sql(prefix + sql))
    except Exception as exc:  # noqa: BLE001 - explain is diagnostic; never fail the search
        return {"sql": sql, "plan": [f"(no plan: {exc.__class__.__name__})"]}
    plan = [r[-1] if conn.dialect.name == "sqlite" else r[0] for r in rows]
    return {"sql": sql, "plan": plan}
