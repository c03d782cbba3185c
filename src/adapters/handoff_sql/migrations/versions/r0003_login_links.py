"""One-time sign-in links for the escalation inbox page (SPEC §12).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Only the SHA-256 of a link's code is kept; `used_at` is set by the one conditional UPDATE that
redeems it, so a link signs in once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "login_links",
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("member_id", sa.String(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("used_at", When, nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name="pk_login_links"),
    )
    op.create_index("ix_login_links_expires_at", "login_links", ["expires_at"])


def downgrade() -> None:
    op.drop_table("login_links")
