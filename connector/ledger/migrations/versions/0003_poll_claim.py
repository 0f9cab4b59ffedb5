"""the poller's claim on a run, so a run whose poller died can be taken over

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_run') as batch:
        batch.add_column(sa.Column('poll_claimed_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_run') as batch:
        batch.drop_column('poll_claimed_until')
