"""SQLAlchemy 2 async adapters: SQLite (the embedded default) and PostgreSQL."""
