"""issued certificates: the public canonical JSON of every certificate issued, keyed by its digest

Revision ID: 0008_issued_certificates
Revises: 0007_security
Create Date: 2026-11-30 15:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_issued_certificates'
down_revision = '0007_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('issued_certificates',
    sa.Column('digest', sa.String(length=66), nullable=False),
    sa.Column('account', sa.String(length=66), nullable=False),
    sa.Column('issued_at', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    op.create_index(op.f('ix_issued_certificates_account'), 'issued_certificates', ['account'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_issued_certificates_account'), table_name='issued_certificates')
    op.drop_table('issued_certificates')
