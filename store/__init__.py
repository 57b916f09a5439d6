"""The store: Rally's tables, engine, migrations and audit log. The source of truth."""
