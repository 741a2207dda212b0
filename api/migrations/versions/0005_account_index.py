"""account index of canonical deltas (protocol v1.1, section 9)

Revision ID: 0005_account_index
Revises: 0004
Create Date: 2026-11-30 13:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_account_index'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_index', sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_chain_index'), ['chain_index'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_chain_index'))
        batch_op.drop_column('chain_index')
