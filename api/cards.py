"""Card check codes (卡片校验码): the random code printed with a person's card number (in text and in the
card's QR code) that, with the number, opens the person's own hours to the family page.

Card numbers follow a guessable pattern (`NJ-320102-000123`), so a number alone opens nothing: the public
look-up (`POST /v1/people/lookup`) needs the number and its check code, answers a wrong code and an unknown
card alike (`404 not_found`), and counts failures per client address: after `LOOKUP_FAILURES_PER_MINUTE`
failures in a moving minute the client gets `429 too_many_requests` (with `Retry-After`) until the window
frees, a right code included.

A code is `CODE_LENGTH` characters of `ALPHABET` (no 0/O/1/I; 40 bits), issued at registration, answered
once to the registering administrator, re-issued on request (a lost card: the old code stops working), and
stored only as a slow hash: `scrypt$n$r$p$salt$hash` (scrypt, RFC 7914, with a random salt per person). A
look-up of an unknown card hashes against a dummy, so both answers take the same time. Codes are compared
ignoring case, spaces and dashes.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from . import db, names
from .accounts import account_view
from .errors import ApiError
from .people import account_of, administered_person, parse_card_number

if TYPE_CHECKING:
    from .auth import Caller
    from .service import Service

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: no 0/O, 1/I
CODE_LENGTH = 8
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**13, 8, 1  # 8 MiB and about 25 ms a hash on one free core
LOOKUP_FAILURES_PER_MINUTE = 5
WRONG = "card number or check code is wrong"


def new_check_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(value: Any) -> str | None:
    """The code as issued (upper case, no spaces or dashes), or None when it cannot be one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    code = value.upper().replace(" ", "").replace("-", "")
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def hash_check_code(code: str, salt: bytes | None = None, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(code.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


#: scrypt hashes at once, at most (each takes 8 MiB): look-ups from many clients queue here
#: instead of taking the service's memory.
_hashing = threading.BoundedSemaphore(4)


def check_code_matches(stored: str, code: str) -> bool:
    try:
        scheme, n, r, p, salt, _digest = stored.split("$")
        if scheme != "scrypt":
            return False
        with _hashing:
            again = hash_check_code(code, bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return secrets.compare_digest(again, stored)


_DUMMY = hash_check_code("2" * CODE_LENGTH)


def card_qr_payload(*, base_url: str, card_number: str, check_code: str) -> str:
    """What the printed card's QR code holds: the family page with the number and code in the URL's
    fragment, which browsers never send to a server (so never in an access log)."""
    return f"{base_url.rstrip('/')}/my#card={card_number}&code={check_code}"


def mask_name(name: str) -> str:
    """王秀英 → 王*英, 王英 → 王*: enough for a family to recognise the card, not a name to collect."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


# ----- the per-client limit on failed look-ups -------------------------------------------------------


class LookupLimiter:
    """Failed look-ups per client address in a moving window (the `limits` library, in memory: one
    service process; several processes behind a balancer would each count their own)."""

    def __init__(self, per_minute: int = LOOKUP_FAILURES_PER_MINUTE):
        self.item = parse_limit(f"{per_minute}/minute")
        self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)

    def check(self, client: str) -> None:
        if not self.limiter.test(self.item, client):
            reset = self.limiter.get_window_stats(self.item, client).reset_time
            wait = max(1, int(reset - time.time()) + 1)
            raise ApiError(
                "too_many_requests",
                f"too many failed look-ups from this client; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def failed(self, client: str) -> None:
        self.limiter.hit(self.item, client)

    def reset(self) -> None:
        self.storage.reset()


_limiters: dict[int, LookupLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_of(service: Service) -> LookupLimiter:
    with _limiters_lock:
        limiter = _limiters.get(id(service))
        if limiter is None:
            limiter = _limiters[id(service)] = LookupLimiter()
        return limiter


# ----- flows ----------------------------------------------------------------------------------------


def lookup(service: Service, body: Any, *, client: str) -> dict[str, Any]:
    """The person's own view by card number and check code: account, district (with its name), kind,
    status, masked name, and the account's hours as the chain holds them (zeros until it registers the
    account). One answer for a wrong code and an unknown card; failures are counted per client."""
    limiter = limiter_of(service)
    limiter.check(client)
    if not isinstance(body, dict) or set(body) != {"cardNumber", "checkCode"}:
        raise ApiError("invalid_request", "expected an object with cardNumber and checkCode")
    card_number = parse_card_number(body["cardNumber"])
    code = normalize_code(body["checkCode"])
    account = account_of(card_number)
    with service.reads() as session:
        person = session.get(db.Person, account)
        mirror = session.get(db.Account, account)
    stored = person.check_code_hash if person is not None and person.check_code_hash else None
    matches = check_code_matches(stored or _DUMMY, code or "2" * CODE_LENGTH)  # always one hash: same time
    if stored is None or code is None or not matches:
        limiter.failed(client)
        raise ApiError("not_found", WRONG)
    view: dict[str, Any] = {
        "cardNumber": person.card_number,
        "account": account,
        "district": person.district,
        "districtName": names.name_of(person.district),
        "kind": mirror.kind if mirror is not None else 0,
        "status": mirror.status if mirror is not None else 0,
        "name": mask_name(person.name),
        "balanceMinutes": 0,
        "earnedMinutes": 0,
        "starLevel": 0,
        "pendingDebitMinutes": 0,
    }
    if mirror is not None and mirror.status != 0:
        held = account_view(service, bytes.fromhex(account[2:]))
        view.update({k: held[k] for k in ("kind", "status", "balanceMinutes", "earnedMinutes", "starLevel", "pendingDebitMinutes")})
    return view


def holder(service: Service, *, account: str, card_number: str | None, check_code: str | None, client: str) -> db.Person | None:
    """The person of `account` when the caller gave its card number and check code (the certificate's
    holder: their name and card number go on it); None when neither was given. A wrong pair is refused
    as a look-up is (`not_found`, counted against the client's failures)."""
    if not card_number and not check_code:
        return None
    limiter = limiter_of(service)
    limiter.check(client)
    code = normalize_code(check_code)
    person = None
    try:
        if account_of(parse_card_number(card_number)) == account:
            with service.reads() as session:
                person = session.get(db.Person, account)
    except ApiError:
        person = None
    stored = person.check_code_hash if person is not None and person.check_code_hash else None
    matches = check_code_matches(stored or _DUMMY, code or "2" * CODE_LENGTH)
    if stored is None or code is None or not matches:
        limiter.failed(client)
        raise ApiError("not_found", WRONG)
    return person


def reissue(service: Service, caller: Caller, card_number: str) -> dict[str, Any]:
    """A new check code for a lost card (signed request of the administrator of the person's district, or
    the city's); the old code stops working. Answered once: only its hash is kept."""
    card_number = parse_card_number(card_number)
    code = new_check_code()
    with service.sessions() as session, session.begin():
        person = administered_person(session, caller, card_number)
        person.check_code_hash = hash_check_code(code)
        person.updated_at = time.time()
    return {"cardNumber": card_number, "checkCode": code}
