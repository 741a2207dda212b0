"""The service on several processes (`TIMEBANK_WORKERS` ≥ 2, api/workers.py): the supervisor, the writer
process and the intake workers, each SIGKILLed under a steady load of orders.

Every order is sent until it gets an answer; what was unanswered when its process died (a transport error
or `503 writer_unavailable`) is sent again once the service serves again, and must then be `201` or `200`
(stored before the kill, never half). Afterwards every acknowledged order is anchored exactly once on the
chain, the balances are what the orders make them and sampled proofs verify (`assert_exactly_once` of
tests/test_faults.py). The repeats and conflicts the writer alone decides are checked across workers too.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.test_faults import anchored_on_chain, assert_exactly_once, chain_and_service, wait_until  # noqa: F401
from tests.utils.api_world import make_world
from tests.utils.process import ServiceProcess


def children(proc: ServiceProcess) -> dict[str, list[int]]:
    """The supervisor's children by role: {"writer": [pid], "worker": [pid, ...]}."""
    found: dict[str, list[int]] = {"writer": [], "worker": []}
    listed = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in map(int, listed):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--role" in argv:
            found[argv[argv.index(b"--role") + 1].decode()].append(pid)
    return found


def serving(proc: ServiceProcess) -> bool:
    try:
        return proc.client.get("/v1/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("victim", ["worker", "writer", "supervisor"])
def test_a_process_killed_under_load_loses_nothing_acknowledged(chain_and_service, victim):
    chain, service = chain_and_service
    proc = service(f"kill-{victim}", TIMEBANK_WORKERS=2, TIMEBANK_BATCH_MAX_ORDERS=32).start(timeout=90)
    roles = children(proc)
    assert len(roles["writer"]) == 1 and len(roles["worker"]) == 2, roles
    w = make_world(SimpleNamespace(client=proc.client))
    volunteers = [w.new_account(1) for _ in range(8)]
    elder = w.new_account(2, grant=1_000_000)
    opening = {elder: 1_000_000, **{v: 0 for v in volunteers}}
    batches_before = chain.batch_count()

    lock = threading.Lock()
    bodies: dict[str, dict] = {}
    answered: dict[str, int] = {}
    unanswered: list[str] = []
    unexpected: list[tuple[int, str]] = []
    stop = threading.Event()

    def poster(n: int) -> None:
        with httpx.Client(base_url=proc.url, timeout=15) as client:
            i = 0
            while not stop.is_set():
                body = w.terminal.order(volunteers[(n + 4 * i) % len(volunteers)], elder, elder, minutes=3)
                i += 1
                order_id = body["order"]["orderId"]
                with lock:
                    bodies[order_id] = body
                try:
                    response = client.post("/v1/orders", json=body)
                except httpx.TransportError:
                    with lock:
                        unanswered.append(order_id)
                    time.sleep(0.05)
                    continue
                with lock:
                    if response.status_code == 201:
                        answered[order_id] = 201
                    elif response.status_code == 503 and response.json()["error"]["code"] == "writer_unavailable":
                        unanswered.append(order_id)
                    else:
                        unexpected.append((response.status_code, response.text[:200]))
                if response.status_code != 201:
                    time.sleep(0.05)

    threads = [threading.Thread(target=poster, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        before = len(answered)
        if victim == "supervisor":
            pids = [pid for ps in children(proc).values() for pid in ps]
            proc.kill()
            wait_until(lambda: not any(Path(f"/proc/{p}").exists() and b"(python" in Path(f"/proc/{p}/stat").read_bytes()
                                       and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z" for p in pids),
                       10, "the supervisor's children to die with it", proc)
            time.sleep(0.5)
            proc.start(timeout=90)
        else:
            pid = children(proc)[victim][0]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: pid not in children(proc)[victim] and len(children(proc)[victim]) == (1 if victim == "writer" else 2),
                       20, f"the supervisor to start the {victim} again", proc)
            wait_until(lambda: serving(proc), 60, "the service to serve again", proc)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    assert not unexpected, unexpected[:3]
    assert len(answered) > before, "no order was accepted after the kill"
    # what had no answer is sent again: stored before the kill (200) or not at all (201), never half
    again = {}
    for order_id in unanswered:
        response = proc.client.post("/v1/orders", json=bodies[order_id])
        again[order_id] = response.status_code
        assert response.status_code in (200, 201), response.text
        answered[order_id] = response.status_code
    print(f"{victim} killed: {len(answered)} orders acknowledged, {len(unanswered)} sent again "
          f"({sum(1 for s in again.values() if s == 200)} had been stored)")
    # the same order again answers 200 whichever worker takes it; other content under its id 409
    some = next(iter(answered))
    assert proc.client.post("/v1/orders", json=bodies[some]).status_code == 200
    views = wait_until(lambda: anchored_on_chain(chain, proc, list(answered)), 90, "every order anchored", proc, interval=0.3)
    assert_exactly_once(chain, proc, views, batches_before, opening, verify=10)


def test_repeats_conflicts_and_every_route_through_the_workers(chain_and_service):
    chain, service = chain_and_service
    proc = service("workers", TIMEBANK_WORKERS=3).start(timeout=90)
    assert len(children(proc)["worker"]) == 3
    w = make_world(SimpleNamespace(client=proc.client))
    volunteer, elder = w.new_account(1), w.new_account(2, grant=10_000)
    body = w.terminal.order(volunteer, elder, elder, minutes=30)
    # each request on a connection of its own: the kernel spreads them over the workers
    statuses = []
    for _ in range(6):
        with httpx.Client(base_url=proc.url, timeout=15) as client:
            statuses.append(client.post("/v1/orders", json=body).status_code)
    assert statuses == [201] + [200] * 5
    other = dict(body, details=dict(body["details"], notes="other"))
    response = proc.client.post("/v1/orders", json=other)
    assert response.status_code in (409, 422), response.text  # another detailsHash: refused before or by the writer
    forged = w.terminal.order(volunteer, elder, elder, minutes=31, orderId=body["order"]["orderId"])
    response = proc.client.post("/v1/orders", json=forged)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "order_id_conflict")
    # bulk: refusals of the worker's checks and the writer's, in order
    items = [w.terminal.order(volunteer, elder, elder, minutes=5) for _ in range(3)]
    items.insert(1, {"order": {}, "signature": "0x", "details": {}})
    results = proc.client.post("/v1/orders/bulk", json={"items": items + [body]}).json()["results"]
    assert [r["httpStatus"] for r in results] == [201, 400, 201, 201, 200]
    # the routes the writer process serves, through a worker: reads, a signed command's refusal, the docs
    assert proc.client.get("/v1/domain").json()["domain"]["verifyingContract"].lower() == chain.contract.address.lower()
    assert proc.client.get("/openapi.json").status_code == 200
    assert proc.client.get("/v1/errors").status_code == 200
    assert proc.client.post("/v1/admin/commands", content=b"{").json()["error"]["code"] == "invalid_request"
    assert proc.client.get("/v1/orders/0x12").json()["error"]["code"] in ("wrong_length", "malformed_hex")
    view = proc.wait_final([body["order"]["orderId"]])[body["order"]["orderId"]]
    assert view["status"] == "anchored"
    assert proc.client.get(f"/v1/orders/{body['order']['orderId']}/proof").json()["batch"]["id"] == view["batchId"]


def test_no_request_is_answered_503_while_the_service_starts(chain_and_service):
    """The workers take requests only once the writer process listens: a terminal that reached the port
    while the service was starting waits for its answer rather than getting `503 writer_unavailable`
    (a station's browser outbox of that time took a 503 for a refusal: CI of stop 16)."""
    _chain, service = chain_and_service
    proc = service("starting", TIMEBANK_WORKERS=2).start(timeout=90)
    proc.stop()
    answers: list[int] = []
    started = threading.Event()

    def probe() -> None:
        while not started.is_set():
            try:
                with httpx.Client(base_url=proc.url, timeout=30) as client:
                    answers.append(client.get("/v1/health").status_code)
            except httpx.TransportError:
                time.sleep(0.005)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        proc.start(timeout=90)
        for _ in range(20):
            proc.client.get("/v1/health")
    finally:
        started.set()
        prober.join(35)
    assert answers and set(answers) == {200}, f"answers while starting: {sorted(set(answers))}\n{proc.log_tail()}"
