"""timebank-admin: an administrator's command-line tool. It signs administrative commands (PROTOCOL.md
section 4) and signed requests (README, "Signed requests") with a key kept in an encrypted keystore
(Web3 Secret Storage, eth_account), and sends them to the API.

    timebank-admin keystore new --out admin.json [--kdf scrypt|pbkdf2] [--work N]
    timebank-admin keystore import --out admin.json          # the private key from a prompt, or stdin
    timebank-admin keystore address --keystore admin.json    # no password needed
    timebank-admin command Grant account=NJ-320102-000123 minutes=600 reason=2 --keystore admin.json
    timebank-admin reissue-check-code --card NJ-320102-000123 --keystore admin.json   # a lost card
    timebank-admin register-person --card NJ-320102-000123 --district 320102 --kind recipient \\
        --name 王秀英 --id-number 320102193901010021 --lat 32.05 --lon 118.79 --category 80_alone
    timebank-admin grant-monthly --district 320102 --minutes 600 [--period 2026-11] [--dry-run]

The keystore's password comes from TIMEBANK_ADMIN_PASSWORD, or else from an interactive prompt. The
API is `--api` (default TIMEBANK_API_URL, else http://127.0.0.1:8000); the keystore is `--keystore`
(default TIMEBANK_ADMIN_KEYSTORE). The EIP-712 domain is fetched from GET /v1/domain, so a command
signed here is valid only for that chain and contract. A command's `nonce`, unless given, is a random
unused one (another is drawn when the contract has seen it).

In `command`, a bytes32 `account` given as a card number (not 0x hex) is its account id,
keccak256(utf8(cardNumber)). Exit status: 0 done; 1 refused or failed (the API's error code is printed);
2 bad command line, keystore or password.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
from eth_account import Account

from api import protocol
from api.auth import host_of, sign_headers
from api.people import CATEGORIES, GRANT_REASON_MONTHLY, PERSON_KINDS, QUALIFICATIONS

PASSWORD_ENV = "TIMEBANK_ADMIN_PASSWORD"
API_ENV = "TIMEBANK_API_URL"
KEYSTORE_ENV = "TIMEBANK_ADMIN_KEYSTORE"
DEFAULT_API = "http://127.0.0.1:8000"
EXIT_FAILED, EXIT_USAGE = 1, 2
KDF_MINIMUM = {"scrypt": 2**14, "pbkdf2": 100_000}  # scrypt's n, pbkdf2's iterations
NONCE_ATTEMPTS = 3


class AdminError(Exception):
    """A bad command line, keystore or password (exit 2)."""


class Refused(Exception):
    """The API refused a request: its status and error code (exit 1)."""

    def __init__(self, response: httpx.Response):
        try:
            error = response.json()["error"]
            self.code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            self.code, message = "http_error", response.text[:300]
        self.status = response.status_code
        super().__init__(f"{self.status} {self.code}: {message}")


# ----- keystores ----------------------------------------------------------------------------------


def read_password(*, confirm: bool = False, prompt: Callable[[str], str] | None = None) -> str:
    """The keystore's password: TIMEBANK_ADMIN_PASSWORD, or asked (twice when `confirm`)."""
    prompt = prompt or getpass.getpass
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = prompt("keystore password: ")
        if confirm and prompt("again: ") != password:
            raise AdminError("the passwords differ")
    if not password:
        raise AdminError("an empty password does not protect a key")
    return password


def write_keystore(out: Path, key: bytes, password: str, *, kdf: str = "scrypt", work: int | None = None) -> str:
    """Encrypts `key` into a new file `out` (mode 0600; an existing file is never overwritten); its address."""
    if work is not None and work < KDF_MINIMUM[kdf]:
        raise AdminError(f"--work: at least {KDF_MINIMUM[kdf]} for {kdf}")
    if os.path.lexists(out):
        raise AdminError(f"{out} exists; not overwritten")
    keystore = Account.encrypt(key, password, kdf=kdf, iterations=work)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AdminError(f"{out} exists; not overwritten") from None
    with os.fdopen(fd, "w") as f:
        json.dump(keystore, f)
    return protocol.to_hex(protocol.address_of(key))


def load_key(path: Path, password: str) -> bytes:
    """The private key of an encrypted keystore file."""
    try:
        keystore = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AdminError(f"{path}: not a readable keystore ({exc})") from None
    try:
        return bytes(Account.decrypt(keystore, password))
    except ValueError:
        raise AdminError(f"{path}: wrong password, or not a keystore") from None


def parse_private_key(text: str) -> bytes:
    digits = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise AdminError("the private key is not hex") from None
    if len(key) != 32 or not 0 < int.from_bytes(key, "big") < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141:
        raise AdminError("the private key is not a 32-byte secp256k1 key")
    return key


# ----- the API ------------------------------------------------------------------------------------


@dataclass
class AdminClient:
    """An administrator speaking to the API: signs commands and requests with `key`."""

    api: str
    key: bytes
    http: httpx.Client = field(default=None)  # type: ignore[assignment]
    _domain: dict | None = None

    def __post_init__(self) -> None:
        if self.http is None:
            self.http = httpx.Client(base_url=self.api, timeout=120)

    @property
    def address(self) -> str:
        return protocol.to_hex(protocol.address_of(self.key))

    @property
    def domain(self) -> dict:
        if self._domain is None:
            response = self.http.get("/v1/domain")
            if response.status_code != 200:
                raise Refused(response)
            self._domain = response.json()["domain"]
        return self._domain

    @property
    def separator(self) -> bytes:
        return protocol.domain_separator(self.domain["chainId"], self.domain["verifyingContract"])

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A signed request (`path` with its query string)."""
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = sign_headers(self.key, self.separator, method, path, raw, host=host_of(self.http.base_url))
        if raw:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, path, content=raw, headers=headers)

    def sign(self, kind: str, message: dict[str, Any]) -> str:
        """The EIP-712 signature of a command (PROTOCOL.md section 4), 0x hex."""
        return protocol.to_hex(protocol.sign(protocol.typed_digest(self.separator, kind, message), self.key))

    def post_command(self, kind: str, message: dict[str, Any]) -> httpx.Response:
        """Signs `message` as it is and posts it: the service's answer, whatever it is."""
        return self.http.post("/v1/admin/commands", json={"type": kind, "message": message, "signature": self.sign(kind, message)})

    def command(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        """Signs and relays a command; a random unused nonce unless `message` has one. Raises `Refused`."""
        fixed = "nonce" in message
        for _ in range(1 if fixed else NONCE_ATTEMPTS):
            full = dict(message) if fixed else {**message, "nonce": secrets.randbelow(2**53)}
            response = self.post_command(kind, full)
            if response.status_code == 200:
                return response.json()
            refused = Refused(response)
            if refused.code != "nonce_used":
                raise refused
        raise refused

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)


def command_message(kind: str, pairs: Sequence[str]) -> dict[str, Any]:
    """A command's message from `field=value` pairs, each typed by the struct (PROTOCOL.md section 4)."""
    if kind not in protocol.COMMAND_TYPES:
        raise AdminError(f"unknown command {kind!r}; one of {', '.join(protocol.COMMAND_TYPES)}")
    types = dict(protocol.TYPES[kind])
    message: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in types:
            raise AdminError(f"{pair!r}: expected field=value, field one of {', '.join(types)}")
        kind_of = types[name]
        if kind_of.startswith("uint"):
            try:
                message[name] = int(value, 0)
            except ValueError:
                raise AdminError(f"{name}: not an integer: {value!r}") from None
        elif kind_of == "bool":
            if value.lower() not in ("true", "false"):
                raise AdminError(f"{name}: expected true or false, got {value!r}")
            message[name] = value.lower() == "true"
        elif kind_of == "bytes32" and name in ("account", "payer", "beneficiary") and not value.startswith("0x"):
            message[name] = protocol.to_hex(protocol.account_id(value))
        else:
            message[name] = value.lower()
    missing = [n for n in types if n not in message and n != "nonce"]
    if missing:
        raise AdminError(f"{kind}: missing {', '.join(missing)}")
    try:
        protocol.parse_message(kind, {"nonce": 0, **message})
    except protocol.ProtocolError as exc:
        raise AdminError(exc.message) from None
    return message


def register_person(
    client: AdminClient,
    *,
    card: str,
    district: int,
    kind: int,
    name: str,
    id_number: str,
    phone: str | None = None,
    address: str | None = None,
    location: tuple[float, float] | None = None,
    category: str | None = None,
    qualifications: Sequence[str] = (),
) -> dict[str, Any]:
    """Posts the signed person record, then the RegisterAccount command (each skipped when already done,
    so running it again finishes a registration that stopped halfway)."""
    account = protocol.to_hex(protocol.account_id(card))
    record: dict[str, Any] = {"cardNumber": card, "district": district, "kind": kind, "name": name, "idNumber": id_number}
    for key, value in (("phone", phone), ("address", address), ("category", category)):
        if value is not None:
            record[key] = value
    if location is not None:
        record["location"] = {"lat": location[0], "lon": location[1]}
    if qualifications:
        record["qualifications"] = list(qualifications)
    response = client.request("POST", "/v1/people", record)
    check_code = None
    if response.status_code == 201:
        person = "registered"
        check_code = response.json().get("checkCode")
    elif response.status_code == 409 and Refused(response).code == "person_exists":
        person = "already registered"
    else:
        raise Refused(response)
    on_chain = client.get(f"/v1/accounts/{account}")
    if on_chain.status_code == 200:
        chain = "already registered"
    elif on_chain.status_code == 404:
        chain = client.command("RegisterAccount", {"account": account, "district": district, "kind": kind})["txHash"]
    else:
        raise Refused(on_chain)
    result = {"account": account, "person": person, "registerAccount": chain}
    if check_code is not None:  # answered once, at registration: print it on the card (re-issue when lost)
        result.update(checkCode=check_code, cardQr=card_qr(client.api, card, check_code))
    return result


def card_qr(api: str, card: str, check_code: str) -> str:
    """What the printed card's QR code holds (api/cards.py, card_qr_payload)."""
    return f"{api.rstrip('/')}/my#card={card}&code={check_code}"


def reissue_check_code(client: AdminClient, *, card: str) -> dict[str, Any]:
    """A new card check code for a lost card; the old one stops working."""
    response = client.request("POST", f"/v1/people/{card}/check-code")
    if response.status_code != 200:
        raise Refused(response)
    result = response.json()
    return {**result, "cardQr": card_qr(client.api, card, result["checkCode"])}


def grant_monthly(
    client: AdminClient, *, district: int, minutes: int, period: str | None = None, dry_run: bool = False, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Fetches the district's monthly plan and signs and sends one Grant (reason monthly) per person.
    Grants are recorded for the service's current period: a plan for another period is only shown."""
    path = f"/v1/grants/monthly?district={district}" + (f"&period={period}" if period else "")
    response = client.request("GET", path)
    if response.status_code != 200:
        raise Refused(response)
    plan = response.json()
    summary: dict[str, Any] = {"district": district, "period": plan["period"], "planned": len(plan["persons"]), "granted": [], "skipped": [], "failed": []}
    if plan["period"] != plan["currentPeriod"] and not dry_run:
        raise AdminError(f"grants are recorded for the current period {plan['currentPeriod']}, not {plan['period']}; use --dry-run to see that plan")
    for person in plan["persons"]:
        line = f"{person['cardNumber']} {person['account']}"
        if dry_run:
            say(f"plan    {line} {person['category']}")
            continue
        try:
            answer = client.command("Grant", {"account": person["account"], "minutes": minutes, "reason": GRANT_REASON_MONTHLY})
        except Refused as refused:
            bucket = "skipped" if refused.code == "already_granted" else "failed"
            summary[bucket].append({"account": person["account"], "cardNumber": person["cardNumber"], "error": refused.code})
            say(f"{bucket:7} {line} {refused}")
            continue
        summary["granted"].append({"account": person["account"], "cardNumber": person["cardNumber"], "txHash": answer["txHash"]})
        say(f"granted {line} {minutes} min tx {answer['txHash']}")
    granted = len(summary["granted"])
    say(
        f"district {district}, period {plan['period']}: {len(plan['persons'])} eligible without a grant"
        + ("" if dry_run else f"; {granted} granted ({granted * minutes} minutes), {len(summary['skipped'])} skipped, {len(summary['failed'])} failed")
    )
    return summary


# ----- the command line ---------------------------------------------------------------------------


def _kind(value: str) -> int:
    names = {name: number for number, name in PERSON_KINDS.items()}
    if value in names:
        return names[value]
    if value.isdigit() and int(value) in PERSON_KINDS:
        return int(value)
    raise argparse.ArgumentTypeError(f"one of {', '.join(names)} (or 1, 2, 3)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timebank-admin", description="Sign and send time-bank administrative commands.")
    sub = parser.add_subparsers(dest="action", required=True)

    keystore = sub.add_parser("keystore", help="create or import an encrypted keystore").add_subparsers(dest="keystore_action", required=True)
    for name, help_text in (("new", "a new random key"), ("import", "an existing private key (from a prompt, or stdin)")):
        p = keystore.add_parser(name, help=help_text)
        p.add_argument("--out", type=Path, required=True, help="the keystore file to create (never overwritten)")
        p.add_argument("--kdf", choices=("scrypt", "pbkdf2"), default="scrypt")
        p.add_argument("--work", type=int, help="scrypt's n or pbkdf2's iterations (default: eth_account's)")
    shown = keystore.add_parser("address", help="the keystore's address (no password needed)")
    shown.add_argument("--keystore", type=Path, default=os.environ.get(KEYSTORE_ENV), required=KEYSTORE_ENV not in os.environ)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--keystore", type=Path, default=os.environ.get(KEYSTORE_ENV), required=KEYSTORE_ENV not in os.environ)
    common.add_argument("--api", default=os.environ.get(API_ENV, DEFAULT_API), help="the API's base URL")
    common.add_argument("--json", action="store_true", help="print the result as JSON")

    command = sub.add_parser("command", parents=[common], help="sign and relay one command")
    command.add_argument("type", choices=protocol.COMMAND_TYPES)
    command.add_argument("fields", nargs="*", metavar="field=value")

    person = sub.add_parser("register-person", parents=[common], help="the signed person record and RegisterAccount")
    person.add_argument("--card", required=True)
    person.add_argument("--district", type=int, required=True)
    person.add_argument("--kind", type=_kind, required=True, help="volunteer, recipient or group")
    person.add_argument("--name", required=True)
    person.add_argument("--id-number", required=True)
    person.add_argument("--phone")
    person.add_argument("--address")
    person.add_argument("--lat", type=float)
    person.add_argument("--lon", type=float)
    person.add_argument("--category", choices=CATEGORIES)
    person.add_argument("--qualification", action="append", default=[], choices=QUALIFICATIONS)

    reissue = sub.add_parser("reissue-check-code", parents=[common], help="a new card check code for a lost card")
    reissue.add_argument("--card", required=True)

    grant = sub.add_parser("grant-monthly", parents=[common], help="one monthly Grant per eligible person of a district")
    grant.add_argument("--district", type=int, required=True)
    grant.add_argument("--minutes", type=int, required=True)
    grant.add_argument("--period", help="YYYY-MM (default: the current period)")
    grant.add_argument("--dry-run", action="store_true", help="show the plan, send nothing")
    return parser


def _keystore(args: argparse.Namespace) -> int:
    if args.keystore_action == "address":
        try:
            address = json.loads(Path(args.keystore).read_text())["address"]
        except (OSError, ValueError, KeyError) as exc:
            raise AdminError(f"{args.keystore}: not a keystore ({exc})") from None
        print(protocol.checksum(bytes.fromhex(address.removeprefix("0x"))))
        return 0
    if args.keystore_action == "new":
        key = secrets.token_bytes(32)
    else:
        text = getpass.getpass("private key (hex): ") if sys.stdin.isatty() else sys.stdin.readline()
        key = parse_private_key(text)
    password = read_password(confirm=True)
    address = write_keystore(args.out, key, password, kdf=args.kdf, work=args.work)
    print(f"{args.out}: {protocol.checksum(protocol.parse_address(address, 'address'))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "keystore":
            return _keystore(args)
        if args.action == "grant-monthly" and args.minutes <= 0:
            raise AdminError("--minutes: a positive number")
        if args.action == "register-person" and (args.lat is None) != (args.lon is None):
            raise AdminError("--lat and --lon go together")
        message = command_message(args.type, args.fields) if args.action == "command" else None
        client = AdminClient(args.api, load_key(args.keystore, read_password()))
        if args.action == "command":
            result = client.command(args.type, message)
            print(json.dumps(result) if args.json else f"{args.type} relayed: tx {result['txHash']} block {result['blockNumber']}")
        elif args.action == "register-person":
            result = register_person(
                client,
                card=args.card,
                district=args.district,
                kind=args.kind,
                name=args.name,
                id_number=args.id_number,
                phone=args.phone,
                address=args.address,
                location=None if args.lat is None else (args.lat, args.lon),
                category=args.category,
                qualifications=args.qualification,
            )
            print(json.dumps(result) if args.json else f"{result['account']}: person {result['person']}; account on chain: {result['registerAccount']}")
            if "checkCode" in result and not args.json:
                print(f"card check code (shown once; print it on the card): {result['checkCode']}\ncard QR: {result['cardQr']}")
        elif args.action == "reissue-check-code":
            result = reissue_check_code(client, card=args.card)
            print(json.dumps(result) if args.json else f"new card check code of {result['cardNumber']}: {result['checkCode']}\ncard QR: {result['cardQr']}")
        else:
            say = (lambda _line: None) if args.json else print
            result = grant_monthly(client, district=args.district, minutes=args.minutes, period=args.period, dry_run=args.dry_run, say=say)
            if args.json:
                print(json.dumps(result))
            return EXIT_FAILED if result["failed"] else 0
        return 0
    except AdminError as exc:
        print(f"timebank-admin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as exc:
        print(f"timebank-admin: refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except httpx.HTTPError as exc:
        print(f"timebank-admin: {args.api}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
