"""Join the two migrations that both followed 0003: the revoke reason and the card codes with the account
index. Nothing changes in the schema.

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
