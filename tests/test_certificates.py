"""Service-record certificates end to end: a volunteer serves through a station terminal of its own, the
orders are anchored on the API's chain, one is revoked, one is a transfer; the JSON certificate lists the
proofs of the rest and verifies against the chain, every tampering is caught and named, the PDF shows the
hours and stars and carries its JSON form; star levels match the contract's view at each threshold."""

from __future__ import annotations

import copy
import io
import json
import re
import secrets
import subprocess
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from eth_hash.auto import keccak

from api import certificates as CERT
from api import protocol as P
from tests.utils import chain as C
from tests.utils.api import Terminal, wait_anchored, wait_for
from tests.utils.api_world import DISTRICT, link

pytestmark = pytest.mark.usefixtures("api")


def _post_all(api, bodies: list[dict]) -> list[str]:
    response = api.client.post("/v1/orders/bulk", json={"items": bodies})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["httpStatus"] for r in results] == [201] * len(bodies), results
    ids = [r["orderId"] for r in results]
    for order_id in ids:
        assert wait_anchored(api.client, order_id)["status"] == "anchored"
    return ids


def _certificate(api, account: str) -> dict:
    response = api.client.get(f"/v1/accounts/{account}/certificate")
    assert response.status_code == 200, response.text
    return response.json()


def _verify(api, certificate: dict) -> dict:
    response = api.client.post("/v1/certificates/verify", json=certificate)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def served(api, world):
    """A volunteer with 8 x 720 + 239 = 5,999 earned minutes (no star yet), a revoked order of 300 and a
    transfer of 120 received; `before` is its certificate then. One more minute of service follows, so
    the volunteer ends at 6,000 minutes: 100 hours, one star."""
    terminal = Terminal(secrets.token_bytes(32), api.client, world.domain, DISTRICT)
    world.admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    volunteer = world.new_account(1)
    elder = world.new_account(2, grant=9000)
    link(world.admin, elder, volunteer)  # the transfer below
    bodies = [terminal.order(volunteer, elder, elder, minutes=720) for _ in range(8)]
    bodies.append(terminal.order(volunteer, elder, elder, minutes=239))
    bodies.append(terminal.order(volunteer, elder, elder, minutes=300))  # revoked below
    bodies.append(terminal.order(volunteer, elder, elder, minutes=120, service_type=P.TRANSFER_SERVICE_TYPE))
    ids = _post_all(api, bodies)
    revoked, transfer = ids[9], ids[10]
    world.admin.ok("RevokeOrder", orderId=revoked, reason=1)
    wait_for(lambda: api.client.get(f"/v1/orders/{revoked}").json()["status"] == "revoked")
    before = _certificate(api, volunteer)
    (last,) = _post_all(api, [terminal.order(volunteer, elder, elder, minutes=1)])
    wait_for(lambda: api.client.get(f"/v1/accounts/{volunteer}").json()["earnedMinutes"] == 6000)
    service_ids = ids[:9] + [last]
    return SimpleNamespace(
        volunteer=volunteer,
        elder=elder,
        terminal=terminal,
        service_ids=service_ids,
        revoked=revoked,
        transfer=transfer,
        before=before,
        certificate=_certificate(api, volunteer),
    )


# ----- the JSON certificate -----------------------------------------------------------------------


def test_certificate_holds_the_proofs_of_the_service_orders(api, world, served):
    cert = served.certificate
    assert cert["format"] == "timebank-certificate/1"
    assert cert["account"] == served.volunteer and cert["district"] == DISTRICT
    assert cert["chain"]["chainId"] == world.domain["chainId"]
    assert cert["chain"]["contract"].lower() == world.domain["verifyingContract"].lower()
    assert cert["earnedMinutes"] == 6000 and cert["hours"] == 100.0 and cert["starLevel"] == 1
    assert "starLevel" in cert["starLevelSource"]
    listed = [b["order"]["orderId"] for b in cert["orders"]]
    assert sorted(listed) == sorted(served.service_ids)  # neither the revoked order nor the transfer
    assert served.revoked not in listed and served.transfer not in listed
    assert [b["order"]["startTime"] for b in cert["orders"]] == sorted(b["order"]["startTime"] for b in cert["orders"])
    assert cert["totalMinutes"] == sum(b["order"]["minutes"] for b in cert["orders"]) == 6000
    for bundle in cert["orders"]:  # the same bundle as the proof endpoint gives
        assert bundle == api.client.get(f"/v1/orders/{bundle['order']['orderId']}/proof").json()
    account = api.client.get(f"/v1/accounts/{served.volunteer}").json()
    assert (account["earnedMinutes"], account["starLevel"]) == (6000, 1)


def test_star_level_starts_at_100_hours(served):
    """One minute short of 100 hours: no star; the minute after: one star (the contract's view)."""
    assert (served.before["earnedMinutes"], served.before["hours"], served.before["starLevel"]) == (5999, 99.98, 0)
    assert served.before["totalMinutes"] == 5999 and len(served.before["orders"]) == 9
    assert (served.certificate["earnedMinutes"], served.certificate["starLevel"]) == (6000, 1)


def test_certificate_verifies(api, served):
    result = _verify(api, served.certificate)
    assert result["valid"] is True, result
    assert result["failed"] == []
    assert result["verifiedMinutes"] == result["totalMinutes"] == 6000
    assert (result["starLevel"], result["claimedStarLevel"], result["chainStarLevel"]) == (1, 1, 1)
    assert [o["orderId"] for o in result["orders"]] == [b["order"]["orderId"] for b in served.certificate["orders"]]
    assert all(o["valid"] and o["failed"] == [] for o in result["orders"])


def test_an_earlier_certificate_still_verifies(api, served):
    result = _verify(api, served.before)
    assert result["valid"] is True, result
    assert (result["verifiedMinutes"], result["starLevel"], result["chainStarLevel"]) == (5999, 0, 1)


def test_unknown_and_malformed_accounts(api):
    nobody = P.to_hex(b"\x42" * 32)
    unknown = api.client.get(f"/v1/accounts/{nobody}/certificate")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    bad = api.client.get("/v1/accounts/0x1234/certificate")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "wrong_length"
    assert api.client.get(f"/v1/accounts/{nobody}/certificate.pdf").status_code == 404


# ----- tampering ----------------------------------------------------------------------------------


def _forged_bundle(world, cert: dict) -> dict:
    """An order signed by a key that is no station, in a one-leaf tree of its own, claiming a real
    batch: consistent offline, unknown on chain."""
    key = secrets.token_bytes(32)
    real = cert["orders"][0]
    order = {**real["order"], "orderId": P.to_hex(secrets.token_bytes(32)), "minutes": 720}
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    digest = P.ServiceOrder.from_json(order).digest(separator)
    station = P.address_of(key)
    leaf = P.leaf(digest, station)
    return {
        **copy.deepcopy(real),
        "order": order,
        "signature": P.to_hex(P.sign(digest, key)),
        "digest": P.to_hex(digest),
        "station": P.to_hex(station),
        "leaf": P.to_hex(leaf),
        "proof": [],
        "batch": {**real["batch"], "root": P.to_hex(leaf), "count": 1},
    }


def _bundle(api, order_id: str) -> dict:
    response = api.client.get(f"/v1/orders/{order_id}/proof")
    assert response.status_code == 200, response.text
    return response.json()


def _set_minutes(c, api, world, served):
    c["orders"][0]["order"]["minutes"] += 60
    c["totalMinutes"] += 60
    return 0


def _set_minutes_resigned_digest(c, api, world, served):
    """minutes changed and digest and leaf recomputed to match: the station's signature does not."""
    b = c["orders"][1]
    b["order"]["minutes"] = 719
    separator = P.domain_separator(world.domain["chainId"], world.domain["verifyingContract"])
    digest = P.ServiceOrder.from_json(b["order"]).digest(separator)
    b["digest"] = P.to_hex(digest)
    b["leaf"] = P.to_hex(P.leaf(digest, bytes.fromhex(b["station"][2:])))
    return 1


def _duplicate(c, api, world, served):
    c["orders"].append(copy.deepcopy(c["orders"][2]))
    c["totalMinutes"] += c["orders"][2]["order"]["minutes"]
    return len(c["orders"]) - 1


def _proof_element(c, api, world, served):
    proof = c["orders"][3]["proof"]
    proof[0] = P.to_hex(keccak(bytes.fromhex(proof[0][2:])))
    return 3


def _forged(c, api, world, served):
    c["orders"].append(_forged_bundle(world, c))
    c["totalMinutes"] += 720
    return len(c["orders"]) - 1


def _revoked(c, api, world, served):
    c["orders"].append(_bundle(api, served.revoked))
    c["totalMinutes"] += 300
    return len(c["orders"]) - 1


def _transfer(c, api, world, served):
    c["orders"].append(_bundle(api, served.transfer))
    c["totalMinutes"] += 120
    return len(c["orders"]) - 1


def _other_volunteer(c, api, world, served):
    body = served.terminal.order(world.new_account(1), served.elder, served.elder, minutes=30)
    (order_id,) = _post_all(api, [body])
    c["orders"].append(_bundle(api, order_id))
    c["totalMinutes"] += 30
    return len(c["orders"]) - 1


def _malformed_bundle(c, api, world, served):
    c["orders"][4]["proof"].append("0xzz")
    return 4


def _other_domain(c, api, world, served):
    c["orders"][5]["domain"]["chainId"] += 1
    return 5


# mutation -> (the order it spoils, the checks that order fails, the certificate-level checks that fail)
ORDER_TAMPERING = {
    "minutes_changed": (_set_minutes, {"digest", "signature", "leaf", "proof", "chain_signature", "chain_inclusion"}),
    "minutes_changed_digest_recomputed": (_set_minutes_resigned_digest, {"signature", "proof", "chain_signature", "chain_inclusion"}),
    "order_duplicated": (_duplicate, {"duplicate"}),
    "proof_element_changed": (_proof_element, {"proof", "chain_inclusion"}),
    "forged_order_and_proof": (_forged, {"batch_root", "chain_inclusion"}),
    "revoked_order_added": (_revoked, {"revoked"}),
    "transfer_added": (_transfer, {"transfer"}),
    "order_of_another_volunteer": (_other_volunteer, {"volunteer"}),
    "malformed_bundle": (_malformed_bundle, {"malformed"}),
    "other_domain": (_other_domain, {"domain", "digest", "signature", "leaf", "proof"}),
}


@pytest.mark.parametrize("name", list(ORDER_TAMPERING))
def test_tampered_order_is_named(api, world, served, name):
    mutate, order_fails = ORDER_TAMPERING[name]
    cert = copy.deepcopy(served.certificate)
    spoiled = mutate(cert, api, world, served)
    result = _verify(api, cert)
    assert result["valid"] is False
    assert set(result["orders"][spoiled]["failed"]) == order_fails, result["orders"][spoiled]
    assert result["orders"][spoiled]["valid"] is False
    others = [o for i, o in enumerate(result["orders"]) if i != spoiled]
    assert all(o["valid"] for o in others), others
    # the spoiled order's minutes are not counted, so the total claimed is not the verified one
    original = served.certificate["orders"]
    assert result["verifiedMinutes"] == 6000 - (original[spoiled]["order"]["minutes"] if spoiled < len(original) else 0)
    assert "total_minutes" in result["failed"]


CERTIFICATE_TAMPERING = {
    "total_inflated": (lambda c: c.update(totalMinutes=c["totalMinutes"] + 60), ["total_minutes"]),
    "order_dropped": (lambda c: c["orders"].pop(), ["total_minutes"]),
    "star_level_inflated": (lambda c: c.update(starLevel=2), ["star_level"]),
    "earned_inflated": (lambda c: c.update(earnedMinutes=18000, hours=300.0), ["earned_minutes"]),
    "hours_inflated": (lambda c: c.update(hours=150.0), ["hours"]),
    "other_contract": (lambda c: c["chain"].update(contract="0x" + "11" * 20), ["chain"]),
    "other_district": (lambda c: c.update(district=320104), ["district"]),
}


@pytest.mark.parametrize("name", list(CERTIFICATE_TAMPERING))
def test_tampered_totals_are_named(api, served, name):
    mutate, failed = CERTIFICATE_TAMPERING[name]
    cert = copy.deepcopy(served.certificate)
    mutate(cert)
    result = _verify(api, cert)
    assert result["valid"] is False
    assert result["failed"] == failed
    assert all(o["valid"] for o in result["orders"])


def test_minutes_changed_counts_only_the_proven_minutes(api, world, served):
    cert = copy.deepcopy(served.certificate)
    _set_minutes(cert, api, world, served)
    result = _verify(api, cert)
    assert result["verifiedMinutes"] == 6000 - served.certificate["orders"][0]["order"]["minutes"]
    assert result["starLevel"] == 0 and result["failed"] == ["total_minutes"]


@pytest.mark.parametrize(
    "body",
    [[], {"format": "timebank-proof/1"}, {"format": "timebank-certificate/1", "account": "0x12"}, "certificate"],
)
def test_a_body_that_is_no_certificate_is_refused(api, served, body):
    response = api.client.post("/v1/certificates/verify", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_certificate"


@pytest.mark.parametrize("field", ["orders", "totalMinutes", "starLevel", "hours", "chain", "district"])
def test_a_certificate_missing_a_field_is_refused(api, served, field):
    cert = copy.deepcopy(served.certificate)
    del cert[field]
    response = api.client.post("/v1/certificates/verify", json=cert)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_certificate"


# ----- the PDF ------------------------------------------------------------------------------------


def test_qr_payload():
    """The auditor page with the certificate's URL (percent-encoded) and digest in the fragment."""
    account, digest = "0x" + "ab" * 32, "0x" + "cd" * 32
    expected = f"https://bank.example/verify#certificate=/v1/accounts/{account}/certificate&digest={digest}"
    assert CERT.qr_payload(base_url="https://bank.example/", account=account, digest=digest) == expected
    assert CERT.qr_payload(base_url="https://bank.example", account=account, digest=digest) == expected


def test_certificate_digest_is_of_the_canonical_json():
    cert = {"b": 1, "a": [1.0, "时"], "hours": 100.0}
    assert CERT.certificate_digest(cert) == P.to_hex(keccak('{"a":[1,"时"],"b":1,"hours":100}'.encode()))


def test_pdf_shows_hours_and_stars_and_carries_its_json(api, served):
    from pypdf import PdfReader

    response = api.client.get(f"/v1/accounts/{served.volunteer}/certificate.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    digest = response.headers["x-certificate-digest"]

    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for expected in ["时间银行志愿服务记录证明", "Service-Record Certificate", "100.00 小时", "100.00 hours", "6,000 minutes earned",
                     "1 of 5 stars", "江苏省南京市玄武区（320102）", "签发单位", "江苏省南京市玄武区时间银行", served.volunteer,
                     "10 笔", "10 orders", digest, "北京时间", "服务明细"]:
        assert expected in text, (expected, text)
    assert "持证人" not in text  # no holder named without the card's check code
    flat = re.sub(r"\s+", "", text)
    payload = CERT.qr_payload(base_url=api.url, account=served.volunteer, digest=digest)
    assert payload in flat  # the URL under the QR code is the request's own base URL
    # every service: its date in Asia/Shanghai, its type's Chinese name, hours, district, chain, batch
    for row, bundle in zip(CERT.service_rows(served.certificate), served.certificate["orders"]):
        day = datetime.fromtimestamp(bundle["order"]["startTime"], ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d")
        assert row["date"] == day and row["type"] == "助餐" and row["district"] == "玄武区"
        assert f"#{bundle['batch']['id']}" in row["proof"] and row["proof"].startswith(str(bundle["domain"]["chainId"]))
        assert f"{row['number']}\n{row['date']}\n助餐\n{row['hours']}\n玄武区\n{row['proof']}" in text, row

    (attached,) = reader.attachments[CERT.ATTACHMENT_NAME]
    assert P.to_hex(keccak(attached)) == digest
    cert = json.loads(attached)
    assert cert["account"] == served.volunteer and cert["starLevel"] == 1 and len(cert["orders"]) == 10
    assert _verify(api, cert)["valid"] is True


def test_pdf_qr_code_draws_the_payload(served):
    """The QR code's dark modules are drawn as squares: as many as segno's matrix of the payload has."""
    import segno
    from pypdf import PdfReader

    pdf = CERT.render_pdf(served.certificate, base_url="http://127.0.0.1:8000/")
    payload = CERT.qr_payload(
        base_url="http://127.0.0.1:8000", account=served.volunteer, digest=CERT.certificate_digest(served.certificate)
    )
    dark = sum(sum(1 for m in row if m) for row in segno.make(payload, error="m", micro=False).matrix_iter(border=0))
    content = PdfReader(io.BytesIO(pdf)).pages[0].get_contents().get_data().decode("latin-1")
    assert len(re.findall(r" re\s+f", content)) == dark


def test_pdf_qr_code_decodes_to_the_payload(served, tmp_path):
    """Rendered and read back as a phone would: the QR code holds exactly `qr_payload`. Needs Debian's
    poppler-utils and zbar-tools, which `make test` installs when missing."""
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(CERT.render_pdf(served.certificate, base_url="http://bank.example/"))
    subprocess.run(["pdftoppm", "-png", "-r", "200", str(pdf), str(tmp_path / "page")], check=True)
    (page,) = tmp_path.glob("page*.png")
    decoded = subprocess.run(["zbarimg", "-q", "--raw", str(page)], capture_output=True, text=True, check=True).stdout
    digest = CERT.certificate_digest(served.certificate)
    assert decoded.strip() == CERT.qr_payload(base_url="http://bank.example", account=served.volunteer, digest=digest)


def test_certificate_names_its_district_and_issuer(served):
    cert = served.certificate
    assert cert["districtName"] == "玄武区"
    assert cert["issuer"] == {"district": DISTRICT, "name": "江苏省南京市玄武区时间银行"}
    assert "holder" not in cert  # no person named to anyone who asks by account id


def test_holder_gets_a_certificate_with_name_and_card(api, world, served):
    """The card's holder (number and check code) gets the certificate naming them; a wrong code is refused
    like a wrong look-up, and nobody else gets the name."""
    from api import cards
    from tests.test_people import register

    cards.limiter_of(api.service).reset()
    volunteer_card = f"NJ-{DISTRICT}-cert{secrets.randbelow(10**8)}"
    account = P.to_hex(P.account_id(volunteer_card))
    code = register(api, world, world.admin.key, {"cardNumber": volunteer_card, "district": DISTRICT, "kind": 1, "name": "李志愿",
                                                  "idNumber": "320102199001010011"})["checkCode"]
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=1)
    (order_id,) = _post_all(api, [served.terminal.order(account, served.elder, served.elder, minutes=30, service_type=5)])
    holder = {"X-TimeBank-Card": volunteer_card, "X-TimeBank-Check-Code": code}
    cert = api.client.get(f"/v1/accounts/{account}/certificate", headers=holder).json()
    assert cert["holder"] == {"name": "李志愿", "cardNumber": volunteer_card}
    assert [b["order"]["orderId"] for b in cert["orders"]] == [order_id]
    assert _verify(api, cert)["valid"] is True  # the holder's name changes nothing the chain checks
    wrong = api.client.get(f"/v1/accounts/{account}/certificate", headers={**holder, "X-TimeBank-Check-Code": cards.new_check_code()})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "not_found"
    other = api.client.get(f"/v1/accounts/{served.volunteer}/certificate", headers=holder)  # another account's
    assert other.status_code == 404
    pdf = api.client.get(f"/v1/accounts/{account}/certificate.pdf", headers=holder)
    assert pdf.status_code == 200
    from pypdf import PdfReader

    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "持证人" in text and f"李志愿（卡号 {volunteer_card}）" in text and "精神慰藉" in text
    cards.limiter_of(api.service).reset()


def _ink(png: Path, box: tuple[int, int, int, int]) -> int:
    """Dark pixels of a rendered page inside `box` (left, top, right, bottom, in pixels)."""
    from PIL import Image

    with Image.open(png) as image:
        return sum(image.convert("L").crop(box).histogram()[:128])


def test_pdf_embeds_a_cjk_font_subset_and_renders_without_chinese_fonts(served, tmp_path):
    """Every font of the PDF is an embedded TrueType subset (FontFile2): pdffonts says `emb yes`, `sub yes`.
    Rendered by poppler with no font at all (an empty fontconfig; poppler-data absent), the Chinese title
    has its glyphs, where a PDF naming the non-embedded STSong-Light (the reader's job) renders blank."""
    from pypdf import PdfReader

    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(CERT.render_pdf(served.certificate, base_url="http://bank.example/"))
    listing = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert listing, "no font"
    for line in listing:
        name, kind, emb, sub = line.split()[0], " ".join(line.split()[1:-5]), *line.split()[-5:-3]
        assert re.match(r"^[A-Z]{6}\+", name) and kind.startswith("TrueType") and (emb, sub) == ("yes", "yes"), line
    reader = PdfReader(str(pdf))
    for font in reader.pages[0]["/Resources"]["/Font"].values():
        descriptor = font.get_object()["/FontDescriptor"].get_object()
        assert "/FontFile2" in descriptor and len(descriptor["/FontFile2"].get_object().get_data()) < 400_000  # a subset

    # a control PDF: the same title in the standard STSong-Light, which a reader must supply
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    control = tmp_path / "control.pdf"
    c = canvas.Canvas(str(control), pagesize=A4)
    c.setFont("STSong-Light", 22)
    c.drawCentredString(A4[0] / 2, A4[1] - 70, "时间银行志愿服务记录证明")
    c.save()

    conf = tmp_path / "fonts.conf"
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig><cachedir>'
                    f"{tmp_path / 'fc-cache'}</cachedir></fontconfig>")
    env = {"PATH": "/usr/bin:/bin", "FONTCONFIG_FILE": str(conf), "HOME": str(tmp_path)}
    title = (150, 40, 450, 85)  # the title's line at 72 dpi (A4 is 595 x 842 points)
    for source, stem in ((pdf, "page"), (control, "control")):
        subprocess.run(["pdftoppm", "-png", "-r", "72", "-f", "1", "-l", "1", str(source), str(tmp_path / stem)],
                       env=env, check=True, capture_output=True)
    (page,) = tmp_path.glob("page*.png")
    (blank,) = tmp_path.glob("control*.png")
    assert _ink(blank, title) == 0  # no Chinese font reachable: the non-embedded title is blank
    assert _ink(page, title) > 500  # the embedded subset draws it


# ----- star levels at every threshold (the contract's view) ---------------------------------------


def test_star_level_thresholds_match_the_contract(bank, town):
    """Earned minutes only grow through anchored service orders: one batch per step takes a volunteer
    across each threshold; the contract's starLevel and `star_level_of` agree one minute either side."""
    pool = C.new_account_id()
    C.register_account(bank, pool, 320102, C.KIND_POOL, key=town.admin1)
    C.grant(bank, pool, 100_000, key=town.admin1)
    volunteer, earned = town.vol3, 0
    for hours, level in zip(CERT.STAR_THRESHOLD_HOURS, range(1, 6)):
        for target, expected in ((hours * 60 - 1, level - 1), (hours * 60, level)):
            order = C.make_order(district=320102, volunteer=volunteer, payer=pool, minutes=target - earned)
            C.anchor(bank, C.build_batch(bank, [order], town.station1))
            earned = target
            assert C.get_account(bank, volunteer).earned == earned
            assert bank.contract.functions.starLevel(volunteer).call() == expected == CERT.star_level_of(earned)


def test_certificate_first_page_rendered_for_people_to_look_at(api, world, served):
    """The PDF a volunteer downloads with their card (name, card number, a few anchored services of several
    types), from the real service on the real chain, written to web/test-results/ and its first page
    rendered with pdftoppm (Debian's poppler-utils, no poppler-data): docs/screenshots/certificate.png is
    a copy. The page must carry ink in its Chinese labels, not just its frame."""
    from PIL import Image
    from pypdf import PdfReader

    from api import cards
    from tests.test_people import register

    cards.limiter_of(api.service).reset()
    card = f"NJ-{DISTRICT}-V{secrets.randbelow(10**6):06d}"
    account = P.to_hex(P.account_id(card))
    code = register(api, world, world.admin.key, {"cardNumber": card, "district": DISTRICT, "kind": 1, "name": "王志愿",
                                                  "idNumber": "320102199203150027"})["checkCode"]
    world.admin.ok("RegisterAccount", account=account, district=DISTRICT, kind=1)
    _post_all(api, [served.terminal.order(account, served.elder, served.elder, minutes=m, service_type=t)
                    for t, m in [(1, 60), (5, 90), (2, 45), (7, 120)]])
    holder = {"X-TimeBank-Card": card, "X-TimeBank-Check-Code": code}
    response = api.client.get(f"/v1/accounts/{account}/certificate.pdf", headers=holder)
    assert response.status_code == 200, response.text
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    for expected in ["王志愿", card, "助餐", "精神慰藉", "助洁", "文化娱乐", "5.25 小时"]:
        assert expected in text, (expected, text)

    out = Path(__file__).resolve().parents[1] / "web" / "test-results"
    out.mkdir(exist_ok=True)
    (out / "certificate.pdf").write_bytes(response.content)
    subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(out / "certificate.pdf"),
                    str(out / "certificate")], check=True)
    image = Image.open(out / "certificate.png").convert("L")
    # the title band (top fifth, inside the margins) has dark pixels: the embedded font drew the title
    width, height = image.size
    title = image.crop((width // 10, 0, width * 9 // 10, height // 5))
    assert sum(title.histogram()[:128]) > 500
