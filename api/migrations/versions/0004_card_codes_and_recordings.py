"""card check codes and voice recordings

Revision ID: 0004
Revises: 0003_commands
Create Date: 2026-11-30 13:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003_commands'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('check_code_hash', sa.String(length=200), nullable=True))
    op.create_table('recordings',
    sa.Column('order_id', sa.String(length=66), nullable=False),
    sa.Column('keccak', sa.String(length=66), nullable=False),
    sa.Column('mime_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('uploaded_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('order_id')
    )


def downgrade() -> None:
    op.drop_table('recordings')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_column('check_code_hash')
