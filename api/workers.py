"""The service on several processes (`TIMEBANK_WORKERS` ≥ 2, the default): both cores at work.

- The **supervisor** (`python -m api`) opens the listening socket, starts the writer process, then the
  intake workers sharing that socket, prints `serving on ...` once all of them are ready, and starts
  again any of them that exits. Its children die with it (`PR_SET_PDEATHSIG`): a SIGKILL of the
  supervisor takes the whole service down, as a restart of the one-process service would.
- The **writer process** holds what must be single: the order writer (idempotent repeats, `409`
  conflicts, the commit before the answer), the batcher, the follower, the transaction sender and every
  other route (the whole app of `api/app.py`, served on a Unix socket). It takes prepared orders on the
  order channel (`api/channel.py`).
- Each **intake worker** serves the public port: `POST /v1/orders` and `/v1/orders/bulk` (parsing, RFC
  8785, EIP-712, signature recovery here, the prepared orders to the writer over the channel), `GET
  /v1/orders/{id}` and its proof from the database directly; every other request is passed to the writer
  process as it came and its answer passed back.

A worker killed loses only the requests it had not answered (their orders are stored or not, never half;
sent again they answer 200 or 201). The writer killed: the workers answer `503 writer_unavailable` until
the supervisor has started it again; what it had acknowledged is durable.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from . import db, protocol
from .app import create_app, install_error_handlers
from .channel import ChannelClient, ChannelServer, WriterUnavailable
from .deps import lax_json_body, raw_body
from .errors import ApiError, localize, request_language
from .intake import Outcome, Prepared, _refusal, prepare, prepare_bulk
from .recordings import MAX_RECORDING_BYTES
from .routes import orders
from .serving import BodyLimit
from .service import Service
from .settings import Settings

log = logging.getLogger(__name__)

ORDERS_SOCKET = "orders.sock"  # the order channel
HTTP_SOCKET = "http.sock"  # the writer process's HTTP
DOMAIN_FILE = "domain.json"  # the chain id and contract, written by the writer before the channel opens
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"proxy-connection"}
PR_SET_PDEATHSIG = 1
FAULT_EXIT = 137  # api/batcher.py's fault injection


class _Server(uvicorn.Server):
    """A uvicorn server that calls `ready` once it listens."""

    def __init__(self, config: uvicorn.Config, ready):
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready()


def _quiet_collector() -> None:
    """What was loaded at start (modules, the ABI, the mirror's caches) moved out of the garbage
    collector's sight, and its young generation collected less often: its full passes over everything
    otherwise stop a process for tens of milliseconds under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


# ----- the writer process ---------------------------------------------------------------------------


def run_writer(settings: Settings, runtime: Path) -> None:
    service = Service(settings)
    service.start()
    domain = {"chainId": service.chain_id, "contract": service.contract_address}
    written = runtime / (DOMAIN_FILE + ".tmp")  # whole or absent: a worker reads it as soon as it exists
    written.write_text(json.dumps(domain))
    os.replace(written, runtime / DOMAIN_FILE)
    channel = ChannelServer(runtime / ORDERS_SOCKET, service.writer, domain)
    http_path = runtime / HTTP_SOCKET
    if http_path.exists():
        http_path.unlink()
    config = uvicorn.Config(
        create_app(settings, service), uds=str(http_path), loop="uvloop", http="httptools", log_level="warning",
        timeout_graceful_shutdown=5,
        # the workers' connections: the worker's side closes an idle one first (httpx: after 5 s), so a
        # request never goes out on a connection this side is closing
        timeout_keep_alive=600,
    )
    try:
        _quiet_collector()
        _Server(config, channel.start).run()  # the channel's socket appears once both listen
    finally:
        channel.stop()
        service.stop()


# ----- an intake worker -----------------------------------------------------------------------------


class Front:
    """What the orders router asks of the service, in an intake worker: orders go to the writer over the
    channel; an order and its proof are read from the database (the same code as the writer's)."""

    def __init__(self, settings: Settings, channel: ChannelClient, domain: dict[str, Any]):
        self.settings = settings
        self.channel = channel
        self.chain_id, self.contract_address = domain["chainId"], domain["contract"]
        self.separator = protocol.domain_separator(self.chain_id, self.contract_address)
        self.read_engine = db.make_engine(settings.database_url, writer=False)
        self.reads = db.session_factory(self.read_engine)

    async def submit_order(self, body: Any) -> Outcome:
        item = prepare(body, separator=self.separator, settings=self.settings)
        (outcome,) = await self.channel.submit([item])
        return outcome

    async def submit_bulk(self, body: Any) -> list[Outcome]:
        prepared = await run_in_threadpool(
            functools.partial(prepare_bulk, body, separator=self.separator, settings=self.settings)
        )
        stored = iter(await self.channel.submit([p for p in prepared if isinstance(p, Prepared)]))
        return [next(stored) if isinstance(p, Prepared) else _refusal(p) for p in prepared]

    order_view = Service.order_view
    proof_bundle = Service.proof_bundle
    anchored_order = Service.anchored_order

    def domain(self) -> dict[str, Any]:
        return protocol.domain(self.chain_id, self.contract_address)


def create_worker_app(settings: Settings, front: Front, writer_http: Path) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.service = front
    app.add_middleware(  # as the writer's app does (api/app.py); the routes passed on are limited there too
        BodyLimit, limit=lambda path: max(settings.max_body_bytes, MAX_RECORDING_BYTES) if path.endswith("/recording") else settings.max_body_bytes
    )
    install_error_handlers(app)

    async def post_order(request: Request) -> JSONResponse:
        """`POST /v1/orders` as `api/routes/orders.py` answers it (the same body limit, JSON parsing and
        localized answer), without FastAPI's dependency resolution: a third of a worker's time per order."""
        body = await lax_json_body(await raw_body(request))
        outcome = await front.submit_order(body)
        return JSONResponse(status_code=outcome.http_status, content=localize(outcome.body, request_language(request)))

    app.router.add_route("/v1/orders", post_order, methods=["POST"])  # before the router's own route: it wins
    app.include_router(orders.router)
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(writer_http)), base_url="http://writer", timeout=None
    )

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
    )
    async def forward(request: Request, path: str):
        """Any other request, passed to the writer process as it came (headers, body, raw path)."""
        target = request.scope.get("raw_path") or request.url.path.encode()
        if request.scope.get("query_string"):
            target += b"?" + request.scope["query_string"]
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in HOP_BY_HOP]
        body = request.stream() if request.method not in ("GET", "HEAD") else None
        outgoing = client.build_request(request.method, "http://writer" + target.decode("latin-1"), headers=headers, content=body)
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            log.warning("passing %s %s to the writer process failed: %r", request.method, request.url.path, exc)
            return JSONResponse(status_code=503, content=WriterUnavailable().body())
        kept = [(k, v) for k, v in answer.headers.raw if k.lower() not in HOP_BY_HOP]
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose))
        response.raw_headers = kept
        return response

    return app


def run_worker(settings: Settings, runtime: Path, fd: int, index: int) -> None:
    listener = socket.socket(fileno=fd)
    # started beside the writer: wait for its mirror to catch up and its sockets to listen (the orders'
    # channel appears once both do), so that no request that reached the port meanwhile is answered 503
    while not ((runtime / DOMAIN_FILE).exists() and (runtime / ORDERS_SOCKET).exists()):
        time.sleep(0.05)
    domain = json.loads((runtime / DOMAIN_FILE).read_text())
    front = Front(settings, ChannelClient(runtime / ORDERS_SOCKET), domain)
    app = create_worker_app(settings, front, runtime / HTTP_SOCKET)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    ready = runtime / f"worker-{index}.ready"
    _quiet_collector()
    _Server(config, ready.touch).run(sockets=[listener])


# ----- the supervisor -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child before exec: SIGKILL when the supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _listen(host: str, port: int, timeout: float = 15.0) -> socket.socket:
    """The public listening socket (the previous service's children may still be letting it go)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            break
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.workers = settings.workers
        self.runtime = Path(tempfile.mkdtemp(prefix="timebank-"))
        self.listener = _listen(settings.host, settings.port)
        self.writer: subprocess.Popen | None = None
        self.intake: dict[int, subprocess.Popen] = {}
        self.stopping = False

    def _spawn(self, *args: str, fds: tuple[int, ...] = ()) -> subprocess.Popen:
        parent = os.getpid()

        def before_exec() -> None:
            _die_with_parent()
            if os.getppid() != parent:  # the supervisor died before the line above
                os._exit(1)

        command = [sys.executable, "-m", "api", "--runtime", str(self.runtime), *args]
        return subprocess.Popen(command, pass_fds=fds, preexec_fn=before_exec, stdin=subprocess.DEVNULL)

    def _start_writer(self) -> None:
        (self.runtime / ORDERS_SOCKET).unlink(missing_ok=True)
        self.writer = self._spawn("--role", "writer")

    def _start_worker(self, index: int) -> None:
        (self.runtime / f"worker-{index}.ready").unlink(missing_ok=True)
        fd = self.listener.fileno()
        self.intake[index] = self._spawn("--role", "worker", "--fd", str(fd), "--index", str(index), fds=(fd,))

    def _stop(self, *_args) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            return self._run()
        finally:
            self._shutdown()

    def _run(self) -> int:
        self._start_writer()
        for index in range(self.workers):  # they load beside the writer and wait for its domain
            self._start_worker(index)
        while not (self.runtime / ORDERS_SOCKET).exists():  # the mirror caught up, the writer listens
            if self.stopping:
                return 0
            if self.writer.poll() is not None:
                log.error("the writer process exited with %s while starting", self.writer.returncode)
                return self.writer.returncode or 1
            time.sleep(0.05)
        announced = False
        while not self.stopping:
            if not announced and all((self.runtime / f"worker-{i}.ready").exists() for i in range(self.workers)):
                host, port = self.listener.getsockname()[:2]
                print(f"serving on http://{host}:{port} (OpenAPI at /docs; {self.workers} intake workers)", flush=True)
                announced = True
            if self.writer.poll() is not None and self.writer.returncode == FAULT_EXIT and os.environ.get("TIMEBANK_FAULT_POINT"):
                return FAULT_EXIT  # the crash-safety tests' fault injection (api/batcher.py) stops the whole service
            if self.writer.poll() is not None:
                log.error("the writer process exited with %s: starting it again", self.writer.returncode)
                self._start_writer()
            for index, proc in list(self.intake.items()):
                if proc.poll() is not None:
                    log.error("intake worker %d exited with %s: starting it again", index, proc.returncode)
                    self._start_worker(index)
            time.sleep(0.1)
        return 0

    def _shutdown(self) -> None:
        children = [p for p in [*self.intake.values(), self.writer] if p is not None and p.poll() is None]
        for proc in children:  # the workers first: no new order reaches a writer that is stopping
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.listener.close()
        shutil.rmtree(self.runtime, ignore_errors=True)
