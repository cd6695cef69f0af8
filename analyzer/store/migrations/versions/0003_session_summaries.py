"""Session summaries: what a session's pruned evaluations said, kept on the session row.

Evaluations older than the retention are deleted (``analyzer.store.retention``); the session
row stays, with how many evaluations were pruned and the newest pruned one's verdict, score
and time, so ``/api/v1/analyses`` still says how a long-gone canary ended. Existing rows
start with nothing pruned.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("pruned_evaluations", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("last_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("last_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("last_at")
        batch.drop_column("last_score")
        batch.drop_column("last_verdict")
        batch.drop_column("pruned_evaluations")
