"""v1: the first run store (one ``runs`` table; the record as JSON, per-case Parquet in the row).

Stores written before schema versions existed have exactly this table and no
``alembic_version``; ``bench.store.migrate`` stamps them with this revision before upgrading.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(200), index=True),
        sa.Column("dataset", sa.String(500), index=True),
        sa.Column("seed", sa.Integer),
        sa.Column("status", sa.String(16), index=True),
        sa.Column("created_at", sa.String(40)),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("cases", sa.LargeBinary, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("runs")
