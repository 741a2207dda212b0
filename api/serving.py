"""What protects the service at the HTTP layer, before a route runs: bodies refused by their size before
they are read (by `Content-Length`, and while streaming), and connections that do not finish sending their
headers in time closed (uvicorn has no header-read timeout of its own)."""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import ApiError

Limit = Callable[[str], int]


class BodyLimit:
    """ASGI middleware: a request whose `Content-Length` is over `limit(path)` is answered 413
    `body_too_large` before any of its body is read; a body streamed without a length (chunked) is cut off
    with the same refusal as soon as it passes the limit. The routes never see more than the limit."""

    def __init__(self, app, limit: Limit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > limit:
                    return await _refuse(send, length, limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError("body_too_large", f"the body is over the limit of {limit} bytes")
            return message

        return await self.app(scope, limited, send)


async def _refuse(send, length: int, limit: int) -> None:
    error = ApiError("body_too_large", f"the body is {length} bytes, over the limit of {limit}" if length >= 0 else "Content-Length is not a length")
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            # no `Connection: close`: uvicorn's parser then discards the rest of the body as it arrives (never
            # buffered, parsed or hashed), so the client, still sending, reads this answer instead of a reset
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def header_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a header-read timeout: a connection that has not sent a request's
    whole header block `seconds` after it opened (or after the previous response) is closed. Slow-header
    connections (slowloris) cannot hold the service."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers, on a kept-alive connection

    return HeaderTimeoutProtocol
