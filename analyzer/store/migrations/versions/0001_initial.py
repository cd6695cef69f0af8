"""Initial schema: analyses (sessions) and their evaluations.

Exactly what ``Base.metadata.create_all`` made before migrations existed (same table, index and
constraint names), so a database created by that code is stamped at this revision and needs no
change.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("rollout", sa.String(length=253), nullable=False),
        sa.Column("selector_key", sa.String(length=2048), nullable=False),
        sa.Column("config_name", sa.String(length=253), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "rollout", "selector_key", name="uq_analysis_session"),
    )
    op.create_index("ix_analyses_namespace", "analyses", ["namespace"])
    op.create_index("ix_analyses_rollout", "analyses", ["rollout"])
    op.create_index("ix_analyses_created_at", "analyses", ["created_at"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("analysis_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("queries", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["analysis_id"], ["analyses.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evaluations_analysis_id", "evaluations", ["analysis_id"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_analysis_id", table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_index("ix_analyses_created_at", table_name="analyses")
    op.drop_index("ix_analyses_rollout", table_name="analyses")
    op.drop_index("ix_analyses_namespace", table_name="analyses")
    op.drop_table("analyses")
