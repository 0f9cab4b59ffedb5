"""credit charges per pool and credit budgets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 04:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_charge',
    sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('charge_key', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('first_charged_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('charges', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('pool', 'charge_key')
    )
    op.create_table('credit_budget',
    sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('cap', sa.Integer(), nullable=True),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pool', 'period')
    )
    # Charges made before this table existed: the latest first charge per (pool, key) starts its window.
    op.execute(
        "INSERT INTO credit_charge (pool, charge_key, first_charged_at, charges) "
        "SELECT credit_pool, lookup_key, MAX(first_charged_at), SUM(credits_spent) FROM enrichment "
        "WHERE credit_pool IS NOT NULL AND first_charged_at IS NOT NULL GROUP BY credit_pool, lookup_key"
    )


def downgrade() -> None:
    op.drop_table('credit_budget')
    op.drop_table('credit_charge')
