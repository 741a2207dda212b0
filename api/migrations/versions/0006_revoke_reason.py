"""an order's revocation reason as a number (the RevokeOrder command's reason), not text

Revision ID: 0006_revoke_reason
Revises: 0005_account_index
Create Date: 2026-11-30 14:30:00
"""
import re

from alembic import op
import sqlalchemy as sa


revision = '0006_revoke_reason'
down_revision = '0005_account_index'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoke_reason', sa.Integer(), nullable=True))
    # orders revoked before: the reason was written as "revoked on chain, reason N"; read it once, here
    orders = sa.table('orders', sa.column('seq', sa.Integer), sa.column('status', sa.String), sa.column('reason', sa.Text),
                      sa.column('revoke_reason', sa.Integer))
    bind = op.get_bind()
    rows = bind.execute(sa.select(orders.c.seq, orders.c.reason).where(orders.c.status == 'revoked')).all()
    for seq, reason in rows:
        match = re.search(r"reason (\d+)$", reason or "")
        bind.execute(
            orders.update().where(orders.c.seq == seq).values(revoke_reason=int(match.group(1)) if match else None, reason=None)
        )


def downgrade() -> None:
    orders = sa.table('orders', sa.column('status', sa.String), sa.column('reason', sa.Text), sa.column('revoke_reason', sa.Integer))
    bind = op.get_bind()
    bind.execute(
        orders.update()
        .where(orders.c.status == 'revoked', orders.c.revoke_reason.is_not(None))
        .values(reason=sa.literal('revoked on chain, reason ') + sa.cast(orders.c.revoke_reason, sa.Text))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('revoke_reason')
