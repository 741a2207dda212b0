"""Joins the two lines of migrations made side by side (revocation reasons; card codes, recordings and
the account index): no schema change.

Revision ID: 0006_merge_heads
Revises: 0004_revoke_reason, 0005_account_index
"""

revision = '0006_merge_heads'
down_revision = ('0004_revoke_reason', '0005_account_index')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
