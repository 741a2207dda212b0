"""A small registered world, made through the API with signed commands: a district with its admin and a
station, volunteers, an elderly person with granted minutes."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from api import protocol as P
from api.auth import host_of, sign_headers

from tests.utils.api import CITY_KEY, Admin, ApiServer, Terminal, card

DISTRICT = 320102
OTHER_DISTRICT = 320104
HOME = (32.05, 118.79)  # the registered location of the world's elderly people; tests.utils.api.details checks in here


@dataclass
class World:
    domain: dict
    city: Admin
    admin: Admin
    other_admin: Admin
    terminal: Terminal
    other_terminal: Terminal
    volunteer: str
    volunteer2: str
    elder: str
    elder2: str
    recipient_far: str

    def new_account(
        self, kind: int = 1, admin: Admin | None = None, district: int = DISTRICT, grant: int = 0, location: tuple[float, float] | None = HOME
    ) -> str:
        """A registered account; an elderly person (kind 2) gets a registered location (`HOME`, where the
        terminals' default details check in) unless `location` is None: without one no service is accepted."""
        admin = admin or self.admin
        _number, account = card(f"NJ-{district}")
        admin.ok("RegisterAccount", account=account, district=district, kind=kind)
        if grant:
            admin.ok("Grant", account=account, minutes=grant, reason=1)
        if kind == 2 and location is not None:
            set_location(admin, account, location)
        return account


def link(admin: Admin, payer: str, beneficiary: str, linked: bool = True) -> None:
    """A family link (LinkAccounts) by the administrator of the payer's district: `beneficiary` may be
    served on, or given, `payer`'s minutes."""
    admin.ok("LinkAccounts", payer=payer, beneficiary=beneficiary, linked=linked)


def set_location(admin: Admin, account: str, location: tuple[float, float] | None, qualified: bool = False) -> None:
    """The account's registered location, by a signed request of `admin` (PUT /v1/accounts/{id}/profile)."""
    path = f"/v1/accounts/{account}/profile"
    raw = json.dumps({"location": None if location is None else {"lat": location[0], "lon": location[1]}, "qualified": qualified}).encode()
    separator = P.domain_separator(admin.domain["chainId"], admin.domain["verifyingContract"])
    headers = sign_headers(admin.key, separator, "PUT", path, raw, host=host_of(admin.client.base_url))
    response = admin.client.put(path, content=raw, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def make_world(api: ApiServer) -> World:
    client = api.client
    domain = client.get("/v1/domain").json()["domain"]
    city = Admin(CITY_KEY, client, domain)
    admin = Admin(secrets.token_bytes(32), client, domain)
    other_admin = Admin(secrets.token_bytes(32), client, domain)
    city.ok("RegisterDistrict", district=DISTRICT, admin=admin.address)
    city.ok("RegisterDistrict", district=OTHER_DISTRICT, admin=other_admin.address)
    terminal = Terminal(secrets.token_bytes(32), client, domain, DISTRICT)
    other_terminal = Terminal(secrets.token_bytes(32), client, domain, OTHER_DISTRICT)
    admin.ok("RegisterStation", station=terminal.address, district=DISTRICT)
    other_admin.ok("RegisterStation", station=other_terminal.address, district=OTHER_DISTRICT)
    world = World(domain, city, admin, other_admin, terminal, other_terminal, "", "", "", "", "")
    world.volunteer = world.new_account(1)
    world.volunteer2 = world.new_account(1)
    world.elder = world.new_account(2, grant=6000)
    world.elder2 = world.new_account(2, grant=6000)
    world.recipient_far = world.new_account(2, grant=600)
    return world
