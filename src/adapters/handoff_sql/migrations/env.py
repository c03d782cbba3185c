"""Alembic's entry point. Migrations run through `handoff_sql.upgrade(url)`, which hands in an
open connection (already in its transaction) so that an installed wheel needs no alembic.ini."""

from __future__ import annotations

from alembic import context

from handoff_sql.tables import metadata


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
    elif connection is None:
        raise RuntimeError("run migrations with handoff_sql.upgrade(url) (or `handoff db upgrade`)")
    else:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
    with context.begin_transaction():
        context.run_migrations()


run()
