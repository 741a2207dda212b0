"""Error messages in Chinese and English: every code of the catalogue has both, and the answer's
`message` follows the request's `Accept-Language` (real service and chain)."""

from __future__ import annotations

import re

import pytest

from api.errors import CATALOGUE, MESSAGES_ZH, ApiError, messages, preferred_language

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_code_has_an_english_and_a_chinese_message():
    assert set(MESSAGES_ZH) == set(CATALOGUE)
    for code, (status, english) in CATALOGUE.items():
        assert 400 <= status < 600 and english.strip(), code
        zh = MESSAGES_ZH[code]
        assert CJK.search(zh), f"{code}: {zh!r} has no Chinese"
        body = ApiError(code).body("zh")["error"]
        assert body == {"code": code, "message": zh, "messageEn": english, "messageZh": zh}
        assert ApiError(code).body("en")["error"]["message"] == english


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en", "en"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR, zh-TW;q=0.5", "zh"),
        ("zh;q=0, en;q=0.1", "en"),
        ("en;q=0.2, zh-Hans;q=0.7", "zh"),
        ("de", "en"),
        ("zh;q=bad", "en"),
    ],
)
def test_accept_language(header, language):
    assert preferred_language(header) == language


def test_a_specific_message_keeps_its_detail_in_chinese():
    english, chinese = messages("invalid_request", "period: expected YYYY-MM")
    assert english == "period: expected YYYY-MM"
    assert chinese == MESSAGES_ZH["invalid_request"] + "（period: expected YYYY-MM）"


def test_the_service_answers_in_the_language_asked(api, world):
    client = api.client
    zh = client.get("/v1/orders/0x12", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert zh.status_code == 400
    error = zh.json()["error"]
    assert error["code"] == "wrong_length" and CJK.search(error["message"]) and error["message"] == error["messageZh"]
    assert not CJK.search(error["messageEn"])
    en = client.get("/v1/orders/0x12")  # no Accept-Language: English, both given
    assert en.json()["error"]["message"] == en.json()["error"]["messageEn"] == error["messageEn"]

    # an order refused by the writer (single and bulk) and a route's validation error
    order = world.terminal.order(world.volunteer, world.elder, world.elder, minutes=0)
    single = client.post("/v1/orders", json=order, headers={"Accept-Language": "zh"})
    assert single.status_code == 422 and single.json()["error"]["code"] == "invalid_minutes"
    assert single.json()["error"]["message"].startswith(MESSAGES_ZH["invalid_minutes"])
    bulk = client.post("/v1/orders/bulk", json={"items": [order]}, headers={"Accept-Language": "zh"})
    assert bulk.json()["results"][0]["error"]["message"].startswith(MESSAGES_ZH["invalid_minutes"])
    history = client.get(f"/v1/accounts/{world.elder}/history?limit=0", headers={"Accept-Language": "zh"})
    assert history.status_code == 400 and history.json()["error"]["message"].startswith(MESSAGES_ZH["invalid_request"])
    unknown = client.get("/v1/no-such-path", headers={"Accept-Language": "zh"})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"].startswith(MESSAGES_ZH["not_found"])

    catalogue = client.get("/v1/errors").json()
    assert set(catalogue) == set(CATALOGUE) and all(CJK.search(v["meaningZh"]) for v in catalogue.values())
