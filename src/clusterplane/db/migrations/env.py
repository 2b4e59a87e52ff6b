"""Alembic environment: runs on the connection handed over by `db.engine.migrate`."""

from __future__ import annotations

from alembic import context

from clusterplane.db.rows import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through clusterplane.db.engine.migrate()")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
