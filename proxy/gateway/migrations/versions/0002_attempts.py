"""The usage ledger records routing: the route asked for and every upstream attempt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add columns with every option in place; Postgres alters directly.
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("route", sa.Text(), nullable=True))
        # Rows written before routing existed made one attempt each (or none, which 0 cannot tell apart).
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempt_log", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("attempt_log")
        batch.drop_column("attempts")
        batch.drop_column("route")
