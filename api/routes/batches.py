"""Batch transparency: an anchored batch with every order and the per-account amounts, as
`timebank-verify --batch` checks it (format `timebank-batch/1`, api/bundles.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from .. import audit
from ..deps import ServiceDep

router = APIRouter(prefix="/v1/batches", tags=["audit"])


@router.get("/{batch_id}")
async def get_batch(s: ServiceDep, batch_id: int = Path(ge=1, lt=2**63)) -> dict[str, Any]:
    """An anchored batch (the contract's batch id): root, count, transaction, block, every order
    (protocol fields, signature, station, leaf; no details) and the per-account amounts recomputed from the
    orders. `timebank-verify --batch` recomputes all of it and compares it with the chain."""
    return await run_in_threadpool(audit.batch_listing, s, batch_id)
