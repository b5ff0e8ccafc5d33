"""Alembic environment of the edge database (run by :func:`edge.db.upgrade`)."""

from __future__ import annotations

from alembic import context

from edge.db import create_engine, metadata

engine = create_engine(context.config.attributes["database_path"], context.config.attributes["key"])
with engine.connect() as connection:
    connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    connection.commit()  # so that Alembic's transaction below is the outermost one
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
