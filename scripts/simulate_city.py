"""A day in the city: a month of a city's time bank driven through the real API, then checked.

    python -m scripts.simulate_city [--size full|small] [--seed N] [--api URL [--rpc-url URL] [--contract 0x...]]

Everything goes over HTTP as real clients send it (keys only in this process's memory): the city
administrator (Anvil's development key 0) registers three districts of Nanjing and their administrators;
each district registers two stations, its volunteers (some qualified for rehabilitation and nursing, type
9), two group volunteers with members, and its elderly people with their eligibility categories. Monthly
grants go to the eligible ones as `timebank-admin grant-monthly` sends them (`GET /v1/grants/monthly`,
then one `Grant` with reason 1 per person). Then a month of orders, signed by the station terminals and
sent with `POST /v1/orders/bulk`, their times spread over the last 30 days with no two orders of a
volunteer (or of a recipient) overlapping and check-in and check-out near the recipient's registered
address:

1. services paid with granted hours (payer = recipient), some of type 9 by qualified volunteers, some
   by the groups;
2. redemptions of saved hours (通存通兑): a volunteer pays for the care of an elderly parent, often served
   in another district than the volunteer's; transfers (type 100) from volunteers to their parents; each
   group's hours distributed to its members (type 100);
3. care paid with the transferred hours (and, when a budget runs short, more grant-paid services, so the
   month holds the planned number of orders).

Each step waits until its orders are anchored (a payer spends only anchored minutes). Then the district
administrators import home-care visits (居家服务订单比对) that overlap a few orders, find them with
`GET /v1/audit/homecare/overlaps` and revoke them (`RevokeOrder`, reason 2: paid twice); one volunteer's
account is frozen (`SetAccountStatus`): an order paying from it accepted just before is rejected when its
batch is made, one sent after is refused (`account_not_active`), as are an order of type 9 by an unqualified volunteer and one checked in far from the recipient's
address; a city-wide auditor (`RegisterAuditor`) takes a spot check (`GET /v1/audit/spot-check`) and
verifies every sampled proof with the standalone verifier (`scripts.verify_proof.verify_bundle`) against
the RPC endpoint, with the contract address pinned; every batch of the run is checked with
`verify_batch`, a few volunteers' service-record certificates with `POST /v1/certificates/verify`, and the
credit platform's export is read.

The summary counts each flow and checks: monthly grants once and only to the eligible; every order
accepted, every one anchored but the revoked ones (none rejected but the one in flight at the freeze);
the chain's balance of every account the run made (`GET /v1/accounts/{id}`) is what the orders, grants
and revocations make it, their sum is the minutes granted, none is negative but a volunteer's whose order
was revoked; the statistics (`GET /v1/stats`), the certificates and the credit export agree with the
orders; every sampled proof and every batch verifies. Exit 0 when every check passes, 1 when one fails,
2 when the run could not be made (a step refused).

With no `--api`, it starts everything itself in a temporary directory and removes it at the end: an Anvil
(a block per transaction) on a free loopback port, a TimeBank deployment, and the service
(`python -m api`, SQLite) on another free port. With `--api` it drives that service (a development one:
its city administrator must be the key of `--city-key`, and registering the districts again replaces
their administrators); `--rpc-url` and `--contract` are what the auditor trusts (defaults: TIMEBANK_RPC_URL
or the embedded chain, and the deployment record node/deployments/<chainId>.json, else what the service
says). `--size small` (20 volunteers, 10 elderly people, 150 orders) is the CI run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from api import protocol as P
from api.auth import host_of, sign_headers
from api.vocabulary import CHINA_TIME
from scripts.admin import AdminClient, Refused, grant_monthly, register_person
from scripts.chain import DEV_CHAIN_ID, DEV_KEYS, AnvilHandle, free_port, start_anvil, stop_anvil
from scripts.service_process import ServiceProcess
from scripts.verify_proof import verify_batch, verify_bundle

ROOT = Path(__file__).resolve().parent.parent
CST = CHINA_TIME  # the city's clock

# Three districts of Nanjing (GB/T 2260) and a point near the middle of each.
DISTRICTS = (
    (320102, "Xuanwu 玄武区", (32.0487, 118.7977)),
    (320104, "Qinhuai 秦淮区", (32.0199, 118.7946)),
    (320105, "Jianye 建邺区", (32.0039, 118.7311)),
)
STATIONS_PER_DISTRICT = 2
GROUPS = (("Red Cross volunteer team 红十字志愿服务队", 320102), ("Youth league volunteers 青年志愿者协会", 320105))
CATEGORIES = ("80_alone", "60_79_low_income", "60_79_disabled", "60_79_alone", "rural_left_behind")
QUALIFICATIONS = ("doctor", "nurse", "care_worker")
SERVICE_TYPES = (1, 2, 3, 4, 5, 6, 7, 8)  # 9 (professional) is chosen apart, for qualified volunteers
SERVICE_WEIGHTS = (22, 18, 4, 16, 18, 10, 6, 6)
MINUTES = (30, 45, 60, 60, 60, 90, 90, 120)
TRANSFER = P.TRANSFER_SERVICE_TYPE
STATUS_FROZEN = 2
FREEZE_REASON = 1  # the service gives status reasons no meaning; 1 here: under investigation
REVOKE_PAID_TWICE = 2  # RevokeOrder reason: the service was also paid as a subsidised home-care visit
BULK_CHUNK = 500
PROBES = ("probe", "in flight at the freeze")  # orders beside the month's
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("秀英", "桂英", "玉兰", "建国", "国华", "志强", "淑珍", "德明", "文华", "丽娟", "海燕", "子涵", "浩然", "雨萱", "俊杰", "欣怡")


@dataclass(frozen=True)
class Size:
    volunteers: int
    qualified: int
    members: int  # per group
    elderly: int
    eligible_share: float
    orders: int
    false_orders: int
    freezes: int
    sample: int


SIZES = {
    "full": Size(volunteers=200, qualified=30, members=6, elderly=100, eligible_share=0.7, orders=2000, false_orders=10, freezes=1, sample=50),
    "small": Size(volunteers=20, qualified=4, members=2, elderly=10, eligible_share=0.7, orders=150, false_orders=2, freezes=1, sample=10),
}

# The month's mix: shares of the orders (the rest: care paid with transferred hours, then fill-up).
SHARE_GRANT_PAID = 0.62
SHARE_BY_GROUPS = 0.08  # of the grant-paid services
SHARE_TYPE_9 = 0.10  # of the grant-paid services by individuals
SHARE_REDEMPTIONS = 0.18
SHARE_TRANSFERS = 0.03


def say(*args: Any) -> None:
    print(*args, flush=True)


# ----- people, stations, the ledger we expect ---------------------------------------------------------


@dataclass
class Person:
    card: str
    account: str
    district: int
    kind: int  # 1 volunteer, 2 recipient, 3 group
    name: str
    location: tuple[float, float] | None = None
    id_number: str = ""
    category: str | None = None
    qualifications: tuple[str, ...] = ()
    parent: Person | None = None  # a volunteer's elderly parent
    child: Person | None = None  # an elderly person's volunteer child
    members: list[Person] = field(default_factory=list)  # a group's

    @property
    def qualified(self) -> bool:
        return bool(self.qualifications)


@dataclass
class Station:
    key: bytes
    district: int
    separator: bytes

    @property
    def address(self) -> str:
        return P.to_hex(P.address_of(self.key))

    def sign(self, order: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
        digest = P.ServiceOrder.from_json(order).digest(self.separator)
        return {"order": order, "signature": P.to_hex(P.sign(digest, self.key)), "details": details}


@dataclass
class Order:
    flow: str
    body: dict[str, Any]
    payer: Person
    volunteer: Person
    recipient: Person
    minutes: int
    service_type: int
    district: int
    start: int
    end: int
    cross_district: bool = False
    answer: dict[str, Any] | None = None
    expect: str = "anchored"  # its final status (unless revoked)

    @property
    def order_id(self) -> str:
        return self.body["order"]["orderId"]

    @property
    def service(self) -> bool:
        return self.service_type != TRANSFER


class Ledger:
    """The balances the chain must end with: grants, anchored orders, revocations. `spendable` is what
    a payer may spend in the current step: the anchored balance less what the step already debited."""

    def __init__(self) -> None:
        self.balance: dict[str, int] = defaultdict(int)
        self.earned: dict[str, int] = defaultdict(int)
        self.spendable: dict[str, int] = defaultdict(int)
        self.granted = 0

    def begin_step(self) -> None:
        self.spendable = defaultdict(int, self.balance)

    def grant(self, account: str, minutes: int) -> None:
        self.balance[account] += minutes
        self.spendable[account] += minutes
        self.granted += minutes

    def can_pay(self, account: str, minutes: int) -> bool:
        return self.spendable[account] >= minutes

    def order(self, o: Order) -> None:
        self.balance[o.payer.account] -= o.minutes
        self.spendable[o.payer.account] -= o.minutes
        self.balance[o.volunteer.account] += o.minutes
        if o.service:
            self.earned[o.volunteer.account] += o.minutes

    def revoke(self, o: Order) -> None:
        self.balance[o.volunteer.account] -= o.minutes
        if o.service:
            self.earned[o.volunteer.account] = max(0, self.earned[o.volunteer.account] - o.minutes)
        self.balance[o.payer.account] += o.minutes


class Calendar:
    """Busy intervals per account; finds a free daytime slot (China Standard Time) in the last 30 days."""

    def __init__(self, rng: random.Random, now: int, days: int = 29):
        self.rng = rng
        self.now = now
        self.first_day = datetime.fromtimestamp(now - days * 86400, CST).replace(hour=0, minute=0, second=0, microsecond=0)
        self.days = days
        self.busy: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def free(self, account: str, start: int, end: int) -> bool:
        return all(end <= s or e <= start for s, e in self.busy[account])

    def slot(self, accounts: Iterable[str], seconds: int, tries: int = 400) -> tuple[int, int] | None:
        accounts = list(accounts)
        for _ in range(tries):
            day = self.first_day + timedelta(days=self.rng.randrange(self.days + 1))
            start = int((day + timedelta(hours=8, minutes=15 * self.rng.randrange(4 * 10))).timestamp())
            end = start + seconds
            if start < self.now - self.days * 86400 or end > self.now - 600:
                continue
            if all(self.free(a, start, end) for a in accounts):
                for a in accounts:
                    self.busy[a].append((start, end))
                return start, end
        return None


# ----- the service, when the run starts its own ----------------------------------------------------------


class OwnService:
    """Anvil (a block per transaction), a TimeBank deployment and `python -m api` over SQLite, all in a
    temporary directory and on free loopback ports."""

    def __init__(self, workdir: Path, batch_wait: float = 0.5):
        self.workdir = workdir
        self.batch_wait = batch_wait
        self.anvil: AnvilHandle | None = None
        self.service: ServiceProcess | None = None
        self.contract = ""
        self.url = ""
        self.rpc_url = ""

    def start(self) -> None:
        from eth_account import Account
        from web3 import Web3

        from scripts.compile import load_artifact
        from scripts.deploy import code_hash, deploy

        self.anvil = start_anvil(free_port(), self.workdir / "anvil", block_time=0)
        self.rpc_url = self.anvil.url
        w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 60}))
        city, relayer = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
        self.contract, receipt = deploy(w3, load_artifact("TimeBank"), city.key, city.address, relayer.address)
        deployments = self.workdir / "deployments"
        deployments.mkdir()
        (deployments / f"{DEV_CHAIN_ID}.json").write_text(
            json.dumps(
                {
                    "chainId": DEV_CHAIN_ID,
                    "address": self.contract,
                    "blockNumber": receipt["blockNumber"],
                    "txHash": receipt["transactionHash"].to_0x_hex(),
                    "codeHash": code_hash(w3, self.contract),
                }
            )
        )
        self.service = ServiceProcess(
            self.rpc_url,
            self.contract,
            self.workdir,
            TIMEBANK_DEPLOYMENTS_DIR=deployments,
            TIMEBANK_BATCH_MAX_WAIT_SECONDS=self.batch_wait,
            TIMEBANK_POLL_INTERVAL_SECONDS="0.05",
            # a month's orders are sent within minutes: the stations' ceiling of minutes a day would stop them
            TIMEBANK_STATION_DAILY_MINUTES=str(10**9),
        ).start()
        self.url = self.service.url

    def log_tail(self, lines: int = 30) -> str:
        return self.service.log_tail(lines) if self.service is not None else "(no log)"

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.anvil is not None:
            stop_anvil(self.anvil, timeout=15)


# ----- the run ----------------------------------------------------------------------------------------


class Failed(Exception):
    """The run could not go on (a setup step was refused): exit 2."""


class City:
    def __init__(self, api: str, size_name: str, seed: int, rpc_url: str, contract: str | None, city_key: bytes, own: bool):
        self.size_name = size_name
        self.size = SIZES[size_name]
        self.seed = seed
        self.rng = random.Random(seed)
        self.rpc_url = rpc_url
        self.own = own
        self.http = httpx.Client(base_url=api, timeout=180, limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
        self.city = AdminClient(api, city_key, http=self.http)
        self.domain = self.city.domain
        self.separator = self.city.separator
        self.contract = contract or self.domain["verifyingContract"]
        self.tag = f"{secrets.randbelow(10**6):06d}"  # card numbers of this run
        self.admins: dict[int, AdminClient] = {}
        self.stations: dict[int, list[Station]] = {}
        self.volunteers: list[Person] = []
        self.groups: list[Person] = []
        self.elderly: list[Person] = []
        self.ledger = Ledger()
        self.orders: list[Order] = []
        self.refused: list[tuple[Order, dict]] = []
        self.revoked: list[Order] = []
        self.probes: list[dict[str, Any]] = []
        self.frozen: Person | None = None
        self.grant_minutes = 0
        self.grants: dict[str, Any] = {}
        self.spot: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.checks: list[tuple[str, bool, str]] = []
        self.now = int(time.time())
        self.calendar = Calendar(self.rng, self.now)

    # ----- helpers ---------------------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        return bool(ok)

    def parallel(self, fn: Callable, items: Iterable, workers: int = 6) -> list:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items))

    def command(self, admin: AdminClient, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        try:
            return admin.command(kind, message)
        except Refused as refused:
            raise Failed(f"{kind} {message} refused: {refused}") from None

    def signed(self, admin: AdminClient, method: str, path: str, raw: bytes = b"", content_type: str | None = None) -> httpx.Response:
        headers = sign_headers(admin.key, self.separator, method, path, raw, host=host_of(self.http.base_url))
        if content_type:
            headers["Content-Type"] = content_type
        return self.http.request(method, path, content=raw, headers=headers)

    def location_near(self, centre: tuple[float, float], metres: float) -> tuple[float, float]:
        r = metres * math.sqrt(self.rng.random())
        a = self.rng.uniform(0, 2 * math.pi)
        return (round(centre[0] + r * math.cos(a) / 111_320, 6), round(centre[1] + r * math.sin(a) / (111_320 * math.cos(math.radians(centre[0]))), 6))

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)

    def id_number(self, district: int, year: int) -> str:
        return f"{district}{year}{self.rng.randrange(1, 13):02d}{self.rng.randrange(1, 29):02d}{self.rng.randrange(1000):03d}{self.rng.choice('0123456789X')}"

    # ----- 1. the city, its districts, stations and people ------------------------------------------------

    def setup(self) -> None:
        size, rng = self.size, self.rng
        for district, _label, _centre in DISTRICTS:
            admin = AdminClient(str(self.http.base_url), secrets.token_bytes(32), http=self.http)
            admin._domain = self.domain
            self.command(self.city, "RegisterDistrict", {"district": district, "admin": admin.address})
            self.admins[district] = admin
            self.stations[district] = [Station(secrets.token_bytes(32), district, self.separator) for _ in range(STATIONS_PER_DISTRICT)]
        self.parallel(
            lambda s: self.command(self.admins[s.district], "RegisterStation", {"station": s.address, "district": s.district}),
            [s for ss in self.stations.values() for s in ss],
        )
        codes = [d for d, _, _ in DISTRICTS]
        centres = {d: c for d, _, c in DISTRICTS}
        # elderly people: a home near the district's middle; most eligible for monthly grants
        eligible = round(size.elderly * size.eligible_share)
        for i in range(size.elderly):
            district = codes[i % len(codes)]
            card = f"NJ-{district}-E{self.tag}{i:04d}"
            self.elderly.append(
                Person(card, P.to_hex(P.account_id(card)), district, 2, self.name(), location=self.location_near(centres[district], 2500),
                       id_number=self.id_number(district, rng.randrange(1930, 1966)), category=rng.choice(CATEGORIES) if i < eligible else None)
            )  # fmt: skip
        rng.shuffle(self.elderly)
        # volunteers: the first ones are the elderly people's children, often living in another district
        for i in range(size.volunteers):
            district = rng.choice(codes)
            if i < len(self.elderly) and rng.random() < 0.4:
                district = self.elderly[i].district
            card = f"NJ-{district}-V{self.tag}{i:04d}"
            v = Person(card, P.to_hex(P.account_id(card)), district, 1, self.name(), location=self.location_near(centres[district], 2500),
                       id_number=self.id_number(district, rng.randrange(1960, 2005)))
            if i < len(self.elderly):
                v.parent, self.elderly[i].child = self.elderly[i], v
            self.volunteers.append(v)
        for v in rng.sample(self.volunteers, size.qualified):
            v.qualifications = (rng.choice(QUALIFICATIONS),)
        for i, (label, district) in enumerate(GROUPS):
            card = f"NJ-{district}-G{self.tag}{i:02d}"
            group = Person(card, P.to_hex(P.account_id(card)), district, 3, label, id_number=f"G{district}{self.tag}{i:02d}")
            group.members = rng.sample(self.volunteers, size.members)
            self.groups.append(group)

        def register(p: Person) -> None:
            try:
                register_person(
                    self.admins[p.district], card=p.card, district=p.district, kind=p.kind, name=p.name,
                    id_number=p.id_number, address=f"南京市 {p.district}",
                    location=p.location, category=p.category, qualifications=p.qualifications,
                )  # fmt: skip
            except Refused as refused:
                raise Failed(f"registering {p.card}: {refused}") from None

        self.parallel(register, self.elderly + self.volunteers + self.groups)
        for group in self.groups:
            admin = self.admins[group.district]
            for member in group.members:
                response = admin.request("POST", f"/v1/groups/{group.account}/members", {"account": member.account})
                if response.status_code not in (200, 201):
                    raise Failed(f"adding a member to {group.card}: {response.status_code} {response.text[:300]}")
        # family links (亲属绑定, LinkAccounts), each at the payer's request by the payer's district: a
        # volunteer's parent may be served on, or given, the volunteer's hours; a group's members its hours
        links = [(v, v.parent) for v in self.volunteers if v.parent is not None]
        links += [(g, m) for g in self.groups for m in g.members]
        self.parallel(
            lambda pair: self.command(
                self.admins[pair[0].district], "LinkAccounts", {"payer": pair[0].account, "beneficiary": pair[1].account, "linked": True}
            ),
            links,
        )

    # ----- 2. monthly grants ---------------------------------------------------------------------------

    def monthly_grants(self) -> None:
        eligible = [p for p in self.elderly if p.category]
        planned_minutes = round(self.size.orders * SHARE_GRANT_PAID) * sum(MINUTES) / len(MINUTES)
        self.grant_minutes = max(600, math.ceil(planned_minutes * 1.3 / max(1, len(eligible)) / 60) * 60)
        ours = {p.account for p in self.elderly}
        summaries = self.parallel(
            lambda d: grant_monthly(self.admins[d], district=d, minutes=self.grant_minutes, say=lambda _line: None),
            [d for d, _, _ in DISTRICTS],
            workers=3,
        )
        granted = [g for s in summaries for g in s["granted"]]
        for g in granted:
            if g["account"] in ours:
                self.ledger.grant(g["account"], self.grant_minutes)
        self.grants = {
            "eligible": len(eligible),
            "granted": sum(1 for g in granted if g["account"] in ours),
            "others": sum(1 for g in granted if g["account"] not in ours),
            "skipped": sum(len(s["skipped"]) for s in summaries),
            "failed": [f for s in summaries for f in s["failed"]],
            "minutes": self.grant_minutes,
            "period": summaries[0]["period"] if summaries else None,
        }
        got = {g["account"] for g in granted}
        self.check(
            "monthly grants: every eligible person granted once, no one else of the run",
            got & ours == {p.account for p in eligible} and not self.grants["failed"],
            f"{self.grants['granted']} of {len(eligible)} eligible, {len(self.grants['failed'])} failed",
        )
        # once a month, and only to the eligible: the plan is empty now, a second grant and one to a
        # person with no category are refused before they are relayed
        again = [p for d in self.admins for p in self.admins[d].request("GET", f"/v1/grants/monthly?district={d}").json()["persons"]]
        refusals = []
        for person in (eligible[0], next((p for p in self.elderly if not p.category), None)):
            if person is not None:
                try:
                    self.admins[person.district].command("Grant", {"account": person.account, "minutes": self.grant_minutes, "reason": 1})
                    refusals.append((person.card, "granted"))
                    self.ledger.grant(person.account, self.grant_minutes)  # it went through: the chain has it
                except Refused as refused:
                    refusals.append((person.card, refused.code))
        self.check(
            "monthly grants are given once and only to the eligible",
            not {p["account"] for p in again} & ours and [code for _, code in refusals] == ["already_granted", "not_eligible"][: len(refusals)],
            f"{len(again)} left in the plans; a second grant: {refusals[0][1]}" + (f"; to a person with no category: {refusals[1][1]}" if len(refusals) > 1 else ""),
        )

    # ----- orders -------------------------------------------------------------------------------------

    def details(self, where: tuple[float, float], start: int, end: int) -> dict[str, Any]:
        def near() -> dict[str, float]:
            lat, lon = self.location_near(where, 60)
            return {"lat": lat, "lon": lon}

        d: dict[str, Any] = {
            "checkIn": {**near(), "time": start},
            "checkOut": {**near(), "time": end},
            "confirmation": {"method": self.rng.choice(("card", "card", "voice", "signature")), "time": end},
        }
        if self.rng.random() < 0.8:
            d["rating"] = {"byRecipient": self.rng.choice((5, 5, 5, 4, 4, 3)), "byVolunteer": self.rng.choice((5, 5, 4))}
        return d

    def make(
        self, flow: str, volunteer: Person, payer: Person, recipient: Person, minutes: int, service_type: int,
        district: int, start: int, end: int, details: dict[str, Any] | None = None,
    ) -> Order:  # fmt: skip
        station = self.rng.choice(self.stations[district])
        if details is None:
            details = self.details(recipient.location, start, end) if service_type != TRANSFER else {
                "confirmation": {"method": "card", "time": end},
                "notes": "转赠 transfer",
            }  # fmt: skip
        order = {
            "orderId": P.to_hex(secrets.token_bytes(32)),
            "district": district,
            "volunteer": volunteer.account,
            "payer": payer.account,
            "recipient": recipient.account,
            "serviceType": service_type,
            "startTime": start,
            "endTime": end,
            "minutes": minutes,
            "detailsHash": P.to_hex(P.details_hash(details)),
        }
        cross = payer.kind == 1 and service_type != TRANSFER and payer.district != district
        return Order(flow, station.sign(order, details), payer, volunteer, recipient, minutes, service_type, district, start, end, cross)

    def service_order(
        self, flow: str, payer: Person, recipient: Person, *, professional: bool = False, by_group: bool = False, within: int | None = None
    ) -> Order | None:
        """A service to `recipient` paid by `payer` (at most `within` minutes), by a volunteer free at some
        time; None when the payer cannot pay or no volunteer is found free."""
        rng = self.rng
        minutes = rng.choice([m for m in MINUTES if within is None or m <= within] or [0])
        if minutes == 0:
            return None
        seconds = minutes * 60 + rng.choice((0, 300, 600, 900))
        if not self.ledger.can_pay(payer.account, minutes):
            return None
        if by_group:
            candidates = [g for g in self.groups if g.district == recipient.district] or self.groups
        elif professional:
            candidates = [v for v in self.volunteers if v.qualified]
        else:
            local = [v for v in self.volunteers if v.district == recipient.district]
            candidates = local if local and rng.random() < 0.75 else self.volunteers
            candidates = candidates + [v for v in candidates if v.parent is not None]  # the children serve more
        for _ in range(6):
            volunteer = rng.choice(candidates)
            if volunteer is payer or volunteer is self.frozen:
                continue
            slot = self.calendar.slot((volunteer.account, recipient.account), seconds, tries=60)
            if slot is None:
                continue
            kind = 9 if professional else rng.choices(SERVICE_TYPES, SERVICE_WEIGHTS)[0]
            order = self.make(flow, volunteer, payer, recipient, minutes, kind, recipient.district, *slot)
            self.ledger.order(order)
            return order
        return None

    def transfer(self, flow: str, giver: Person, receiver: Person, minutes: int, district: int) -> Order:
        at = self.now - self.rng.randrange(3600, 29 * 86400)
        order = self.make(flow, receiver, giver, receiver, minutes, TRANSFER, district, at, at)
        self.ledger.order(order)
        return order

    def submit(self, orders: list[Order], label: str) -> None:
        """Sends the step's orders with POST /v1/orders/bulk and waits until none is waiting for its batch."""
        t0 = time.perf_counter()
        for at in range(0, len(orders), BULK_CHUNK):
            chunk = orders[at : at + BULK_CHUNK]
            response = self.http.post("/v1/orders/bulk", json={"items": [o.body for o in chunk]})
            if response.status_code != 200:
                raise Failed(f"POST /v1/orders/bulk: {response.status_code} {response.text[:300]}")
            for o, result in zip(chunk, response.json()["results"], strict=True):
                o.answer = result
                if result["httpStatus"] != 201:
                    self.refused.append((o, result))
        self.orders.extend(orders)
        sent = time.perf_counter()
        self.wait_anchored()
        self.timings[label] = time.perf_counter() - t0
        refused = sum(1 for o in orders if o.answer["httpStatus"] != 201)
        say(f"  {label}: {len(orders)} orders sent in {sent - t0:.1f} s, anchored after {time.perf_counter() - sent:.1f} s more"
            + (f"; {refused} REFUSED" if refused else ""))  # fmt: skip

    def wait_anchored(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            health = self.http.get("/v1/health").json()
            if health.get("ordersWaiting") == 0:
                return
            if time.monotonic() > deadline:
                raise Failed(f"orders still waiting for their batch after {timeout:.0f} s: {health}")
            time.sleep(0.2)

    # ----- 3. the month ----------------------------------------------------------------------------------

    def month(self) -> None:
        size, rng = self.size, self.rng
        eligible = [p for p in self.elderly if p.category]
        target = size.orders

        # step 1: services paid with granted hours
        self.ledger.begin_step()
        step: list[Order] = []
        want = round(target * SHARE_GRANT_PAID)
        misses = 0
        while len(step) < want and misses < 200:
            recipient = rng.choice(eligible)
            by_group = rng.random() < SHARE_BY_GROUPS
            professional = not by_group and rng.random() < SHARE_TYPE_9
            order = self.service_order("grant-paid service", recipient, recipient, professional=professional, by_group=by_group)
            if order is None:
                misses += 1
                continue
            step.append(order)
        self.submit(step, "step 1, services paid with granted hours")

        # step 2: group hours to members, transfers to parents, redemptions of saved hours
        self.ledger.begin_step()
        step = []
        for group in self.groups:
            share = min(720, self.ledger.spendable[group.account] * 4 // 5 // max(1, len(group.members)))
            if share > 0:
                for member in group.members:
                    step.append(self.transfer("group distribution", group, member, share, group.district))
        families = [v for v in self.volunteers if v.parent is not None]
        givers = sorted(families, key=lambda v: (v.parent.category is not None, rng.random()))  # parents without grants first
        transferred: dict[str, int] = {}  # minutes each parent received, to spend in step 3
        for child in givers[: max(1, round(target * SHARE_TRANSFERS))]:
            amount = min(rng.choice((120, 180, 240, 300, 360)), self.ledger.spendable[child.account] // 2 // 15 * 15)
            if amount >= 30:
                step.append(self.transfer("transfer to family", child, child.parent, amount, child.district))
                transferred[child.parent.account] = amount
        want, misses, redemptions = round(target * SHARE_REDEMPTIONS), 0, 0
        while redemptions < want and misses < 300:
            child = rng.choice(families)
            order = self.service_order("redemption", child, child.parent)
            if order is None:
                misses += 1
                continue
            step.append(order)
            redemptions += 1
        self.submit(step, "step 2, redemptions, transfers, group distributions")

        # step 3: care paid with transferred hours, then grant-paid services up to the month's count
        self.ledger.begin_step()
        step = []
        left = target - len(self.orders)
        parents = [p for p in self.elderly if transferred.get(p.account, 0) >= min(MINUTES)]
        misses = 0
        while parents and len(step) < left and misses < 300:
            parent = rng.choice(parents)
            order = self.service_order("paid with transferred hours", parent, parent, within=transferred[parent.account])
            if order is None:
                misses += 1
                continue
            step.append(order)
            transferred[parent.account] -= order.minutes
            if transferred[parent.account] < min(MINUTES):
                parents.remove(parent)
        misses = 0
        while len(step) < left and misses < 300:
            recipient = rng.choice(eligible)
            order = self.service_order("grant-paid service", recipient, recipient, professional=rng.random() < SHARE_TYPE_9)
            if order is None:
                misses += 1
                continue
            step.append(order)
        self.submit(step, "step 3, care paid with transferred hours")
        self.check("the month holds the planned number of orders", len(self.orders) == target, f"{len(self.orders)} of {target}")

    # ----- 4. false orders found by the home-care comparison and revoked -----------------------------------

    def revocations(self) -> None:
        size, rng = self.size, self.rng
        candidates = [o for o in self.orders if o.service and o.answer and o.answer["httpStatus"] == 201 and o.volunteer.kind == 1]
        rng.shuffle(candidates)
        # one whose volunteer has spent the minutes since, so the clawback leaves a negative balance
        spent = [o for o in candidates if 0 <= self.ledger.balance[o.volunteer.account] < o.minutes]
        chosen: list[Order] = spent[:1]
        for o in candidates:
            if len(chosen) >= size.false_orders:
                break
            if o not in chosen and all(o.recipient is not c.recipient for c in chosen):
                chosen.append(o)
        # each district's administrator imports the home-care visits of its recipients
        by_district: dict[int, list[Order]] = defaultdict(list)
        for o in chosen:
            by_district[o.recipient.district].append(o)
        found: list[str] = []
        for district, orders in sorted(by_district.items()):
            admin = self.admins[district]
            rows = ["recipient_card,start,end,provider"] + [
                f"{o.recipient.card},{o.start},{o.end},{district} 居家养老服务中心 home-care provider" for o in orders
            ]
            response = self.signed(admin, "POST", "/v1/audit/homecare", ("\n".join(rows) + "\n").encode(), "text/csv")
            if response.status_code != 201:
                raise Failed(f"home-care import in {district}: {response.status_code} {response.text[:300]}")
            response = self.signed(admin, "GET", f"/v1/audit/homecare/overlaps?district={district}")
            if response.status_code != 200:
                raise Failed(f"home-care overlaps in {district}: {response.status_code} {response.text[:300]}")
            ours = {o.order_id for o in self.orders}
            overlaps = [x["orderId"] for x in response.json()["overlaps"] if x["orderId"] in ours]
            found.extend(overlaps)
            digests = {o.order_id: o.answer["digest"] for o in self.orders if o.answer and "digest" in o.answer}
            for order_id in overlaps:
                message = {"orderId": order_id, "digest": digests[order_id], "reason": REVOKE_PAID_TWICE}
                self.command(admin, "RevokeOrder", message)
        by_id = {o.order_id: o for o in self.orders}
        for order_id in found:
            if order_id in by_id:
                self.revoked.append(by_id[order_id])
                self.ledger.revoke(by_id[order_id])
        self.check(
            "the home-care comparison finds exactly the false orders",
            sorted(found) == sorted(o.order_id for o in chosen),
            f"{len(found)} found, {len(chosen)} planted",
        )

    # ----- 5. a frozen account, and orders the checks refuse ---------------------------------------------

    def probe(self, label: str, order: Order, want: str) -> None:
        response = self.http.post("/v1/orders", json=order.body)
        code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
        self.probes.append({"probe": label, "status": response.status_code, "code": code, "want": want})
        if response.status_code < 300:  # accepted after all: its minutes move, and the ledger must know
            self.ledger.order(order)
            order.answer = {"httpStatus": response.status_code, **response.json()}
            self.orders.append(order)
            self.wait_anchored()

    def freeze(self) -> None:
        rng = self.rng
        self.ledger.begin_step()
        savers = [v for v in self.volunteers if v.parent is not None and self.ledger.balance[v.account] >= 180 and v.qualifications == ()]
        for saver in rng.sample(savers, min(self.size.freezes, len(savers))):
            # an order paying from the account, accepted just before the freeze: its batch is made after
            in_flight = self._probe_order(saver, saver.parent)
            in_flight.flow = "in flight at the freeze"
            response = self.http.post("/v1/orders", json=in_flight.body)
            in_flight.answer = {"httpStatus": response.status_code, **response.json()}
            self.orders.append(in_flight)
            freeze = self.command(
                self.admins[saver.district], "SetAccountStatus", {"account": saver.account, "status": STATUS_FROZEN, "reason": FREEZE_REASON}
            )
            self.frozen = saver
            order = self._probe_order(saver, saver.parent)
            self.probe(f"{saver.card} (frozen) pays for a service to its parent", order, "account_not_active")
            self.wait_anchored()
            view = self.http.get(f"/v1/orders/{in_flight.order_id}").json()
            status, reason = view.get("status"), view.get("reason") or ""
            self.in_flight = {"status": status, "reason": reason, "freezeBlock": freeze["blockNumber"], "batchBlock": view.get("blockNumber")}
            if status == "anchored":  # its batch was mined before the freeze: the minutes moved
                self.ledger.order(in_flight)
            in_flight.expect = status
            self.check(
                "an order accepted just before the freeze is rejected when anchored (or was anchored before it)",
                response.status_code == 201
                and ((status == "rejected" and reason.startswith("account_not_active"))
                     or (status == "anchored" and view["blockNumber"] < freeze["blockNumber"])),
                f"accepted {response.status_code}, then {status} ({reason or 'block ' + str(view.get('blockNumber'))}); freeze in block {freeze['blockNumber']}",
            )  # fmt: skip
            view = self.http.get(f"/v1/accounts/{saver.account}").json()
            self.check(
                "the frozen account is frozen on chain and keeps its minutes",
                view.get("status") == STATUS_FROZEN and view.get("balanceMinutes") == self.ledger.balance[saver.account],
                f"status {view.get('status')}, balance {view.get('balanceMinutes')} (expected {self.ledger.balance[saver.account]})",
            )
        # a professional service by an unqualified volunteer; a check-in far from the recipient's address
        recipient = next(p for p in self.elderly if p.category and self.ledger.balance[p.account] >= 120)
        unqualified = next(v for v in self.volunteers if not v.qualified and v is not self.frozen)
        self.probe("type 9 by an unqualified volunteer", self._probe_order(recipient, recipient, unqualified, service_type=9), "qualification_required")
        far = (round(recipient.location[0] + 0.03, 6), recipient.location[1])  # about 3.3 km north
        self.probe("checked in 3 km from the recipient's address", self._probe_order(recipient, recipient, unqualified, where=far), "location_mismatch")
        self.check(
            "the checks refuse what they must (frozen payer, unqualified type 9, far check-in)",
            all(p["code"] == p["want"] for p in self.probes),
            "; ".join(f"{p['probe']}: {p['status']} {p['code']}" for p in self.probes),
        )

    def _probe_order(self, payer: Person, recipient: Person, volunteer: Person | None = None, service_type: int = 1,
                     where: tuple[float, float] | None = None) -> Order:  # fmt: skip
        """An order that passes every check but the one probed (a 60-minute service at a free time)."""
        if volunteer is None:
            others = [v for v in self.volunteers if v is not payer and v is not self.frozen]
            volunteer = next((v for v in others if v.district == recipient.district), others[0])
        start, end = self.calendar.slot((volunteer.account, recipient.account), 3600) or (self.now - 7200, self.now - 3600)
        details = self.details(where or recipient.location, start, end)
        return self.make("probe", volunteer, payer, recipient, 60, service_type, recipient.district, start, end, details)

    # ----- 6. the auditor's spot check ------------------------------------------------------------------

    def audit(self) -> None:
        auditor = AdminClient(str(self.http.base_url), secrets.token_bytes(32), http=self.http)
        auditor._domain = self.domain
        self.command(self.city, "RegisterAuditor", {"auditor": auditor.address, "district": 0})
        seed = self.rng.randrange(2**32)
        response = self.signed(auditor, "GET", f"/v1/audit/spot-check?size={self.size.sample}&seed={seed}")
        if response.status_code != 200:
            raise Failed(f"spot check: {response.status_code} {response.text[:300]}")
        spot = response.json()
        t0 = time.perf_counter()
        results = self.parallel(lambda b: verify_bundle(b, self.rpc_url, contract=self.contract), spot["orders"], workers=4)
        failed = [(b["order"]["orderId"], r.failed_step) for b, r in zip(spot["orders"], results) if not r.ok]
        ours = {o.order_id for o in self.orders}
        revoked = {o.order_id for o in self.revoked}
        sampled = [b["order"]["orderId"] for b in spot["orders"]]
        self.spot = {"seed": spot["seed"], "population": spot["population"], "sampled": len(sampled), "verified": len(sampled) - len(failed),
                     "failed": failed, "seconds": time.perf_counter() - t0}  # fmt: skip
        anchored = sum(1 for o in self.orders if o.answer and o.answer["httpStatus"] in (200, 201) and o.expect == "anchored") - len(self.revoked)
        self.check(
            "the spot check samples anchored, unrevoked orders",
            len(sampled) == min(self.size.sample, spot["population"]) and not set(sampled) & revoked
            and (not self.own or (spot["population"] == anchored and set(sampled) <= ours)),
            f"{len(sampled)} sampled of {spot['population']}" + (f" (anchored and not revoked: {anchored})" if self.own else ""),
        )  # fmt: skip
        self.check(
            "every sampled proof verifies (verify_bundle, contract pinned)",
            sampled and not failed,
            f"{len(sampled) - len(failed)} of {len(sampled)} verified" + (f"; failed: {failed[:5]}" if failed else ""),
        )

    # ----- 7. the rest of the supervision: batches, certificates, the credit export -------------------------

    def supervision(self) -> None:
        ours = [o for o in self.orders if o.answer and o.answer["httpStatus"] in (200, 201)]
        views = self.parallel(lambda o: self.http.get(f"/v1/orders/{o.order_id}").json(), ours, workers=4)
        self.views = {o.order_id: v for o, v in zip(ours, views)}
        # every batch holding an order of the run, recomputed and compared with its anchoring transaction
        batches = sorted({v["batchId"] for v in views if v.get("batchId")})

        def check_batch(batch_id: int):
            response = self.http.get(f"/v1/batches/{batch_id}")
            if response.status_code != 200:
                return batch_id, f"GET: {response.status_code}"
            result = verify_batch(response.json(), self.rpc_url, contract=self.contract)
            return batch_id, None if result.ok else f"step {result.failed_step}"

        bad = [(b, why) for b, why in self.parallel(check_batch, batches, workers=4) if why]
        self.batches = len(batches)
        self.check(
            "every batch of the run verifies (verify_batch: root, signatures, amounts moved by the calldata)",
            batches and not bad,
            f"{len(batches) - len(bad)} of {len(batches)} batches verified" + (f"; failed {bad[:5]}" if bad else ""),
        )
        # certificates of the volunteers revoked against and of a few others
        revoked_against = {o.volunteer.account: o.volunteer for o in self.revoked}
        others = [v for v in self.rng.sample(self.volunteers, min(5, len(self.volunteers))) if v.account not in revoked_against]
        wrong = []
        for v in list(revoked_against.values()) + others:
            response = self.http.get(f"/v1/accounts/{v.account}/certificate")
            if response.status_code != 200:
                wrong.append((v.card, response.status_code))
                continue
            certificate = response.json()
            verdict = self.http.post("/v1/certificates/verify", json=certificate).json()
            expected = self.ledger.earned[v.account]
            listed = {b["order"]["orderId"] for b in certificate["orders"]}
            if (certificate["earnedMinutes"], certificate["totalMinutes"]) != (expected, expected) or not verdict.get("valid") \
                    or listed & {o.order_id for o in self.revoked}:  # fmt: skip
                wrong.append((v.card, certificate["earnedMinutes"], certificate["totalMinutes"], expected, verdict.get("failed")))
        self.certificates = len(revoked_against) + len(others)
        self.check(
            "service-record certificates: the minutes the orders make, revoked orders left out, valid",
            not wrong,
            f"{self.certificates - len(wrong)} of {self.certificates} right" + (f"; wrong {wrong[:3]}" if wrong else ""),
        )
        # the credit platform's export: one line per anchored, unrevoked service order
        response = self.signed(self.city, "GET", "/v1/exports/credit")
        lines = [json.loads(line) for line in response.text.splitlines() if line.strip()] if response.status_code == 200 else []
        exported = {line["orderId"] for line in lines}
        want = {o.order_id for o in ours if o.service and o.expect == "anchored"} - {o.order_id for o in self.revoked}
        self.exported = len(exported & {o.order_id for o in ours})
        self.check(
            "the credit export holds every anchored, unrevoked service order of the run and nothing else of it",
            response.status_code == 200 and exported & {o.order_id for o in ours} == want and (not self.own or len(lines) == len(want)),
            f"{response.status_code}: {len(lines)} lines, {self.exported} of the run, {len(want)} expected",
        )

    # ----- 8. the final checks ---------------------------------------------------------------------------

    def final_checks(self) -> None:
        accepted = [o for o in self.orders if o.answer and o.answer["httpStatus"] in (200, 201)]
        month = [o for o in self.orders if o.flow not in PROBES]
        self.check(
            "every order of the month accepted at intake",
            not self.refused,
            f"{len(month) - len(self.refused)} of {len(month)} accepted"
            + (f"; refused e.g. {[(o.flow, r.get('error', {}).get('code')) for o, r in self.refused[:5]]}" if self.refused else ""),
        )
        known = getattr(self, "views", {})
        views = self.parallel(lambda o: known.get(o.order_id) or self.http.get(f"/v1/orders/{o.order_id}").json(), accepted, workers=4)
        statuses = Counter(v.get("status") for v in views)
        revoked = {o.order_id for o in self.revoked}
        wrong = [(o.order_id, v.get("status"), v.get("reason")) for o, v in zip(accepted, views)
                 if v.get("status") != ("revoked" if o.order_id in revoked else o.expect)]  # fmt: skip
        self.status_counts = dict(statuses)
        self.check(
            "every accepted order anchored, the false ones revoked, none rejected but the one in flight at the freeze",
            not wrong and len(revoked) == self.size.false_orders,
            ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + (f"; unexpected: {wrong[:5]}" if wrong else ""),
        )
        people = self.volunteers + self.groups + self.elderly
        accounts = self.parallel(lambda p: self.http.get(f"/v1/accounts/{p.account}").json(), people, workers=4)
        balances = {p.account: a.get("balanceMinutes") for p, a in zip(people, accounts)}
        earned = {p.account: a.get("earnedMinutes") for p, a in zip(people, accounts)}
        total = sum(b for b in balances.values() if b is not None)
        self.balances = {"sum": total, "granted": self.ledger.granted, "negative": sorted(b for b in balances.values() if b is not None and b < 0)}
        self.check(
            "balances conserve: their sum is the minutes granted",
            total == self.ledger.granted,
            f"sum of {len(balances)} balances {total:,} min, granted {self.ledger.granted:,} min",
        )
        off = [(p.card, balances[p.account], self.ledger.balance[p.account]) for p in people if balances[p.account] != self.ledger.balance[p.account]]
        off += [(p.card, f"earned {earned[p.account]}", self.ledger.earned[p.account]) for p in people if earned[p.account] != self.ledger.earned[p.account]]
        self.check("every account's balance and earned minutes are what the orders make them", not off, f"{len(off)} differ" + (f", e.g. {off[:4]}" if off else ""))
        revoked_against = {o.volunteer.account for o in self.revoked}
        negative = [p for p in people if (balances[p.account] or 0) < 0]
        self.check(
            "no balance negative but a volunteer's whose order was revoked",
            all(p.account in revoked_against for p in negative),
            f"{len(negative)} negative" + (f" ({', '.join(f'{p.card} {balances[p.account]}' for p in negative)})" if negative else ""),
        )
        if self.own:
            stats = self.http.get("/v1/stats").json()
            got = {d["district"]: (d["orders"], d["minutes"], d["revocations"]) for d in stats["districts"]}
            want: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
            for o in accepted:
                if o.service and o.expect == "anchored":
                    w = want[o.district]
                    if o.order_id in revoked:
                        w[2] += 1
                    else:
                        w[0] += 1
                        w[1] += o.minutes
            self.check("the statistics (GET /v1/stats) agree", got == {d: tuple(w) for d, w in want.items()}, f"districts {got}")

    # ----- the summary -----------------------------------------------------------------------------------

    def summary(self, elapsed: float) -> dict[str, Any]:
        flows = Counter(o.flow for o in self.orders if o.flow not in PROBES)
        services = [o for o in self.orders if o.flow not in PROBES and o.service]
        return {
            "size": self.size_name,
            "seed": self.seed,
            "districts": len(self.admins),
            "districtNames": [f"{d} {label}" for d, label, _ in DISTRICTS if d in self.admins],
            "stations": sum(len(s) for s in self.stations.values()),
            "volunteers": len(self.volunteers),
            "qualified": sum(1 for v in self.volunteers if v.qualified),
            "groups": len(self.groups),
            "members": sum(len(g.members) for g in self.groups),
            "elderly": len(self.elderly),
            "eligible": sum(1 for p in self.elderly if p.category),
            "grants": self.grants,
            "orders": sum(flows.values()),
            "flows": dict(flows),
            "type9": sum(1 for o in services if o.service_type == 9),
            "byGroups": sum(1 for o in services if o.volunteer.kind == 3),
            "crossDistrictRedemptions": sum(1 for o in services if o.flow == "redemption" and o.cross_district),
            "minutesServed": sum(o.minutes for o in services),
            "revoked": len(self.revoked),
            "frozen": self.frozen.card if self.frozen else None,
            "inFlight": getattr(self, "in_flight", None),
            "probes": self.probes,
            "statuses": getattr(self, "status_counts", {}),
            "balances": getattr(self, "balances", {}),
            "spotCheck": self.spot,
            "batchesVerified": getattr(self, "batches", 0),
            "certificates": getattr(self, "certificates", 0),
            "creditExport": getattr(self, "exported", 0),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "elapsedSeconds": round(elapsed, 1),
            "checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in self.checks],
            "ok": bool(self.checks) and all(ok for _, ok, _ in self.checks),
        }


def print_summary(s: dict[str, Any]) -> None:
    f = s["flows"]
    g = s["grants"]
    say("")
    say(f"=== A day in the city: summary (size {s['size']}, seed {s['seed']}) ===")
    say(f"districts   {', '.join(s['districtNames'])}")
    say(f"city        {s['districts']} districts, {s['stations']} stations, {s['volunteers']} volunteers ({s['qualified']} qualified), "
        f"{s['groups']} groups ({s['members']} members), {s['elderly']} elderly people ({s['eligible']} eligible)")
    if g:
        say(f"grants      {g['granted']} monthly grants of {g['minutes']:,} min for {g['period']} ({g['granted'] * g['minutes']:,} min)"
            + (f"; {g['others']} to people of earlier runs" if g.get("others") else ""))
    say(f"orders      {s['orders']:,} over the last 30 days, {s['minutesServed']:,} min of service:")
    for flow in ("grant-paid service", "redemption", "transfer to family", "group distribution", "paid with transferred hours"):
        extra = {
            "grant-paid service": f" ({s['type9']} of type 9 by qualified volunteers, {s['byGroups']} by groups)",
            "redemption": f" ({s['crossDistrictRedemptions']} served in another district than the saver's)",
        }.get(flow, "")
        say(f"              {f.get(flow, 0):5,} {flow}{extra}")
    say(f"statuses    {', '.join(f'{n:,} {st}' for st, n in sorted(s['statuses'].items()))}; {s['revoked']} false orders revoked")
    say(f"frozen      {s['frozen']}")
    if s["inFlight"]:
        i = s["inFlight"]
        say(f"in flight   an order paying from it, accepted before the freeze (block {i['freezeBlock']}): {i['status']}"
            + (f" ({i['reason']})" if i["reason"] else f" in block {i['batchBlock']}"))
    for p in s["probes"]:
        say(f"refused     {p['probe']}: {p['status']} {p['code']}")
    if s["balances"]:
        b = s["balances"]
        say(f"balances    sum {b['sum']:,} min, granted {b['granted']:,} min, negative {b['negative']}")
    if s["spotCheck"]:
        sc = s["spotCheck"]
        say(f"spot check  seed {sc['seed']}: {sc['sampled']} of {sc['population']:,} anchored orders, {sc['verified']} verified in {sc['seconds']:.1f} s")
    say(f"supervision {s['batchesVerified']} batches verified, {s['certificates']} certificates checked, {s['creditExport']:,} orders in the credit export")
    say("timings     " + ", ".join(f"{k} {v:.1f} s" for k, v in s["timings"].items()))
    say("checks")
    for c in s["checks"]:
        say(f"  {'PASS' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
    say(f"elapsed     {s['elapsedSeconds']:.1f} s; {'all checks pass' if s['ok'] else 'SOME CHECKS FAILED'}")


def _deployment_contract(rpc_url: str) -> str | None:
    """The address of the deployment record (the city's published address) of the RPC's chain."""
    from scripts.chain import rpc

    try:
        chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
        return json.loads((ROOT / "node" / "deployments" / f"{chain_id}.json").read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def run(size: str = "small", seed: int = 1, api: str | None = None, rpc_url: str | None = None, contract: str | None = None,
        city_key: str = DEV_KEYS[0], keep: bool = False) -> dict[str, Any]:  # fmt: skip
    """Runs the simulation (starting its own chain and service unless `api` is given); the summary, with
    `ok` true when every check passed. Raises `Failed` when a step was refused and the run cannot go on."""
    t0 = time.perf_counter()
    own: OwnService | None = None
    workdir: Path | None = None
    city: City | None = None
    try:
        if api is None:
            workdir = Path(tempfile.mkdtemp(prefix="timebank-city-"))
            own = OwnService(workdir)
            own.start()
            api, rpc_url, contract = own.url, own.rpc_url, own.contract
            say(f"own chain {own.rpc_url} (TimeBank {own.contract}) and service {own.url}, in {workdir}; ready in {time.perf_counter() - t0:.1f} s")
        else:
            rpc_url = rpc_url or os.environ.get("TIMEBANK_RPC_URL") or "http://127.0.0.1:8545"
            contract = contract or _deployment_contract(rpc_url)
        city = City(api, size, seed, rpc_url, contract, bytes.fromhex(city_key.removeprefix("0x")), own=own is not None)
        steps = (
            ("setup", city.setup, "districts, stations, people, groups"),
            ("grants", city.monthly_grants, "monthly grants"),
            ("month", city.month, "a month of orders"),
            ("revocations", city.revocations, "false orders found and revoked"),
            ("freeze", city.freeze, "a frozen account and refused orders"),
            ("audit", city.audit, "the auditor's spot check"),
            ("supervision", city.supervision, "batches, certificates, the credit export"),
            ("checks", city.final_checks, "final checks"),
        )
        for key, step, label in steps:
            t = time.perf_counter()
            say(f"{label} ...")
            step()
            city.timings[key] = time.perf_counter() - t
        return city.summary(time.perf_counter() - t0)
    except Failed:
        if own is not None:
            say(own.log_tail())
        raise
    finally:
        if city is not None:
            city.http.close()
        if own is not None:
            own.stop()
        if workdir is not None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif workdir is not None:
            say(f"kept {workdir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.simulate_city", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--seed", type=int, default=1, help="the plan's random seed (keys and card numbers are always new)")
    parser.add_argument("--api", help="drive this service instead of starting a chain and a service")
    parser.add_argument("--rpc-url", help="with --api: the chain the auditor trusts (default TIMEBANK_RPC_URL or 127.0.0.1:8545)")
    parser.add_argument("--contract", help="with --api: the TimeBank address the auditor pins (default: the deployment record)")
    parser.add_argument("--city-key", default=os.environ.get("TIMEBANK_CITY_KEY", DEV_KEYS[0]), help="the city administrator's key (default: Anvil's key 0)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (chain state, database, service log)")
    args = parser.parse_args(argv)
    try:
        summary = run(args.size, args.seed, args.api, args.rpc_url, args.contract, args.city_key, args.keep)
    except (Failed, RuntimeError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
