"""one head again: the account index (0005) and the revocation reason (0004_revoke_reason) were written
side by side from 0003; neither touches the other's columns

Revision ID: 0006_merge_heads
Revises: 0005_account_index, 0004_revoke_reason
Create Date: 2026-11-30 15:05:00.000000
"""


revision = '0006_merge_heads'
down_revision = ('0005_account_index', '0004_revoke_reason')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
