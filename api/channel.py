"""The order channel between the intake workers and the writer process (`TIMEBANK_WORKERS` ≥ 2).

The workers do what needs no stored state (HTTP, JSON, `intake.prepare`: RFC 8785, EIP-712, signature
recovery) and hand the prepared orders to the one writer process over a Unix socket: frames of a 4-byte
big-endian length and a JSON array. A request is `[id, [order, ...]]`, each order as `encode` writes it;
its answer `[id, [[httpStatus, body], ...]]` comes once the writer's group is committed (an accepted order
is durable before its worker answers), or `[id, null]` when the writer could not store the group. Requests
are pipelined: a worker sends each as it comes and matches answers by id. The first frame on a new
connection is the writer's `{"chainId", "contract"}`: the domain the workers check signatures under.

The writer alone decides idempotent repeats and `409` conflicts (`intake.store_group`). When the writer
process is gone, the requests it had not answered, and every new one until it is back, are answered
`503 writer_unavailable`; the worker connects again at the next order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from . import protocol
from .errors import ApiError
from .intake import Outcome, Prepared, Writer

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


def frame(value: Any) -> bytes:
    payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode()
    return _LENGTH.pack(len(payload)) + payload


def encode(p: Prepared) -> list:
    o = p.order
    return [
        o.orderId.hex(), o.district, o.volunteer.hex(), o.payer.hex(), o.recipient.hex(), o.serviceType, o.startTime,
        o.endTime, o.minutes, o.detailsHash.hex(), p.signature.hex(), p.digest.hex(), p.station.hex(), p.details,
    ]


def decode(v: list) -> Prepared:
    h = bytes.fromhex
    order = protocol.ServiceOrder(h(v[0]), v[1], h(v[2]), h(v[3]), h(v[4]), v[5], v[6], v[7], v[8], h(v[9]))
    return Prepared(order, h(v[10]), v[13], h(v[11]), h(v[12]))


# ----- the writer's side ----------------------------------------------------------------------------


class ChannelServer:
    """Listens on `path` in the writer process: one thread per worker connection reads its requests and
    queues them on the `Writer`, whose thread sends each answer after the commit."""

    def __init__(self, path: Path, writer: Writer, hello: dict[str, Any]):
        self.path = Path(path)
        self.writer = writer
        self.hello = frame(hello)
        self._sock: socket.socket | None = None
        self._stopping = False

    def start(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        sock.bind(str(tmp))
        sock.listen(64)
        os.replace(tmp, self.path)  # the path appears only once it accepts
        self._sock = sock
        threading.Thread(target=self._accept, name="channel-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="channel-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()
        dead = threading.Event()

        def send(data: bytes) -> None:
            if dead.is_set():
                return
            try:
                with send_lock:
                    conn.sendall(data)
            except OSError:  # the worker is gone: what it waited for is lost with its requests
                dead.set()

        send(self.hello)
        stream = conn.makefile("rb")
        try:
            while True:
                header = stream.read(4)
                if len(header) < 4:
                    break
                (size,) = _LENGTH.unpack(header)
                if size > MAX_FRAME:
                    break
                payload = stream.read(size)
                if len(payload) < size:
                    break
                request_id, items = json.loads(payload)
                prepared = [decode(item) for item in items]

                def answer(value: list[Outcome] | BaseException, request_id=request_id) -> None:
                    if isinstance(value, BaseException):
                        send(frame([request_id, None]))
                    else:
                        send(frame([request_id, [[o.http_status, o.body] for o in value]]))

                self.writer.enqueue(prepared, answer)
        except (OSError, ValueError) as exc:
            log.warning("order channel: a worker's connection failed (%s)", exc)
        finally:
            dead.set()
            stream.close()
            conn.close()


# ----- a worker's side ------------------------------------------------------------------------------


class WriterUnavailable(ApiError):
    def __init__(self, message: str | None = None):
        super().__init__("writer_unavailable", message)


class ChannelClient:
    """A worker's one connection to the writer (asyncio), opened on first use and again after it broke."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.hello: dict[str, Any] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._lock = asyncio.Lock()

    async def connect(self) -> dict[str, Any]:
        async with self._lock:
            if self._writer is not None:
                return self.hello
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_FRAME)
                self.hello = await _read_frame(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                raise WriterUnavailable() from None
            pending: dict[int, asyncio.Future] = {}
            self._writer, self._pending = writer, pending
            asyncio.get_running_loop().create_task(self._read(reader, writer, pending))
            return self.hello

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: dict) -> None:
        try:
            while True:
                request_id, outcomes = await _read_frame(reader)
                future = pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if outcomes is None:
                    future.set_exception(WriterUnavailable("the order writer could not store the orders; try again"))
                else:
                    future.set_result([Outcome(status, body) for status, body in outcomes])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in pending.values():
                if not future.done():
                    future.set_exception(WriterUnavailable())
            pending.clear()

    async def submit(self, items: list[Prepared]) -> list[Outcome]:
        if not items:
            return []
        if self._writer is None:
            await self.connect()
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(frame([request_id, [encode(p) for p in items]]))
        except (OSError, AttributeError, RuntimeError):
            self._pending.pop(request_id, None)
            raise WriterUnavailable() from None
        return await future


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _LENGTH.unpack(await reader.readexactly(4))
    if size > MAX_FRAME:
        raise ValueError("frame too large")
    return json.loads(await reader.readexactly(size))
