"""The one plain JSON-RPC client of the scripts: the verifier, the embedded chain's tools, the gas report.

Standard library only (no web3, no server code), so the standalone verifier can use it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class RpcUnavailable(OSError):
    """The endpoint could not be reached or did not answer JSON-RPC."""


class RpcError(Exception):
    """The endpoint answered with a JSON-RPC error object."""


class Rpc:
    """JSON-RPC 2.0 over HTTP: one call, or many in batched requests."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self._id = 0

    def _post(self, payload: Any, what: str) -> Any:
        request = urllib.request.Request(self.url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RpcUnavailable(f"{what} at {self.url}: {exc}") from None

    def _next(self, method: str, params: list) -> dict:
        self._id += 1
        return {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}

    @staticmethod
    def _result(method: str, reply: Any, url: str) -> Any:
        if not isinstance(reply, dict):
            raise RpcUnavailable(f"{method} at {url}: not a JSON-RPC response")
        if reply.get("error") is not None:
            error = reply["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise RpcError(f"{method}: {message}")
        if "result" not in reply:
            raise RpcUnavailable(f"{method} at {url}: no result in response")
        return reply["result"]

    def call(self, method: str, *params: Any) -> Any:
        """One call; its result, or RpcError (the node's error) / RpcUnavailable (no answer)."""
        return self._result(method, self._post(self._next(method, list(params)), method), self.url)

    def batch(self, calls: list[tuple[str, list]], chunk: int = 500) -> list:
        """Many calls, `chunk` to a request; their results in order (the first error raises RpcError)."""
        results = []
        for start in range(0, len(calls), chunk):
            body = [self._next(method, params) for method, params in calls[start : start + chunk]]
            replies = self._post(body, f"a batch of {len(body)} calls")
            if not isinstance(replies, list):
                raise RpcUnavailable(f"a batch of {len(body)} calls at {self.url}: not a JSON-RPC batch response")
            by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
            results.extend(self._result(item["method"], by_id.get(item["id"]), self.url) for item in body)
        return results
