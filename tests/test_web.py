"""The pages (web/) against a real service and chain, in a real browser.

- the TypeScript client's unit tests (Vitest; they cross-check every hash and signature with api/protocol.py);
- the service serves the build at / (index.html for each page's route) and /docs with its own Swagger UI
  assets, nothing from a CDN, while API paths answer as before;
- the journeys (web/e2e/journeys.test.mjs, Node's test runner driving /usr/bin/chromium with
  playwright-core): a station signs and submits an order from the terminal page with a voice confirmation
  (a generated WAV file as the fake microphone) and a geolocation set by the test, it is anchored; the
  family page shows the new balance and history; the auditor page verifies the proof green and a tampered
  copy red at step 1; the console revokes the order and the auditor page shows it revoked at step 5; an
  order signed while the service is stopped is sent when it is back, once; axe-core finds no serious or
  critical violation on any page. Screenshots go to web/test-results/ (build output).
"""

from __future__ import annotations

import http.server
import json
import math
import re
import secrets
import struct
import subprocess
import threading
import wave
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from api import auth
from api import protocol as P
from scripts.chain import DEV_KEYS, free_port, start_anvil, stop_anvil
from scripts.compile import load_artifact
from scripts.deploy import deploy
from tests.utils.api import Admin
from tests.utils.process import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
DISTRICT = 320102
HOME = {"lat": 32.05, "lon": 118.79}
PIN = "246810"


def _build_web() -> None:
    """The pages as `make web` builds them (a no-op when the build is up to date)."""
    subprocess.run(["make", "--no-print-directory", "web"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def test_vitest_unit_tests_of_the_typescript_client():
    _build_web()
    run = subprocess.run(["npx", "vitest", "run", "--reporter=dot"], cwd=WEB, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]


# ----- a real service and chain -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _build_web()
    tmp = tmp_path_factory.mktemp("web")
    anvil = start_anvil(free_port(), tmp / "anvil", block_time=0)
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    city, relayer = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
    contract, _ = deploy(w3, load_artifact("TimeBank"), DEV_KEYS[0], city.address, relayer.address)
    service = ServiceProcess(anvil.url, contract, tmp / "service").start()
    try:
        yield {"anvil": anvil, "contract": contract, "service": service, "tmp": tmp}
    finally:
        service.close()
        stop_anvil(anvil)


def test_pages_and_docs_are_served_without_a_cdn(stack):
    client: httpx.Client = stack["service"].client
    for path in ("/", "/station", "/my", "/verify", "/console", "/my/anything"):
        page = client.get(path)
        assert page.status_code == 200 and '<div id="app">' in page.text, path
        assert "http://" not in page.text and "https://" not in page.text, path
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert client.get(asset).status_code == 200, asset
    # every script and stylesheet of the pages is the build's own
    index = client.get("/").text
    for ref in [part.split('"')[0] for part in index.split('src="')[1:] + index.split('href="')[1:]]:
        assert ref.startswith("/"), ref
        assert client.get(ref).status_code == 200, ref
    # and the stylesheets load nothing from elsewhere: Vant's icon font (the buttons' icons) is in the CSS itself
    styles = "".join(client.get(ref).text for ref in re.findall(r'href="(/[^"]+\.css)"', index))
    assert "font-family:vant-icon" in styles and "url(data:font/woff2" in styles
    assert not re.findall(r"url\(\s*['\"]?(?:https?:)?//", styles), "a stylesheet names another host"
    # the API answers as before: unknown API paths and methods, the OpenAPI document
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert client.post("/nothing", json={}).status_code == 404
    assert client.get("/assets/missing.js").status_code == 404
    assert client.get("/openapi.json").json()["info"]["title"]
    assert client.get("/../pyproject.toml").status_code in (200, 404) and "[project]" not in client.get("/../pyproject.toml").text


# ----- the journeys -------------------------------------------------------------------------------


def _wav(path: Path, seconds: float = 3.0, rate: int = 16000) -> None:
    """A spoken-length tone, the fake microphone's input (Chromium loops it)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * n / rate) * (1 if (n // 4000) % 2 else 0.3)) for n in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", f) for f in frames))


def _keystore(key: bytes, path: Path) -> Path:
    # a light scrypt (n = 4096) so that the browser unlocks it in a moment during the test
    path.write_text(json.dumps(Account.encrypt(key, PIN, kdf="scrypt", iterations=4096)))
    return path


def _register(client: httpx.Client, admin: Admin, separator: bytes, card: str, kind: int, **extra) -> dict:
    body = {"cardNumber": card, "district": DISTRICT, "kind": kind, "name": "王秀英" if kind == 2 else "李志强",
            "idNumber": "32010219390101002" + str(kind), **extra}
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = auth.sign_headers(admin.key, separator, "POST", "/v1/people", raw, host=auth.host_of(client.base_url))
    answer = client.post("/v1/people", content=raw, headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 201, answer.text
    admin.ok("RegisterAccount", account=P.to_hex(P.account_id(card)), district=DISTRICT, kind=kind)
    return answer.json()


class _Control(http.server.BaseHTTPRequestHandler):
    """POST /stop and /start: the journeys stop and restart the service (the offline terminal)."""

    service: ServiceProcess

    def do_POST(self):  # noqa: N802
        if self.path == "/stop":
            self.service.stop()
        elif self.path == "/start" and not self.service.running():
            self.service.start()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_browser_journeys(stack):
    assert CHROMIUM.exists(), "make test installs Debian's chromium"
    service: ServiceProcess = stack["service"]
    client = service.client
    tmp: Path = stack["tmp"]
    domain = client.get("/v1/domain").json()["domain"]
    separator = P.domain_separator(domain["chainId"], domain["verifyingContract"])

    city = Admin(bytes.fromhex(DEV_KEYS[0][2:]), client, domain)
    district_key, station_key = secrets.token_bytes(32), secrets.token_bytes(32)
    district = Admin(district_key, client, domain)
    city.ok("RegisterDistrict", district=DISTRICT, admin=district.address)
    district.ok("RegisterStation", station=P.to_hex(P.address_of(station_key)), district=DISTRICT)
    suffix = secrets.randbelow(10**6)
    volunteer, recipient = f"NJ-{DISTRICT}-V{suffix:06d}", f"NJ-{DISTRICT}-E{suffix:06d}"
    _register(client, district, separator, volunteer, 1)
    elder = _register(client, district, separator, recipient, 2, location=HOME, category="80_alone")
    district.ok("Grant", account=P.to_hex(P.account_id(recipient)), minutes=600, reason=2)

    control = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), type("Control", (_Control,), {"service": service}))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    results = WEB / "test-results"
    results.mkdir(exist_ok=True)
    _wav(tmp / "voice.wav")
    config = {
        "url": service.url,
        "rpcUrl": stack["anvil"].url,
        "contract": stack["contract"],
        "chainId": domain["chainId"],
        "pin": PIN,
        "stationKeystore": str(_keystore(station_key, tmp / "station.json")),
        "adminKeystore": str(_keystore(district_key, tmp / "admin.json")),
        "volunteer": volunteer,
        "volunteerAccount": P.to_hex(P.account_id(volunteer)),
        "recipient": recipient,
        "checkCode": elder.get("checkCode"),
        "home": HOME,
        "district": DISTRICT,
        "control": f"http://127.0.0.1:{control.server_port}",
        "audio": str(tmp / "voice.wav"),
        "screenshots": str(results),
    }
    (tmp / "e2e.json").write_text(json.dumps(config))
    try:
        run = subprocess.run(
            ["node", "--test", "--test-concurrency=1", "--test-reporter=spec", "e2e/"],
            cwd=WEB, env={**_env(), "TIMEBANK_E2E_CONFIG": str(tmp / "e2e.json")},
            capture_output=True, text=True, timeout=900,
        )
    finally:
        control.shutdown()
        if not service.running():
            service.start()
    print(run.stdout[-6000:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-4000:] + "\n--- service log\n" + service.log_tail()

    # the order signed while the service was stopped reached it exactly once, and is anchored
    offline = json.loads((results / "offline-order.json").read_text())
    view = client.get(f"/v1/orders/{offline['orderId']}").json()
    assert view["status"] in ("accepted", "anchored"), view
    assert offline["httpStatus"] == 201  # created by the first answered send; nothing sent it twice
    history = client.get(f"/v1/accounts/{P.to_hex(P.account_id(volunteer))}/history").json()
    assert sum(1 for o in history["orders"] if o["orderId"] == offline["orderId"]) == 1


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}


# ----- the TypeScript verifier on a real chain ----------------------------------------------------

from tests.test_verify_proof import scenario  # noqa: E402,F401  (the module's fixture: batches on Anvil)


def test_typescript_verifier_agrees_with_timebank_verify(scenario, tmp_path):  # noqa: F811
    from scripts.verify_proof import verify_bundle

    good = scenario.bundles["good"]
    contract = good["domain"]["verifyingContract"]

    def tampered(change) -> dict:
        bundle = json.loads(json.dumps(good))
        change(bundle)
        return bundle

    cases = {name: bundle for name, bundle in scenario.bundles.items()}
    cases["minutes changed"] = tampered(lambda b: b["order"].update(minutes=b["order"]["minutes"] + 1))
    cases["signature of another order"] = tampered(lambda b: b.update(signature=scenario.bundles["revoked"]["signature"]))
    cases["proof node flipped"] = tampered(lambda b: b["proof"].__setitem__(0, "0x" + "ab" * 32))
    cases["another batch"] = tampered(lambda b: b.update(batch=scenario.other_batch))
    cases["block hash changed"] = tampered(lambda b: b["batch"].update(blockHash="0x" + "00" * 32))
    cases["chain id changed"] = tampered(lambda b: b["domain"].update(chainId=1))
    cases["missing field"] = tampered(lambda b: b.pop("leaf"))
    listed = [{"name": name, "bundle": bundle} for name, bundle in cases.items()]
    listed.append({"name": "a look-alike contract pinned", "bundle": good, "contract": "0x" + "11" * 20})
    for case in listed:
        result = verify_bundle(case["bundle"], scenario.url, contract=case.get("contract", contract))
        case["failedStep"] = result.failed_step
        case["failedChecks"] = sum(not c.ok for c in result.checks)
    assert [c["failedStep"] for c in listed[:4]] == [None, 4, 4, 5]  # the reference's own outcomes
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"rpcUrl": scenario.url, "contract": contract, "cases": listed}))
    _build_web()
    run = subprocess.run(["npx", "vitest", "run", "src/lib/verify.chain.test.ts"], cwd=WEB, capture_output=True, text=True,
                         timeout=600, env={**_env(), "TIMEBANK_VERIFY_CASES": str(path)})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert f"{len(listed)} passed" in run.stdout, run.stdout[-3000:]
