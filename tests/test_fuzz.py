"""Schemathesis fuzzing of the API from its own OpenAPI document (`GET /openapi.json`), against the
session's in-process service (`api`, a real chain and database): every operation, with data that fits its
schema (positive) and data that does not (negative). No answer may be a 5xx, none may take longer than
`TIMEOUT` seconds, and every refusal must be the catalogue's `{"error": {"code", "message"}}`.

The run is bounded: `TIMEBANK_FUZZ_EXAMPLES` (default 15) cases per operation and mode (`DEEPER` times as
many for POST /v1/orders), derandomized so a CI run is repeatable; `TIMEBANK_FUZZ_SEED=<int>` draws other
cases (a longer hunt: `TIMEBANK_FUZZ_EXAMPLES=200 TIMEBANK_FUZZ_SEED=$RANDOM pytest tests/test_fuzz.py -s`).
It prints how many cases ran per operation, and the answers the order endpoints gave.

What the document does not give the fuzzer, the test adds to its copy of it:
- every request is signed as the city administrator would sign it (README, "Signed requests"), so the
  signed endpoints are fuzzed past their authentication;
- `MISSING_BODIES`: the operations that parse their raw body declare none (the test prints which);
- the order endpoints' bodies are `{order: object, ...}` in the document; here they get the ServiceOrder's
  fields, leaning towards this run's own station, accounts and district, and each positive case is signed
  by that station with its details' true hash, so that the checks behind the signature are reached;
- `$defs` that a body schema carries inside it are moved to `components` (the served document's `$ref`s
  to them dangle: `test_openapi_document_refs_resolve`)."""

from __future__ import annotations

import copy
import os
import secrets
import time
import zlib
from collections import Counter
from urllib.parse import unquote, urlsplit

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api import protocol as P
from api.auth import host_of, sign_headers
from api.errors import CATALOGUE
from tests.utils.api import CITY_KEY
from tests.utils.api_world import DISTRICT

EXAMPLES = int(os.environ.get("TIMEBANK_FUZZ_EXAMPLES", "15"))
DEEPER = {"/v1/orders": 4}  # the order endpoints get this many times more cases
SEED = os.environ.get("TIMEBANK_FUZZ_SEED")
TIMEOUT = 10.0
MIN_CASES = 20 * EXAMPLES  # a run that makes fewer has stopped fuzzing something (it makes about 50 x EXAMPLES)

# Operations that take a body the document does not describe (the route reads the raw body itself),
# with the body they take, for the fuzzer.
MISSING_BODIES = {
    ("put", "/v1/accounts/{account_id}/profile"): {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "location": {
                        "anyOf": [
                            {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}, "required": ["lat", "lon"]},
                            {"type": "null"},
                        ]
                    },
                    "qualified": {"type": "boolean"},
                },
            }
        }
    },
    ("post", "/v1/audit/homecare"): {"text/csv": {"schema": {"type": "string"}}},
    ("post", "/v1/certificates/verify"): {"application/json": {"schema": {"type": "object"}}},
}


@schemathesis.serializer("audio/*")
def _raw_audio(_context, value) -> bytes:
    """The recording upload's raw body (PUT /v1/orders/{orderId}/recording): bytes as they are."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def _can_be_wrong(definition: dict) -> bool:
    """Whether an operation has an input whose schema some value breaks: a body, or a parameter with more
    than a bare string type (any text is a valid unconstrained string path parameter)."""
    if definition.get("requestBody"):
        return True
    for parameter in definition.get("parameters", []):
        constraints = {k for k in parameter.get("schema", {}) if k not in ("title", "description")}
        if constraints != {"type"} or parameter["schema"]["type"] != "string" or parameter.get("in") != "path":
            return True
    return False


class SignedAsCity(requests.auth.AuthBase):
    """Signs each prepared request as the city administrator: the service checks the signature over the
    percent-decoded path (tabs and line breaks dropped, as urlsplit drops them), the raw query string and
    the raw body."""

    def __init__(self, separator: bytes):
        self.separator = separator

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(request.url)
        path = unquote(parts.path).replace("\t", "").replace("\r", "").replace("\n", "")
        if parts.query:
            path += f"?{parts.query}"
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        request.headers.update(sign_headers(CITY_KEY, self.separator, request.method, path, body, host=host_of(request.url)))
        return request


def _dangling_refs(document: dict) -> list[str]:
    """`$ref`s of the document that point at nothing in it (JSON pointers from the document's root)."""
    dangling = []

    def resolve(ref: str) -> bool:
        node = document
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/") and not resolve(ref):
                dangling.append(f"{where}: {ref}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(document, "#")
    return dangling


def _served_document(api) -> tuple[dict, list[str]]:
    """The service's OpenAPI document with `MISSING_BODIES` filled in (and a body schema's own `$defs`
    moved where its `$ref`s can reach them), and the operations whose body was filled in."""
    response = api.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = copy.deepcopy(response.json())
    components = document.setdefault("components", {}).setdefault("schemas", {})

    def hoist(node) -> None:  # "#/$defs/X" inside a body schema: X is put in components, the ref pointed there
        if isinstance(node, dict):
            for name, definition in node.pop("$defs", {}).items():
                components.setdefault(name, definition)
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
                node["$ref"] = "#/components/schemas/" + node["$ref"].removeprefix("#/$defs/")
            for value in node.values():
                hoist(value)
        elif isinstance(node, list):
            for value in node:
                hoist(value)

    hoist(document["paths"])
    filled = []
    for (method, path), content in MISSING_BODIES.items():
        operation = document["paths"][path][method]
        if "requestBody" not in operation:
            operation["requestBody"] = {"required": True, "content": content}
            filled.append(f"{method.upper()} {path}")
    return document, filled


def _hex(nbytes: int) -> dict:
    return {"type": "string", "pattern": f"^0x[0-9a-f]{{{2 * nbytes}}}$"}


def _uint(bits: int) -> dict:
    return {"type": "integer", "minimum": 0, "maximum": 2**bits - 1}


def _order_body_schema(volunteers: list[str], payers: list[str], district: int) -> dict:
    """`{order, signature, details}` as PROTOCOL.md section 3 has it, leaning towards what this service
    would accept (the fuzz run's own accounts and district, recent times, short services), so that the
    positive cases, signed by the fuzz run's station, reach the checks behind the signature."""
    now = int(time.time())

    point = {
        "type": "object",
        "properties": {
            "lat": {"type": "number", "minimum": 31.9, "maximum": 32.2},
            "lon": {"type": "number", "minimum": 118.6, "maximum": 118.9},
            "time": {"type": "integer", "minimum": now - 40 * 86400, "maximum": now + 600},
        },
        "required": ["lat", "lon", "time"],
    }
    order = {
        "type": "object",
        "properties": {
            "orderId": _hex(32),
            "district": {"enum": [district, district + 2]},
            "volunteer": {"enum": volunteers},
            "payer": {"enum": payers},
            "recipient": {"enum": payers},
            "serviceType": {"enum": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100]},
            "startTime": {"type": "integer", "minimum": now - 31 * 86400, "maximum": now},
            "endTime": {"type": "integer", "minimum": now - 31 * 86400, "maximum": now + 900},
            "minutes": {"type": "integer", "minimum": 0, "maximum": 800},
            "detailsHash": _hex(32),
        },
        "required": ["orderId", "district", "volunteer", "payer", "recipient", "serviceType", "startTime", "endTime",
                     "minutes", "detailsHash"],
        "additionalProperties": False,
    }
    details = {
        "type": "object",
        "properties": {
            "checkIn": point,
            "checkOut": point,
            "confirmation": {"type": "object", "properties": {"method": {"enum": ["voice", "card", "signature"]},
                                                              "time": {"type": "integer", "minimum": 0}}, "required": ["method"]},
            "rating": {"type": "object", "properties": {"byRecipient": {"type": "integer", "minimum": 1, "maximum": 5}},
                       "additionalProperties": False},
            "notes": {"type": "string"},
        },
        "required": ["checkIn", "checkOut", "confirmation"],
    }
    return {"type": "object", "properties": {"order": order, "signature": _hex(65), "details": details},
            "required": ["order", "signature", "details"]}


def _sign_order_item(item, separator: bytes, key: bytes) -> None:
    """Makes a generated order item's detailsHash and signature right (the station's), where its fields
    allow it: the fuzzer cannot sign, and without this every positive order stops at `station_unknown`."""
    if not isinstance(item, dict) or not isinstance(item.get("order"), dict):
        return
    order = item["order"]
    for field, value in order.items():  # JSON Schema's "integer" takes 3.0; the protocol does not
        if isinstance(value, float) and value.is_integer():
            order[field] = int(value)
    details = item.get("details")
    for part in ("checkIn", "checkOut", "confirmation"):
        point = details.get(part) if isinstance(details, dict) else None
        if isinstance(point, dict) and isinstance(point.get("time"), float) and point["time"].is_integer():
            point["time"] = int(point["time"])
    start, end, minutes = order.get("startTime"), order.get("endTime"), order.get("minutes")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, minutes)) and not 0 <= end - start <= 13 * 3600:
        order["startTime"] = max(0, end - minutes * 60 - 30)  # a service about as long as its minutes
    try:
        order["detailsHash"] = P.to_hex(P.details_hash(item.get("details")))
    except P.ProtocolError:
        pass
    try:
        item["signature"] = P.to_hex(P.sign(P.ServiceOrder.from_json(order).digest(separator), key))
    except P.ProtocolError:
        pass


def test_fuzz_the_api_from_its_openapi_document(api, world, capsys):
    document, filled = _served_document(api)
    # the fuzz run's own station and accounts, which the order schema leans towards
    station_key = secrets.token_bytes(32)
    world.admin.ok("RegisterStation", station=P.to_hex(P.address_of(station_key)), district=DISTRICT)
    # volunteers: a volunteer, a group, a recipient (no volunteer); payers: rich, poor, a volunteer
    volunteers = [world.new_account(1), world.new_account(3), world.new_account(2)]
    payers = [world.new_account(2, grant=100_000), world.new_account(2, grant=30), volunteers[0]]
    order_schema = _order_body_schema(volunteers, payers, DISTRICT)
    document["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"] = order_schema
    document["paths"]["/v1/orders/bulk"]["post"]["requestBody"]["content"]["application/json"]["schema"] = {
        "type": "object", "properties": {"items": {"type": "array", "items": order_schema, "maxItems": 3}}, "required": ["items"]}
    schema = schemathesis.openapi.from_dict(document)
    typed = api.client.get("/v1/domain").json()["domain"]
    separator = P.domain_separator(typed["chainId"], typed["verifyingContract"])
    session = requests.Session()
    session.auth = SignedAsCity(separator)

    counts: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    unsatisfiable: list[str] = []
    order_answers: list[tuple[str, int, str | None]] = []
    seconds: Counter[str] = Counter()
    slowest = (0.0, "")
    started = time.monotonic()

    def run(operation, mode: GenerationMode) -> None:
        nonlocal slowest
        label = f"{operation.method.upper()} {operation.path}"
        if mode is GenerationMode.NEGATIVE and not _can_be_wrong(operation.definition.raw):
            return  # no input that could break its schema: nothing negative to make
        strategy = operation.as_strategy(generation_mode=mode)

        @settings(
            max_examples=EXAMPLES * DEEPER.get(operation.path, 1),
            deadline=None,
            database=None,
            derandomize=SEED is None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case) -> None:
            nonlocal slowest
            counts[label] += 1
            if mode is GenerationMode.POSITIVE and operation.path == "/v1/orders":
                _sign_order_item(case.body, separator, station_key)
            elif mode is GenerationMode.POSITIVE and operation.path == "/v1/orders/bulk" and isinstance(case.body, dict):
                for item in case.body.get("items") or []:
                    _sign_order_item(item, separator, station_key)
            began = time.monotonic()
            try:
                response = case.call(base_url=api.url, session=session, timeout=TIMEOUT)
            except requests.Timeout:
                failures.append(f"{label}: no answer within {TIMEOUT}s\n    {case.as_curl_command()}")
                return
            except requests.RequestException as exc:
                failures.append(f"{label}: {type(exc).__name__}: {exc}\n    {case.as_curl_command()}")
                return
            took = time.monotonic() - began
            if took > slowest[0]:
                slowest = (took, label)
            statuses[response.status_code] += 1
            if operation.path in ("/v1/orders", "/v1/orders/bulk") and response.status_code < 500:
                try:
                    body = response.json()
                    items = body.get("results") if operation.path.endswith("bulk") else [dict(body, httpStatus=response.status_code)]
                    for r in items or [dict(body, httpStatus=response.status_code)]:
                        order_answers.append((mode.value, r.get("httpStatus"), (r.get("error") or {}).get("code")))
                except Exception:  # noqa: BLE001 - checked below
                    pass
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}\n    {case.as_curl_command()}")
            elif response.status_code >= 400:
                try:
                    body = response.json()
                    code = body["error"]["code"]
                    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
                    assert code in CATALOGUE and CATALOGUE[code][0] == response.status_code, code
                except Exception:  # noqa: BLE001
                    failures.append(f"{label}: {response.status_code} is not a catalogue error: {response.text[:200]}\n"
                                    f"    {case.as_curl_command()}")

        if SEED is not None:
            fuzz = seed(int(SEED) + zlib.crc32(f"{label} {mode.value}".encode()))(fuzz)
        began = time.monotonic()
        try:
            fuzz()
        except Unsatisfiable:
            unsatisfiable.append(f"{label} [{mode.value}]")
        except Exception as exc:  # noqa: BLE001 - a strategy that cannot make data for this operation
            failures.append(f"{label} [{mode.value}]: the fuzzer failed: {type(exc).__name__}: {str(exc)[:300]}")
        seconds[label] += time.monotonic() - began

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode)

    took = time.monotonic() - started
    total = sum(counts.values())
    orders = Counter()
    for (kind, answer, code) in order_answers:
        orders[f"{kind} {answer} {code}" if code else f"{kind} {answer}"] += 1
    with capsys.disabled():  # the counts are shown in every run, not only with -s
        print(f"\nthe OpenAPI document declares no request body for: {', '.join(filled) or 'none'}")
        print(f"fuzzed {len(operations)} operations: {total} cases in {took:.1f}s "
              f"(slowest answer {slowest[0]:.2f}s, {slowest[1]}); statuses {dict(sorted(statuses.items()))}")
        for label, n in sorted(counts.items()):
            print(f"  {n:4d} {seconds[label]:5.1f}s  {label}")
        print(f"order answers: {dict(orders.most_common())}")
        if unsatisfiable:
            print(f"no data could be made for: {', '.join(unsatisfiable)}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    assert len(operations) >= 27, [f"{o.method} {o.path}" for o in operations]
    assert total >= MIN_CASES, f"only {total} cases ran"


def test_openapi_document_refs_resolve(api):
    """Every `$ref` of the served document points at something in it. The request bodies of POST /v1/people
    and PATCH /v1/people/{card_number} embed pydantic's schema with its own `$defs`, so their
    `"$ref": "#/$defs/Location"` resolves against the document's root, which has no `$defs`: code
    generators and validators (Schemathesis among them) cannot read those bodies."""
    document = api.client.get("/openapi.json").json()
    assert _dangling_refs(document) == []
