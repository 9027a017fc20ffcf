"""Alembic environment: the engine comes from the hub (``hub db upgrade``)."""

from __future__ import annotations

from alembic import context

from hub.storage.schema import metadata

target_metadata = metadata


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect().execution_options(hub_write=True) as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
