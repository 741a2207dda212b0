"""API test helpers: a real service (its own Anvil, the real contract, a real database, uvicorn on a free
port) and a station terminal and administrators that speak only PROTOCOL.md over HTTP."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from api import protocol as P
from api.app import create_app
from api.service import Service
from api.serving import header_timeout_protocol
from api.settings import Settings
from scripts.admin import AdminClient
from scripts.chain import DEV_KEYS, free_port

CITY_KEY = bytes.fromhex(DEV_KEYS[0][2:])
RELAYER_KEY = bytes.fromhex(DEV_KEYS[1][2:])


class ApiServer:
    """uvicorn serving `create_app` in a thread of the test process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = Service(settings)
        self.service.start()
        self.port = settings.port
        config = uvicorn.Config(
            create_app(settings, self.service),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            loop="asyncio",
            http=header_timeout_protocol(settings.header_timeout_seconds),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.stop()


def settings_for(rpc_url: str, contract: str, database_url: str, **overrides: Any) -> Settings:
    values = dict(
        deployments_dir=Path(database_url.split("///", 1)[-1]).parent,  # not the repository's records
        rpc_url=rpc_url,
        contract_address=contract,
        database_url=database_url,
        port=free_port(),
        batch_max_wait_seconds=0.3,
        poll_interval_seconds=0.05,
        tx_timeout_seconds=30,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Admin:
    """An administrator's key in the tests: signs PROTOCOL.md section 4 commands with increasing nonces and
    posts them through the administrators' client (scripts/admin.py), answering the raw response."""

    key: bytes
    client: httpx.Client
    domain: dict
    nonce: int = field(default_factory=lambda: secrets.randbits(40))

    def __post_init__(self) -> None:
        self.api = AdminClient(str(self.client.base_url), self.key, http=self.client, _domain=self.domain)

    @property
    def address(self) -> str:
        return self.api.address

    def sign(self, kind: str, message: dict) -> str:
        return self.api.sign(kind, message)

    def command(self, kind: str, /, **message: Any) -> httpx.Response:
        self.nonce += 1
        message.setdefault("nonce", self.nonce)
        if kind == "RevokeOrder" and "digest" not in message:  # v1.1: the order's digest, as the service holds it
            known = self.client.get(f"/v1/orders/{message['orderId']}")
            message["digest"] = known.json()["digest"] if known.status_code == 200 else "0x" + "00" * 32
        # through `self.client`, which a test may point at another service (tests/test_resilience.py, bind)
        return self.client.post("/v1/admin/commands", json={"type": kind, "message": message, "signature": self.sign(kind, message)})

    def ok(self, kind: str, /, **message: Any) -> dict:
        response = self.command(kind, **message)
        assert response.status_code == 200, response.text
        return response.json()


def card(prefix: str = "NJ-320102") -> tuple[str, str]:
    number = f"{prefix}-{secrets.randbelow(10**9):09d}"
    return number, P.to_hex(P.account_id(number))


def details(lat: float = 32.05, lon: float = 118.79, at: int | None = None, **extra: Any) -> dict:
    at = int(time.time()) if at is None else at
    return {
        "checkIn": {"lat": lat, "lon": lon, "time": at - 3600},
        "checkOut": {"lat": lat, "lon": lon, "time": at},
        "confirmation": {"method": "card", "time": at},
        **extra,
    }


class Terminal:
    """A station terminal built from PROTOCOL.md alone: it signs orders with its key."""

    def __init__(self, key: bytes, client: httpx.Client, domain: dict, district: int):
        self.key = key
        self.client = client
        self.domain = domain
        self.district = district
        self.separator = P.domain_separator(domain["chainId"], domain["verifyingContract"])
        self.clock = int(time.time()) - 20 * 24 * 3600  # services laid one after another, in the past

    @property
    def address(self) -> str:
        return P.to_hex(P.address_of(self.key))

    def order(self, volunteer: str, payer: str, recipient: str, minutes: int = 60, service_type: int = 1, **kw: Any) -> dict:
        """A signed request body `{order, signature, details}`."""
        duration = kw.pop("duration", minutes * 60)
        start = kw.pop("start", None)
        if start is None:  # the terminal's services follow one another
            start = self.clock
            self.clock += duration + 60
        d = kw.pop("details", None) or details(at=start + duration)
        order = {
            "orderId": P.to_hex(secrets.token_bytes(32)),
            "district": self.district,
            "volunteer": volunteer,
            "payer": payer,
            "recipient": recipient,
            "serviceType": service_type,
            "startTime": start,
            "endTime": start + duration,
            "minutes": minutes,
            "detailsHash": P.to_hex(P.details_hash(d)),
        }
        order.update(kw)
        return self.signed(order, d)

    def signed(self, order: dict, d: dict) -> dict:
        digest = P.ServiceOrder.from_json(order).digest(self.separator)
        return {"order": order, "signature": P.to_hex(P.sign(digest, self.key)), "details": d}

    def post(self, body: dict) -> httpx.Response:
        return self.client.post("/v1/orders", json=body)


def wait_for(predicate, timeout: float = 20, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


def wait_anchored(client: httpx.Client, order_id: str, timeout: float = 30) -> dict:
    def anchored():
        view = client.get(f"/v1/orders/{order_id}").json()
        return view if view.get("status") in ("anchored", "rejected") else None

    return wait_for(anchored, timeout)


def order_digest(client: httpx.Client, order_id: str) -> str:
    """The EIP-712 digest of a stored order, which a RevokeOrder command names with its id (v1.1)."""
    response = client.get(f"/v1/orders/{order_id}")
    return response.json()["digest"] if response.status_code == 200 else "0x" + "00" * 32
