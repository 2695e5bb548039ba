"""Alembic environment for the run store: migrations run on the connection bench hands over
(``bench.store.migrate``), never from an alembic.ini."""
from alembic import context

from bench.store.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
# not alembic's default table name: Optuna keeps its own alembic revision there, and a study may
# live in the same database as the runs
context.configure(connection=connection, target_metadata=None, render_as_batch=True, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
