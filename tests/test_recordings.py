"""Voice confirmation recordings against the real service and chain: the terminal signs an order whose
details name the recording's keccak256, uploads the bytes once accepted (idempotent), only those bytes
are taken, and only signed requests of the order district's administrators and auditors read them."""

from __future__ import annotations

import secrets
import time

import pytest

from api import protocol as P
from api.recordings import MAX_RECORDING_BYTES
from tests.test_people import error_of, request
from tests.utils.api import details
from tests.utils.api_world import DISTRICT, OTHER_DISTRICT

pytestmark = pytest.mark.usefixtures("api")


def voice_order(world, audio: bytes, **confirmation):
    at = int(time.time()) - 3600
    d = details(at=at)
    d["confirmation"] = {"method": "voice", "time": at, "recording": {
        "keccak256": P.to_hex(P.keccak(audio)), "mimeType": "audio/webm;codecs=opus", "bytes": len(audio)}, **confirmation}
    return world.terminal.order(world.volunteer2, world.elder2, world.elder2, minutes=30, details=d)


def put(api, order_id: str, audio: bytes, content_type: str = "audio/webm;codecs=opus", **headers):
    return api.client.put(f"/v1/orders/{order_id}/recording", content=audio, headers={"Content-Type": content_type, **headers})


def test_upload_and_read_a_voice_confirmation(api, world):
    audio = b"OggS" + secrets.token_bytes(20_000)  # stands for the MediaRecorder's output
    body = voice_order(world, audio)
    order_id = body["order"]["orderId"]
    error_of(put(api, order_id, audio), 404, "not_found")  # not submitted yet
    assert api.client.post("/v1/orders", json=body).status_code == 201

    error_of(put(api, order_id, audio[:-1] + b"x"), 422, "recording_mismatch")
    error_of(put(api, order_id, audio, "text/plain"), 400, "invalid_request")
    first = put(api, order_id, audio)
    assert first.status_code == 201, first.text
    assert first.json() == {"orderId": order_id, "keccak256": P.to_hex(P.keccak(audio)), "bytes": len(audio), "mimeType": "audio/webm;codecs=opus"}
    again = put(api, order_id, audio)  # the terminal's offline queue sends it again
    assert again.status_code == 200 and again.json() == first.json()

    path = f"/v1/orders/{order_id}/recording"
    auditor = secrets.token_bytes(32)
    world.city.ok("RegisterAuditor", auditor=P.to_hex(P.address_of(auditor)), district=DISTRICT)
    for key in (world.admin.key, world.city.key, auditor):
        got = request(api, world, key, "GET", path)
        assert got.status_code == 200 and got.content == audio and got.headers["content-type"].startswith("audio/webm")
    error_of(request(api, world, None, "GET", path), 401, "unauthenticated")
    for key in (world.other_admin.key, secrets.token_bytes(32)):
        error_of(request(api, world, key, "GET", path), 403, "forbidden")


def test_a_recording_is_taken_only_for_a_voice_confirmation(api, world):
    card_order = world.terminal.order(world.volunteer2, world.elder2, world.elder2, minutes=30)  # confirmed by card
    assert api.client.post("/v1/orders", json=card_order).status_code == 201
    error_of(put(api, card_order["order"]["orderId"], b"sound"), 422, "recording_not_expected")
    # uploaded nothing: a signed read finds none
    none = request(api, world, world.admin.key, "GET", f"/v1/orders/{card_order['order']['orderId']}/recording")
    error_of(none, 404, "not_found")
    error_of(put(api, "0x12", b"sound"), 400, "wrong_length")


def test_a_recording_over_the_cap_is_refused(api, world):
    audio = secrets.token_bytes(MAX_RECORDING_BYTES + 1)
    body = voice_order(world, audio)
    assert api.client.post("/v1/orders", json=body).status_code == 201
    error_of(put(api, body["order"]["orderId"], audio), 413, "body_too_large")

    def chunks():  # no Content-Length: refused while streaming
        for start in range(0, len(audio), 1 << 20):
            yield audio[start : start + (1 << 20)]

    streamed = api.client.put(f"/v1/orders/{body['order']['orderId']}/recording", content=chunks(), headers={"Content-Type": "audio/ogg"})
    error_of(streamed, 413, "body_too_large")
