"""Sessions per canary revision: ``revision`` and ``closed_at`` on analyses.

Before this revision a session was keyed by namespace, rollout and selectors only, so every
release of a rollout shared one ever-growing session. Now one *open* session exists per
(namespace, rollout, selectors, revision); a new revision closes the rollout's earlier open
sessions. Uniqueness is a partial index over open sessions, so a revision that comes back (a
rollback to an earlier pod template) gets a fresh session rather than the closed one.
Existing rows keep working: their revision is ``""`` (not told apart) and they stay open.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = sa.text("closed_at IS NULL")
_KEY = ["namespace", "rollout", "selector_key", "revision"]


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("revision", sa.String(length=63), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("uq_analysis_session", type_="unique")
    op.create_index("uq_open_session", "analyses", _KEY, unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)


def downgrade() -> None:
    op.drop_index("uq_open_session", table_name="analyses")
    with op.batch_alter_table("analyses") as batch:
        batch.create_unique_constraint("uq_analysis_session",
                                       ["namespace", "rollout", "selector_key"])
        batch.drop_column("closed_at")
        batch.drop_column("revision")
