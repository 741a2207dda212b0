"""The service's own vocabulary, written once: the statuses its records go through, and the city's clock.
The protocol's values (account kinds and statuses, service types, the transfer) are `api/protocol.py`'s."""

from __future__ import annotations

from datetime import timedelta, timezone
from enum import StrEnum

#: China Standard Time (UTC+8, no daylight saving): the city's clock for months, local times and dates.
CHINA_TIME = timezone(timedelta(hours=8), "UTC+8")


class OrderStatus(StrEnum):
    """An order: `accepted` (durable, waiting for its batch), then `anchored`, or `rejected` (the chain
    refused it when its batch was made: `reason`); an anchored order may be `revoked` on chain."""

    ACCEPTED = "accepted"
    ANCHORED = "anchored"
    REVOKED = "revoked"
    REJECTED = "rejected"


class BatchStatus(StrEnum):
    """A batch: `pending` (recorded, its transaction not yet), `sent`, then `anchored` once confirmed, or
    `failed` (its orders go back to the queue)."""

    PENDING = "pending"
    SENT = "sent"
    ANCHORED = "anchored"
    FAILED = "failed"


class TxStatus(StrEnum):
    """A relayer transaction (api/transactions.py): `sent`, then `mined` or `reverted`; `refused` by the
    node (its nonce given out again); `dropped` (mined in blocks the chain lost, or a batch's the node lost
    with its pool: its nonce free again)."""

    SENT = "sent"
    MINED = "mined"
    REVERTED = "reverted"
    REFUSED = "refused"
    DROPPED = "dropped"


TX_IN_BLOCK = (TxStatus.MINED, TxStatus.REVERTED)  # seen in a block: its nonce used, while the chain keeps it


class CommandStatus(StrEnum):
    """A relayed command (api/commands.py): `relayed` (its transaction's status tells the rest),
    `resending` (lost with the chain's blocks, sent again), `lost` (and the chain now refuses it)."""

    RELAYED = "relayed"
    RESENDING = "resending"
    LOST = "lost"
