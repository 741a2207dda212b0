"""Service-record certificates (在线记录证明): the JSON form with its proofs, the PDF, and the check of a
JSON certificate against the chain. The logic is in `api/certificates.py`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .. import cards, certificates, protocol
from ..deps import JsonBody, ServiceDep, hex32
from ..schemas import errors

router = APIRouter(prefix="/v1", tags=["certificates"])


ERRORS = errors(400, 404, 429, 503)
HOLDER_HEADERS = (
    "With `X-TimeBank-Card` (the card number) and `X-TimeBank-Check-Code` (the card's check code) of the "
    "account's person, the certificate names its holder (`holder {name, cardNumber}`); a wrong pair is "
    "refused as a card look-up is (`404`, counted against the client's failures, then `429`)."
)


class ChainRef(BaseModel):
    chainId: int
    contract: str
    blockNumber: int = Field(description="the block the chain values were read at")


class CertificateOut(BaseModel):
    format: str = Field(certificates.CERTIFICATE_FORMAT)
    account: str
    district: int
    districtName: str | None = Field(None, description="the GB/T 2260 name of the district")
    issuer: dict[str, Any] | None = Field(None, description="the issuing district and its name")
    holder: dict[str, str] | None = Field(None, description="{name, cardNumber}: only for the card's holder")
    issuedAt: int = Field(description="unix seconds")
    chain: ChainRef
    earnedMinutes: int = Field(description="lifetime earned minutes as the chain holds them (getAccount)")
    hours: float = Field(description="earnedMinutes / 60, rounded to 2 decimals")
    starLevel: int = Field(description="0 to 5: the contract's starLevel view, from earnedMinutes")
    starLevelSource: str
    orders: list[dict[str, Any]] = Field(
        description="the proof bundle (PROTOCOL.md section 7) of every anchored, non-revoked service order "
        "of the account as volunteer (transfers excluded), oldest first"
    )
    totalMinutes: int = Field(description="the sum of the orders' minutes; may be below earnedMinutes")


class OrderCheck(BaseModel):
    orderId: str | None
    minutes: int | None
    valid: bool
    failed: list[str] = Field(description="the names of the checks that failed (see the README)")
    message: str | None = None


class VerificationOut(BaseModel):
    valid: bool
    failed: list[str] = Field(description="the certificate-level checks that failed")
    account: str
    checkedAtBlock: int
    orders: list[OrderCheck]
    totalMinutes: int = Field(description="as the certificate claims")
    verifiedMinutes: int = Field(description="the sum of the valid orders' minutes")
    starLevel: int = Field(description="the star level the verified minutes give")
    claimedStarLevel: int
    chainStarLevel: int
    chainEarnedMinutes: int


def _account(value: str) -> bytes:
    return bytes.fromhex(hex32(value, "accountId")[2:])


def _issue(s, account: bytes, card: str | None, code: str | None, request: Request) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    holder = cards.holder(s, account=protocol.to_hex(account), card_number=card, check_code=code, client=client)
    return certificates.build_certificate(s, account=account, holder=holder)


@router.get(
    "/accounts/{account_id}/certificate",
    response_model=CertificateOut,
    response_model_exclude_none=True,
    responses=ERRORS,
    description=HOLDER_HEADERS,
)
async def get_certificate(
    account_id: str,
    s: ServiceDep,
    request: Request,
    x_timebank_card: Annotated[str | None, Header()] = None,
    x_timebank_check_code: Annotated[str | None, Header()] = None,
):
    """The volunteer's service-record certificate in JSON, carrying the proof of every order behind it."""
    account = _account(account_id)
    return await run_in_threadpool(_issue, s, account, x_timebank_card, x_timebank_check_code, request)


@router.get(
    "/accounts/{account_id}/certificate.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the printable certificate"}, **ERRORS},
)
async def get_certificate_pdf(
    account_id: str,
    s: ServiceDep,
    request: Request,
    x_timebank_card: Annotated[str | None, Header()] = None,
    x_timebank_check_code: Annotated[str | None, Header()] = None,
) -> Response:
    """The printable certificate (Chinese first): holder (with the card's check code), district names,
    hours, stars, issuing district, issue date, every service with its proof's chain, contract and batch,
    and a QR code that opens the auditor page with the certificate; the JSON certificate is attached to
    the PDF as certificate.json. The Chinese font is embedded (a subset)."""
    account = _account(account_id)
    certificate = await run_in_threadpool(_issue, s, account, x_timebank_card, x_timebank_check_code, request)
    base_url = s.settings.public_url or str(request.base_url)
    pdf = await run_in_threadpool(certificates.render_pdf, certificate, base_url=base_url, font=s.settings.cjk_font)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="certificate-{certificate["account"][2:14]}.pdf"',
            "X-Certificate-Digest": certificates.certificate_digest(certificate),
        },
    )


@router.post("/certificates/verify", response_model=VerificationOut, responses=ERRORS)
async def verify_certificate(s: ServiceDep, body: JsonBody, request: Request):
    """Check a JSON certificate: every order's proof offline and on chain (verifyOrder, getBatch), then
    the totals and the star level. `valid` is false, with what failed named, for a tampered one. At most
    TIMEBANK_CERTIFICATE_MAX_ORDERS orders; verified on a pool of its own, 429 `verification_busy` when full."""
    return await request.app.state.verifications.verify(s, body)
