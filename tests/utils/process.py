"""The service as a separate process (`python -m api`), for tests that kill it: started with `TIMEBANK_*`
environment variables, ready once `GET /v1/health` answers, killed with SIGKILL or stopped with SIGTERM.
Its output goes to a log file whose tail failure messages quote. `RpcProxy` stands between a service and
its node and loses chosen requests on the wire."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from scripts.chain import free_port

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """One `python -m api` process over a database file; `start` may be called again after it exited
    (a restart: same database, same port, possibly other environment)."""

    def __init__(self, rpc_url: str, contract: str, workdir: Path, name: str = "service", **env: Any):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"{name}.log"
        self.base_env = {
            "TIMEBANK_RPC_URL": rpc_url,
            "TIMEBANK_CONTRACT_ADDRESS": contract,
            "TIMEBANK_DATABASE_URL": f"sqlite:///{self.workdir / (name + '.sqlite3')}",
            "TIMEBANK_PORT": str(self.port),
            "TIMEBANK_HOST": "127.0.0.1",
            # no deployment record of another chain may leak in: the follower starts at block 0
            "TIMEBANK_DEPLOYMENTS_DIR": str(self.workdir / "deployments"),
            "TIMEBANK_BATCH_MAX_WAIT_SECONDS": "0.3",
            "TIMEBANK_POLL_INTERVAL_SECONDS": "0.05",
            "TIMEBANK_TX_TIMEOUT_SECONDS": "30",
        }
        self.base_env.update({k: str(v) for k, v in env.items()})
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.starts = 0

    # ----- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 60, **env: Any) -> ServiceProcess:
        """Starts the process (with `env` on top of the base environment) and waits until it answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
        environment.update(self.base_env)
        environment.update({k: str(v) for k, v in env.items()})
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} env {env}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"],
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                if self.client.get("/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not answer /v1/health within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_exit(self, timeout: float = 20) -> int:
        """Waits for the process to exit on its own (a fault injection point); returns its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the service."""
        if self.running():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds."""
        if self.running():
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(8)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.kill()
        self.client.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ----- reads ----------------------------------------------------------------------------------

    def health(self) -> dict:
        return self.client.get("/v1/health").json()

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
