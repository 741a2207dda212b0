"""The response and body models the routers share, for the OpenAPI document: the error body (once), the
account. Bodies are checked by the flows themselves (`api/protocol.py`, the service); these models
describe them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code (see the README's catalogue)")
    message: str = Field(description="in the language Accept-Language prefers: Chinese for zh, else English")
    messageEn: str = Field(description="the English message")
    messageZh: str = Field(description="the Chinese message (中文说明)")


class ErrorResponse(BaseModel):
    error: ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """An operation's `responses` for the refusals it may answer with."""
    return {status: {"model": ErrorResponse} for status in statuses}


class AccountOut(BaseModel):
    """An account as the chain holds it, with its star level and the minutes promised in orders not yet
    anchored (GET /v1/accounts/{id}; the history extends it)."""

    account: str
    district: int
    kind: int
    status: int
    balanceMinutes: int
    earnedMinutes: int
    starLevel: int
    pendingDebitMinutes: int
