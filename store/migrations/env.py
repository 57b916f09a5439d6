"""Alembic environment: migrations run on the connection Rally hands over (see store.db)."""

from alembic import context
from sqlmodel import SQLModel

from store.models import load_all

load_all()  # every table on SQLModel.metadata, for autogenerate's comparison
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
