"""Service-record certificates (在线记录证明, 书面证明): a volunteer's hours and star level, in a JSON form
that carries the proof bundle (PROTOCOL.md section 7) of every order behind it, and a PDF of it with a
QR code; and the check of a JSON certificate against the chain.

The JSON certificate (`format` "timebank-certificate/1"):

- `account`, `district`: the volunteer's account id and district;
- `issuedAt` (unix seconds) and `chain` `{chainId, contract, blockNumber}`: the chain values below are
  read at `blockNumber`;
- `earnedMinutes`, `hours`, `starLevel`: the lifetime earned minutes as the chain holds them
  (`getAccount`), `hours = earnedMinutes / 60` rounded to 2 decimals, and the contract's `starLevel`
  view, which counts the same earned minutes (`starLevelSource` says so);
- `orders`: the proof bundle of every anchored, non-revoked service order this service holds in which the
  account is the volunteer (transfers, service type 100, earn nothing and are left out), oldest first;
- `totalMinutes`: the sum of those orders' minutes. It differs from `earnedMinutes` when orders of the
  account were anchored through another service sharing the contract, or are still waiting for
  confirmations here.

`verify_certificate` checks each order offline (api.protocol: digest, signer, leaf, proof folded to the
batch root) and on chain (`getBatch`, the batch's block, `verifyOrder`), then the totals and the star
level against the verified minutes, and names every check that failed.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from typing import Any

import rfc8785
from eth_hash.auto import keccak
from sqlalchemy import select

from . import bundles, db, names, protocol
from .errors import ApiError
from .service import Service
from .vocabulary import CHINA_TIME, OrderStatus

CERTIFICATE_FORMAT = "timebank-certificate/1"
ATTACHMENT_NAME = "certificate.json"
#: Earned hours at which each star level starts (DOMAIN.md; the contract's `starLevel` view).
STAR_THRESHOLD_HOURS = (100, 300, 600, 1000, 1500)
STAR_LEVEL_SOURCE = "the contract's starLevel(account) view at chain.blockNumber, from earnedMinutes"


def star_level_of(minutes: int) -> int:
    """0 to 5 stars for `minutes` earned: the contract's `starLevel` thresholds."""
    return sum(1 for hours in STAR_THRESHOLD_HOURS if minutes >= hours * 60)


def hours_of(minutes: int) -> float:
    return round(minutes / 60, 2)


def canonical(certificate: dict[str, Any]) -> bytes:
    """The RFC 8785 canonical JSON of a certificate (UTF-8): what its digest covers, and what the PDF
    carries as its attachment."""
    return rfc8785.dumps(certificate)


def certificate_digest(certificate: dict[str, Any]) -> str:
    """keccak256 of the certificate's RFC 8785 canonical JSON, 0x hex."""
    return protocol.to_hex(keccak(canonical(certificate)))


def qr_payload(*, base_url: str, account: str, digest: str) -> str:
    """What the PDF's QR code encodes: the auditor page (`/verify`) with, in the URL's fragment (kept by
    the browser, never sent to a server), `certificate=` the path of the account's JSON certificate on
    the same service (relative: a shorter QR code) and `digest=` the digest of the certificate the PDF was
    made from. The page fetches the certificate and checks every proof against the chain in the browser."""
    path = quote(f"/v1/accounts/{account}/certificate", safe="/")
    return f"{base_url.rstrip('/')}/verify#certificate={path}&digest={digest}"


# ----- issuing ------------------------------------------------------------------------------------


def build_certificate(service: Service, *, account: bytes, holder: db.Person | None = None) -> dict[str, Any]:
    """The JSON certificate of `account`; `not_found` when the chain does not know the account. With
    `holder` (the person, when the caller gave the card's number and check code) it names the holder:
    `holder {name, cardNumber}`; without, it names no person."""
    account_hex = protocol.to_hex(account)
    block = service.chain.block_number()
    held = service.chain.get_account(account, block)
    if held.status == 0:
        raise ApiError("not_found", f"no account {account_hex}")
    star = service.chain.star_level(account, block)
    orders = order_bundles(service, volunteer=account_hex)
    certificate = {
        "format": CERTIFICATE_FORMAT,
        "account": account_hex,
        "district": held.district,
        "districtName": names.name_of(held.district),
        "issuer": {"district": held.district, "name": f"{names.full_name_of(held.district) or held.district}时间银行"},
        "issuedAt": int(time.time()),
        "chain": {"chainId": service.chain_id, "contract": service.contract_address, "blockNumber": block},
        "earnedMinutes": held.earned,
        "hours": hours_of(held.earned),
        "starLevel": star,
        "starLevelSource": STAR_LEVEL_SOURCE,
        "orders": orders,
        "totalMinutes": sum(b["order"]["minutes"] for b in orders),
    }
    if holder is not None:
        certificate["holder"] = {"name": holder.name, "cardNumber": holder.card_number}
    return certificate


def order_bundles(service: Service, *, volunteer: str) -> list[dict[str, Any]]:
    """The proof bundles of the anchored, non-revoked service orders of `volunteer`, oldest first."""
    with service.reads() as session:
        ids = session.scalars(
            select(db.Order.order_id)
            .where(
                db.Order.volunteer == volunteer,
                db.Order.status == OrderStatus.ANCHORED,
                db.Order.service_type != protocol.TRANSFER_SERVICE_TYPE,
            )
            .order_by(db.Order.start_time, db.Order.order_id)
        ).all()
    return service.proof_bundles(list(ids), revoked=False)


# ----- verifying ----------------------------------------------------------------------------------

# The names a check gives when it fails. Per order:
ORDER_CHECKS = {
    "malformed": "the bundle does not parse (format, fields, hex, lengths)",
    "domain": "the bundle's EIP-712 domain is not this chain's TimeBank contract",
    "volunteer": "the order's volunteer is not the certificate's account",
    "transfer": "the order is a transfer (service type 100), which earns nothing",
    "duplicate": "the order appears earlier in the certificate",
    "digest": "the digest recomputed from domain and order is not the bundle's",
    "signature": "the signature does not recover to the bundle's station",
    "leaf": "the leaf recomputed from digest and station is not the bundle's",
    "proof": "the proof folded from the leaf does not give the batch root",
    "batch_root": "getBatch(batch.id) on chain does not return the bundle's root",
    "batch_block": "the batch was not anchored at batch.blockNumber, or that block's hash is not batch.blockHash",
    "chain_signature": "verifyOrder: not signed by the station",
    "chain_inclusion": "verifyOrder: not included in the batch's root on chain",
    "station_inactive": "verifyOrder: the station was not registered for the order's district at the batch's block",
    "revoked": "verifyOrder: the order was revoked",
}
# and for the certificate as a whole:
CERTIFICATE_CHECKS = {
    "chain": "the certificate names another chain or contract",
    "unknown_account": "the chain does not know the account",
    "district": "district is not the account's district on chain",
    "total_minutes": "totalMinutes is not the sum of the verified orders' minutes",
    "star_level": "starLevel is above both the level of the verified minutes and the chain's starLevel",
    "earned_minutes": "earnedMinutes is above both the verified minutes and the chain's earned minutes",
    "hours": "hours is not earnedMinutes / 60",
}


def _malformed(message: str) -> ApiError:
    return ApiError("malformed_certificate", message)


def _int(value: Any, field: str, bits: int = 64) -> int:
    try:
        return protocol.parse_uint(value, bits, field)
    except protocol.ProtocolError as exc:
        raise _malformed(exc.message) from None


def _parse_certificate(body: Any, max_orders: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _malformed("expected a JSON object")
    if body.get("format") != CERTIFICATE_FORMAT:
        raise _malformed(f"format: expected {CERTIFICATE_FORMAT!r}, got {str(body.get('format'))[:60]!r}")
    try:
        account = protocol.parse_bytes(body.get("account"), 32, "account")
        chain = body.get("chain")
        if not isinstance(chain, dict):
            raise _malformed("chain: expected an object {chainId, contract, blockNumber}")
        contract = protocol.parse_address(chain.get("contract"), "chain.contract")
    except protocol.ProtocolError as exc:
        raise _malformed(exc.message) from None
    orders = body.get("orders")
    if not isinstance(orders, list):
        raise _malformed("orders: expected a list of proof bundles")
    if len(orders) > max_orders:
        raise ApiError("too_many_items", f"the certificate lists {len(orders)} orders; at most {max_orders} are verified")
    hours = body.get("hours")
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or abs(hours) > 2**63 or not math.isfinite(hours):
        raise _malformed(f"hours: expected a finite number, got {hours!r:.40}")
    return {
        "account": account,
        "chainId": _int(chain.get("chainId"), "chain.chainId", 256),
        "contract": contract,
        "orders": orders,
        "district": _int(body.get("district"), "district", 32),
        "totalMinutes": _int(body.get("totalMinutes"), "totalMinutes"),
        "earnedMinutes": _int(body.get("earnedMinutes"), "earnedMinutes"),
        "starLevel": _int(body.get("starLevel"), "starLevel", 8),
        "hours": hours,
    }


def _order_id_of(value: Any) -> str | None:
    order = value.get("order") if isinstance(value, dict) else None
    order_id = order.get("orderId") if isinstance(order, dict) else None
    return order_id.lower() if isinstance(order_id, str) else None


class Verifications:
    """Where certificates are verified: their own small pool of threads (not the one intake, health and
    the other routes share), and at most `workers + waiting` at once; one more is refused at once with
    429 `verification_busy`, so a flood of large certificates cannot hold up anything else."""

    def __init__(self, workers: int, waiting: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="certificate-verify")
        self.slots = threading.BoundedSemaphore(workers + waiting)

    async def verify(self, service: Service, body: Any) -> dict[str, Any]:
        if not self.slots.acquire(blocking=False):
            raise ApiError("verification_busy", "the service is verifying as many certificates as it can: try again shortly")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(verify_certificate, service, body=body))
        finally:
            self.slots.release()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def verify_certificate(service: Service, *, body: Any) -> dict[str, Any]:
    """Checks a JSON certificate against the chain (at one block, the latest); `malformed_certificate`
    when the body is not a certificate at all. See ORDER_CHECKS and CERTIFICATE_CHECKS."""
    cert = _parse_certificate(body, service.settings.certificate_max_orders)
    chain = service.chain
    block = chain.block_number()
    ours = protocol.parse_address(service.contract_address, "contract")
    failed: list[str] = []
    if cert["chainId"] != service.chain_id or cert["contract"] != ours:
        failed.append("chain")
    held = chain.get_account(cert["account"], block)
    if held.status == 0:
        failed.append("unknown_account")
    elif held.district != cert["district"]:
        failed.append("district")
    chain_star = chain.star_level(cert["account"], block)

    batches: dict[int, Any] = {}  # batch id -> getBatch
    block_hashes: dict[int, str | None] = {}
    seen: set[bytes] = set()
    results = []
    verified = 0
    for value in cert["orders"]:
        result: dict[str, Any] = {"orderId": _order_id_of(value), "minutes": None, "valid": False, "failed": []}
        results.append(result)
        try:
            b = bundles.parse_bundle(value)
        except (protocol.ProtocolError, KeyError, TypeError, AttributeError) as exc:
            result["failed"].append("malformed")
            result["message"] = getattr(exc, "message", None) or f"missing or wrong field: {exc}"
            continue
        result["minutes"] = b.order.minutes
        fails = result["failed"]
        order = b.order
        same_domain = b.chain_id == service.chain_id and b.contract == ours
        if not same_domain:
            fails.append("domain")
        if order.volunteer != cert["account"]:
            fails.append("volunteer")
        if order.serviceType == protocol.TRANSFER_SERVICE_TYPE:
            fails.append("transfer")
        if order.orderId in seen:
            fails.append("duplicate")
            continue  # counted once: not checked again (nor asked of the chain again)
        seen.add(order.orderId)

        # offline: PROTOCOL.md section 7 steps 1 and 2
        signed = bundles.recompute_signer(b.chain_id, b.contract, order, b.signature)
        if signed.digest != b.digest:
            fails.append("digest")
        if signed.signer != b.station:
            fails.append("signature")
        included = bundles.recompute_inclusion(signed.digest, b.station, b.proof)
        if included.leaf != b.leaf:
            fails.append("leaf")
        if included.root != b.batch.root:
            fails.append("proof")

        # on chain: step 3 (the batch), then verifyOrder (signature, inclusion, station, revocation)
        if same_domain:
            anchored = b.batch
            on_chain = batches.get(anchored.id)
            if on_chain is None:
                on_chain = batches[anchored.id] = chain.get_batch(anchored.id, block)
            if on_chain.root != protocol.to_hex(anchored.root):
                fails.append("batch_root")
            if on_chain.anchored_at_block != anchored.block_number or not 0 < anchored.block_number <= block:
                fails.append("batch_block")
            else:
                hash_at = block_hashes.get(anchored.block_number)
                if hash_at is None:
                    hash_at = block_hashes[anchored.block_number] = chain.block_hash(anchored.block_number)
                if hash_at != protocol.to_hex(anchored.block_hash):
                    fails.append("batch_block")
            v = chain.verify_order(order.as_tuple(), b.signature, b.station, anchored.id, b.proof, block)
            if not v.signed_by_station:
                fails.append("chain_signature")
            if not v.included:
                fails.append("chain_inclusion")
            elif not v.station_active:
                fails.append("station_inactive")
            if v.revoked:
                fails.append("revoked")
        result["valid"] = not fails
        if result["valid"]:
            verified += order.minutes

    implied = star_level_of(verified)
    if cert["totalMinutes"] != verified:
        failed.append("total_minutes")
    if cert["starLevel"] > max(implied, chain_star):
        failed.append("star_level")
    if cert["earnedMinutes"] > max(verified, held.earned):
        failed.append("earned_minutes")
    if abs(cert["hours"] - cert["earnedMinutes"] / 60) > 0.005 + 1e-9:
        failed.append("hours")
    return {
        "valid": not failed and all(r["valid"] for r in results),
        "failed": failed,
        "account": protocol.to_hex(cert["account"]),
        "checkedAtBlock": block,
        "orders": results,
        "totalMinutes": cert["totalMinutes"],
        "verifiedMinutes": verified,
        "starLevel": implied,
        "claimedStarLevel": cert["starLevel"],
        "chainStarLevel": chain_star,
        "chainEarnedMinutes": held.earned,
    }


# ----- the PDF ------------------------------------------------------------------------------------

#: TrueType fonts with Chinese glyphs (glyf outlines, which the PDF embeds as FontFile2 subsets), in the
#: order tried when `TIMEBANK_CJK_FONT` is not set; `make run` and `make test` install Debian's
#: fonts-wqy-microhei.
CJK_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
)
_FONT = "TimeBankCJK"
_font_lock = threading.Lock()
_font_path: Path | None = None


def cjk_font_path(configured: Path | None = None) -> Path:
    for path in (configured,) if configured is not None else CJK_FONT_CANDIDATES:
        if path is not None and path.is_file():
            return path
    raise RuntimeError(
        "no Chinese TrueType font for the certificate PDF: install Debian's fonts-wqy-microhei (make run does), "
        "or set TIMEBANK_CJK_FONT to a TrueType (.ttf, .ttc) font file"
    )


def _register_font(configured: Path | None) -> None:
    """Registers the CJK TrueType font once: reportlab embeds in each PDF only the glyphs it uses (a
    subset, FontFile2), so the PDF shows its Chinese in a reader with no Chinese font at all."""
    global _font_path
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    path = cjk_font_path(configured)
    with _font_lock:
        if _font_path != path:
            pdfmetrics.registerFont(TTFont(_FONT, str(path), subfontIndex=0))
            _font_path = path


def _star(c, x: float, y: float, radius: float, filled: bool) -> None:
    """A five-pointed star centred at (x, y), drawn as a path (no font needed)."""
    path = c.beginPath()
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.382
        angle = math.pi / 2 + i * math.pi / 5
        px, py = x + r * math.cos(angle), y + r * math.sin(angle)
        path.moveTo(px, py) if i == 0 else path.lineTo(px, py)
    path.close()
    c.drawPath(path, stroke=1, fill=1 if filled else 0)


def _qr(c, payload: str, x: float, y: float, size: float) -> None:
    """The QR code of `payload` (error correction M, quiet zone of 4 modules) as squares of a `size`
    point wide box whose lower-left corner is (x, y)."""
    import segno

    rows = list(segno.make(payload, error="m", micro=False).matrix_iter(border=4))
    module = size / len(rows)
    for r, row in enumerate(rows):
        top = y + size - (r + 1) * module
        for col, dark in enumerate(row):
            if dark:
                c.rect(x + col * module, top, module, module, stroke=0, fill=1)


def _short(hex_value: str) -> str:
    return f"{hex_value[:6]}…{hex_value[-4:]}"


def service_rows(certificate: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per order of the certificate, as the PDF lists them: date (Asia/Shanghai), type name,
    hours, the order's district, and where its proof is (chain, contract, batch, block)."""
    rows = []
    for number, b in enumerate(certificate["orders"], 1):
        order, batch, domain = b["order"], b["batch"], b["domain"]
        start = datetime.fromtimestamp(order["startTime"], CHINA_TIME)
        rows.append(
            {
                "number": number,
                "date": start.strftime("%Y-%m-%d"),
                "time": start.strftime("%H:%M"),
                "type": names.service_type_name(order["serviceType"], "zh"),
                "typeEn": names.service_type_name(order["serviceType"], "en"),
                "hours": f"{order['minutes'] / 60:.2f}",
                "district": names.name_of(order["district"]) or str(order["district"]),
                "proof": f"{domain['chainId']} · {_short(domain['verifyingContract'])} · #{batch['id']} · {batch['blockNumber']}",
            }
        )
    return rows


def render_pdf(certificate: dict[str, Any], *, base_url: str, font: Path | None = None) -> bytes:
    """The printable certificate (书面证明), Chinese first with English beside it: the holder's name and card
    number (when the holder asked for it with the card's check code), the account, its district's name,
    hours, stars, the issuing district, issue date (Asia/Shanghai), chain and contract, every service
    (date, type, hours, district, chain, contract and batch of its proof), and the QR code of
    `qr_payload` (the auditor page with this certificate). Every glyph is set in one embedded subset of a
    CJK TrueType font (`cjk_font_path`). The canonical JSON certificate is attached as `certificate.json`."""
    from pypdf import PdfReader, PdfWriter
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    _register_font(font)
    digest = certificate_digest(certificate)
    account = certificate["account"]
    payload = qr_payload(base_url=base_url, account=account, digest=digest)
    issued = datetime.fromtimestamp(certificate["issuedAt"], CHINA_TIME)
    stars = certificate["starLevel"]
    orders = certificate["orders"]
    district = certificate["district"]
    district_name = names.full_name_of(district) or str(district)
    holder = certificate.get("holder")

    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4, pageCompression=1, initialFontName=_FONT, initialFontSize=10)
    c.setTitle("时间银行志愿服务记录证明 Time Bank Service-Record Certificate")
    c.setSubject(f"account {account}; certificate digest {digest}")
    c.setAuthor(f"{district_name}时间银行")
    width, height = A4
    left, right = 50, width - 50

    def text(x: float, y: float, value: str, size: float, gray: float = 0, centred: bool = False) -> None:
        c.setFont(_FONT, size)
        c.setFillGray(gray)
        (c.drawCentredString if centred else c.drawString)(x, y, value)
        c.setFillGray(0)

    text(width / 2, height - 70, "时间银行志愿服务记录证明", 22, centred=True)
    text(width / 2, height - 90, "Time Bank Volunteer Service-Record Certificate", 11, 0.35, centred=True)
    c.setLineWidth(0.8)
    c.line(left, height - 102, right, height - 102)

    hours = certificate["hours"]
    rows: list[tuple[str, str, str, str, float]] = []  # (label, English label, value, English value, size)
    if holder:
        rows.append(("持证人", "Holder", f"{holder['name']}（卡号 {holder['cardNumber']}）", f"card number {holder['cardNumber']}", 11))
    rows += [
        ("账户", "Account", account, "keccak256 of the card number", 8),
        ("所属区", "District", f"{district_name}（{district}）", f"GB/T 2260 code {district}", 11),
        ("累计服务时长", "Service hours", f"{hours:.2f} 小时（{certificate['earnedMinutes']:,} 分钟）",
         f"{hours:.2f} hours ({certificate['earnedMinutes']:,} minutes earned)", 11),
        ("星级", "Star level", "", f"{stars} of 5 stars", 11),
        ("服务记录", "Service orders", f"{len(orders)} 笔，共 {certificate['totalMinutes']:,} 分钟，每笔附默克尔证明",
         f"{len(orders)} orders, {certificate['totalMinutes']:,} minutes, each with its Merkle proof", 11),
        ("签发单位", "Issued by", f"{district_name}时间银行", f"the time bank of district {district}", 11),
        ("签发日期", "Issued", issued.strftime("%Y-%m-%d %H:%M") + "（北京时间）", "China Standard Time, UTC+8", 11),
        ("区块链", "Chain", f"链 ID {certificate['chain']['chainId']}，区块 {certificate['chain']['blockNumber']}",
         f"chain id {certificate['chain']['chainId']}, block {certificate['chain']['blockNumber']}", 11),
        ("合约", "Contract", certificate["chain"]["contract"], "the TimeBank contract", 9),
        ("证书摘要", "Digest", digest, "keccak256 of the canonical JSON attached", 8),
    ]
    y = height - 128
    value_x = 150
    for label, english, value, value_en, size in rows:
        text(left, y, label, 11)
        text(left, y - 11, english, 7.5, 0.4)
        if label == "星级":
            for i in range(5):
                _star(c, value_x + 8 + i * 20, y + 3, 8, filled=i < stars)
            text(value_x + 108, y, f"{stars} 星", 11)
        else:
            text(value_x, y, value, size)
        text(value_x, y - 11, value_en, 7.5, 0.4)
        y -= 29

    note = (
        "星级：累计服务 100、300、600、1,000、1,500 小时分别为一至五星。时长与星级为上述区块时链上的数值（getAccount、"
        "starLevel）；服务记录为本服务上链的订单。 Star levels: 1 to 5 stars at 100, 300, 600, 1,000 and 1,500 "
        "earned hours; hours and stars are the chain's at the block above."
    )
    y -= 4
    for line in _wrap(note, _FONT, 7.5, right - left):
        text(left, y + 6, line, 7.5, 0.35)
        y -= 10

    qr_size = 120
    qr_y = y - qr_size
    _qr(c, payload, left - 8, qr_y, qr_size)
    text_x = left + qr_size + 4
    text(text_x, qr_y + qr_size - 20, "扫码核验 Scan to verify", 12)
    line_y = qr_y + qr_size - 34
    for part in _chunks(payload, _FONT, 6.5, right - text_x):
        text(text_x, line_y, part, 6.5)
        line_y -= 8
    how = (
        "二维码打开核验页面并载入本证明的 JSON（本 PDF 亦附 certificate.json，#digest= 后为其摘要）；核验页在浏览器中对照区块链"
        "逐笔检查证明，也可用 timebank-verify 与自己信任的节点核验。 The QR code opens the auditor page with this "
        "certificate's JSON (also attached to this PDF); it checks every proof against the chain in the browser."
    )
    for line in _wrap(how, _FONT, 7, right - text_x):
        text(text_x, line_y - 2, line, 7, 0.2)
        line_y -= 9
    y = min(qr_y, line_y) - 22

    # the services, continued on further pages as needed
    columns = [(left, "序号", "No."), (left + 30, "日期", "Date"), (left + 100, "服务类型", "Type"),
               (left + 190, "时长(小时)", "Hours"), (left + 250, "服务区", "District"), (left + 320, "链 · 合约 · 批次 · 区块", "Chain · contract · batch · block")]

    def header(y: float) -> float:
        text(left, y, f"服务明细 Services（{len(orders)}）", 12)
        y -= 16
        for x, zh, en in columns:
            text(x, y, zh, 8.5)
            text(x, y - 9, en, 6.5, 0.4)
        c.setLineWidth(0.4)
        c.line(left, y - 13, right, y - 13)
        return y - 25

    bottom = 50
    y = header(y) if y - 60 > bottom else None
    for row in service_rows(certificate):
        if y is None or y < bottom:
            c.showPage()
            y = header(height - 60)
        values = (str(row["number"]), row["date"], row["type"], row["hours"], row["district"], row["proof"])
        for (x, _zh, _en), value in zip(columns, values):
            text(x, y, value, 8.5)
        y -= 14
    if not orders:
        text(left, y if y is not None else height - 60, "（无已上链的服务订单 no anchored service order）", 9, 0.35)
    c.showPage()
    c.save()

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(out.getvalue())))
    writer.add_attachment(ATTACHMENT_NAME, canonical(certificate))
    final = io.BytesIO()
    writer.write(final)
    return final.getvalue()


_CLOSING = set("，。、；：）」』》！？,.;:)")


def _wrap(value: str, font: str, size: float, width: float) -> list[str]:
    """Chinese and English text in lines no wider than `width`: a line may break between any two Chinese
    characters but only at a space in English words and numbers, and never before closing punctuation."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    lines, line = [], ""
    for token in re.findall(r"[A-Za-z0-9.,:;#=_\-()'/+]+|\s+|.", value):
        if token.isspace():
            token = " "
        if not line.strip() and token == " ":
            continue
        if line and stringWidth(line + token, font, size) > width and token[0] not in _CLOSING:
            lines.append(line.rstrip())
            line = "" if token == " " else token
            continue
        line += token
    return lines + ([line.rstrip()] if line.strip() else [])


def _chunks(value: str, font: str, size: float, width: float) -> list[str]:
    """`value` cut into lines no wider than `width` (a URL has no spaces to break at)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    lines, line = [], ""
    for ch in value:
        if line and stringWidth(line + ch, font, size) > width:
            lines.append(line)
            line = ""
        line += ch
    return lines + ([line] if line else [])
