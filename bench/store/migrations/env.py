"""Alembic environment for the run store: migrations run on the connection bench hands over
(``bench.store.migrate``), never from an alembic.ini."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
