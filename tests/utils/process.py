"""The service as a separate process for tests that kill it (`scripts/service_process.py`, with the
tests' short intervals and what they wait for). `RpcProxy` stands between a service and its node and
loses chosen requests on the wire."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from scripts import service_process

# short intervals: the tests wait for anchoring
TEST_ENV = {
    "TIMEBANK_BATCH_MAX_WAIT_SECONDS": "0.3",
    "TIMEBANK_POLL_INTERVAL_SECONDS": "0.05",
    "TIMEBANK_TX_TIMEOUT_SECONDS": "30",
}


class ServiceProcess(service_process.ServiceProcess):
    """The shared service process (scripts/service_process.py) with the tests' short intervals, and what
    the tests wait for."""

    def __init__(self, rpc_url: str, contract: str, workdir: Path, name: str = "service", **env: Any):
        super().__init__(rpc_url, contract, workdir, name, **{**TEST_ENV, **env})

    def order(self, order_id: str) -> httpx.Response:
        return self.client.get(f"/v1/orders/{order_id}")

    def wait_final(self, order_ids, timeout: float = 30, final=("anchored", "rejected", "revoked")) -> dict[str, dict]:
        """Waits until every order is in a final state; returns their views. Fails with the laggards."""
        pending = set(order_ids)
        views: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for order_id in list(pending):
                response = self.order(order_id)
                if response.status_code == 200 and response.json()["status"] in final:
                    views[order_id] = response.json()
                    pending.discard(order_id)
            if not pending:
                break
            if time.monotonic() > deadline:
                sample = {o: self.order(o).json() for o in list(pending)[:3]}
                raise AssertionError(
                    f"{len(pending)} orders not final after {timeout}s on {self.name}, e.g. "
                    f"{ {o: (v.get('status'), v.get('reason')) for o, v in sample.items()} }; "
                    f"health {self.health()}\n{self.log_tail()}"
                )
            time.sleep(0.1)
        return views

    def wait_followed(self, block: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.health()["followedBlock"] < block:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not follow block {block}: {self.health()}\n{self.log_tail()}")
            time.sleep(0.05)


class RpcProxy:
    """A JSON-RPC pass-through to `upstream` that can lose requests in transit: `drop_next(method)` makes
    the next request of that method close the connection unanswered (after the node got it when
    `deliver` is true, before it otherwise), as a network failure would."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.plan: dict[str, list[bool]] = {}
        self.dropped: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    method = json.loads(body).get("method")
                except (ValueError, AttributeError):
                    method = None
                plan = proxy.plan.get(method)
                deliver = None
                if plan:
                    deliver = plan.pop(0)
                    proxy.dropped.append(method)
                if deliver is False:
                    self._cut()
                    return
                request = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        answer, status = response.read(), response.status
                except OSError:
                    self._cut()
                    return
                if deliver is True:
                    self._cut()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _cut(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def drop_next(self, method: str, deliver: bool = False) -> None:
        self.plan.setdefault(method, []).append(deliver)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
