"""Per-session interval statistics: a session's final intervals, so any replica continues it.

One row per session (``analyses.id``): the per-interval arrays the judge needs for the
session's final intervals and the per-series carry that continues them (``data``, written by
``analyzer.metrics.intervals.pack``), how many intervals that is, and the fingerprint of what
they depend on (config metrics, selectors, grid). ``judge_state`` is reserved for an
incremental judge's state and stays NULL until one writes it. The row goes with its session.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "interval_stats",
        sa.Column("analysis_id", sa.String(length=36),
                  sa.ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("judge_state", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("interval_stats")
