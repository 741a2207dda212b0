"""The ledger's benchmark: everything on loopback, started and stopped by itself.

    python -m scripts.bench [--quick] [--orders N] [--out docs/BENCHMARKS.md]
    python -m scripts.bench --network [--orders N] [--out docs/BENCHMARKS.md]

It starts its own Anvil on a free port (automine while the world is registered, then a block every
--block-time seconds, default 1, for the measurements), deploys TimeBank, runs the service as a
subprocess (`python -m api`, uvloop, ETH_HASH_BACKEND=pysha3, its own SQLite file, TIMEBANK_* settings at
their defaults), registers a world through the API with signed commands (a district, a few stations,
volunteers, payers with generous grants), pre-signs every order before any timing starts, and measures:

  1. intake, single: POST /v1/orders from --clients concurrent keep-alive connections (orders/s, p50/p99);
  2. intake, bulk: POST /v1/orders/bulk with items of --bulk-size from --bulk-clients connections;
  3. accept-to-anchored latency of the single-intake orders (accepted_at/anchored_at in the service's DB);
  4. proofs: bundles served per second (GET /v1/orders/{id}/proof), standalone verifications per second
     (Merkle fold alone, the offline steps 1-2, and verify_bundle's five steps against the local node);
  5. memory (VmHWM/VmRSS of the service) and database size per million orders (after a checkpoint);
  6. a CPU profile of the service under the single-intake load (py-spy, when installed: the `bench` extra).

The load generator is one asyncio (uvloop) process speaking raw HTTP/1.1 over keep-alive streams with
pre-serialised requests; its own CPU use is measured and printed, as are the service's and Anvil's.
`--quick` runs a tiny version (seconds) as a smoke test: its figures are not benchmarks.

`--network` measures instead single intake (orders/s, p50/p99) and accept-to-anchored (p50/p99) on Anvil (a
block every --block-time s, the service's default settings) and on the four-node Clique network of
scripts/network.py (a block every --block-time s, TIMEBANK_RPC_URL listing the four nodes,
TIMEBANK_CONFIRMATIONS=3), one after the other in one run with the same load; with --out it writes (or
replaces) the section "On the four-node Clique network" of that file and leaves the rest as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

import httpx  # noqa: E402

from api import protocol as P  # noqa: E402
from api.auth import host_of, sign_headers  # noqa: E402
from api.settings import Settings  # noqa: E402
from scripts.chain import DEV_CHAIN_ID, DEV_KEYS, AnvilHandle, anvil_binary, free_port, rpc, stop_anvil  # noqa: E402
from scripts.admin import AdminClient  # noqa: E402
from scripts.service_process import ServiceProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DISTRICT = 320102
LAT, LON = 32.0500, 118.7900
COMPARE_STATIONS = 64  # the compare runs' stations: a city's orders come from many
SPAN_SECONDS = 28 * 24 * 3600  # orders are laid out over the last four weeks (the service refuses > 30 days)

QUIET_CORES = 0.3  # --wait-quiet: other processes' use under which the machine counts as quiet

TARGETS = {
    "single_rate": 1500.0,  # orders/s
    "single_p99": 0.100,  # s
    "bulk_rate": 5000.0,  # orders/s
    "anchor_p99": 3.0,  # s
}


def say(*args: Any) -> None:
    print(*args, flush=True)


# ----- measurements of processes -------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the service's supervisor, writer and intake workers)."""
    pids, at = [pid], 0
    while at < len(pids):
        try:
            for task in Path(f"/proc/{pids[at]}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
        at += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and of its descendants alive now, from /proc."""
    total = 0.0
    for one in process_tree(pid):
        try:
            stat = Path(f"/proc/{one}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            if one == pid:
                return float("nan")
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        total += (int(rest[11]) + int(rest[12])) / CLK_TCK
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; /proc/stat less idle and iowait)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (FileNotFoundError, ValueError):
        return float("nan")
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def others_cores(seconds: float) -> float:
    """Cores in use by the machine's other processes over `seconds` (this one, the service and Anvil
    excluded by the caller; here: everything)."""
    b0 = machine_busy()
    time.sleep(seconds)
    return (machine_busy() - b0) / seconds


def proc_status_kib(pid: int, key: str) -> int | None:
    """A /proc/PID/status figure in KiB, summed over the process and its descendants (VmRSS, VmHWM)."""
    total = None
    for one in process_tree(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total = (total or 0) + int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def code_label() -> str:
    """The commit measured, and whether the service's code differs from it."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "api", "contracts"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes in api/ or contracts/" if dirty else "")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    mem = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (FileNotFoundError, IndexError, ValueError):
        pass
    sqlite_version = sqlite3.sqlite_version
    return {
        "cpus": str(os.cpu_count()),
        "nproc": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
    }


# ----- the chain -----------------------------------------------------------------------------------

def start_bench_anvil(state_dir: Path, extra: list[str], timeout: float = 30.0) -> AnvilHandle:
    """Anvil as `make chain` runs it (state file written every 5 s), automine at first, on a free port."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [anvil_binary(), "--host", HOST, "--port", str(port), "--chain-id", str(DEV_CHAIN_ID),
               "--state", str(state_dir / "state.json"), "--state-interval", "5", *extra]  # fmt: skip
    with open(state_dir / "anvil.log", "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = AnvilHandle(process.pid, port, state_dir, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"anvil exited with {process.returncode}: {(state_dir / 'anvil.log').read_text()[-1000:]}")
        try:
            rpc(handle.url, "eth_chainId", timeout=1)
            return handle
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            stop_anvil(handle)
            raise RuntimeError(f"anvil did not answer on {handle.url} within {timeout:.0f} s")
        time.sleep(0.1)


# ----- signing (before any timing) -----------------------------------------------------------------


@dataclass
class World:
    domain: dict
    separator: bytes
    station_keys: list[bytes]
    volunteers: list[str]
    payers: list[str]


@dataclass(frozen=True)
class Layout:
    """Where order k goes: volunteer k % V, one after another in time for each volunteer (so no two
    orders of a volunteer overlap), payer k % P, station k % S."""

    start: int
    slot: int  # seconds
    minutes: int
    volunteers: int
    payers: int
    stations: int

    @classmethod
    def for_total(cls, total: int, volunteers: int, payers: int, stations: int, station_daily: int | None = None) -> "Layout":
        """`station_daily`: the service's ceiling of a station's minutes a day (all the orders go in today), when
        the orders must stay under it."""
        per_volunteer = -(-total // volunteers)
        minutes = max(1, min(60, SPAN_SECONDS // per_volunteer // 60))
        if station_daily is not None:
            minutes = min(minutes, station_daily * stations * 9 // 10 // total)
            if minutes < 1:
                raise SystemExit(f"{total} orders of {stations} stations are over their ceiling of {station_daily} minutes a day")
        if per_volunteer * minutes * 60 > SPAN_SECONDS:
            raise SystemExit(f"{total} orders do not fit in four weeks for {volunteers} volunteers")
        return cls(int(time.time()) - SPAN_SECONDS - 600, minutes * 60, minutes, volunteers, payers, stations)


def _sign_chunk(args: tuple) -> list[tuple[str, bytes]]:
    """Signs orders k in `indices` (in a worker process); returns (orderId, item JSON bytes) each."""
    separator, station_keys, volunteers, payers, layout, indices = args
    out = []
    for k in indices:
        start = layout.start + (k // layout.volunteers) * layout.slot
        end = start + layout.minutes * 60
        details = {
            "checkIn": {"lat": LAT, "lon": LON, "time": start},
            "checkOut": {"lat": LAT, "lon": LON, "time": end},
            "confirmation": {"method": "card", "time": end},
            "rating": {"byRecipient": 5},
        }
        payer = payers[k % layout.payers]
        order = {
            "orderId": P.to_hex(secrets.token_bytes(32)),
            "district": DISTRICT,
            "volunteer": volunteers[k % layout.volunteers],
            "payer": payer,
            "recipient": payer,
            "serviceType": 1 + k % 8,  # 1..8: 9 needs a qualification the mirror cannot hold
            "startTime": start,
            "endTime": end,
            "minutes": layout.minutes,
            "detailsHash": P.to_hex(P.details_hash(details)),
        }
        digest = P.ServiceOrder.from_json(order).digest(separator)
        signature = P.to_hex(P.sign(digest, station_keys[k % layout.stations]))
        body = json.dumps({"order": order, "signature": signature, "details": details}, separators=(",", ":"))
        out.append((order["orderId"], body.encode()))
    return out


def sign_orders(world: World, layout: Layout, indices: range, workers: int) -> list[tuple[str, bytes]]:
    chunks = [indices[i : i + 2000] for i in range(0, len(indices), 2000)]
    jobs = [(world.separator, world.station_keys, world.volunteers, world.payers, layout, c) for c in chunks]
    if workers <= 1 or len(chunks) <= 1:
        return [item for job in jobs for item in _sign_chunk(job)]
    with ProcessPoolExecutor(workers) as pool:
        return [item for part in pool.map(_sign_chunk, jobs) for item in part]


def post_request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get_request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


# ----- the load generator --------------------------------------------------------------------------


@dataclass
class Load:
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    counted: int = 0  # bodies' occurrences of `count_marker` (bulk: items accepted)
    client_cpu: float = 0.0  # seconds
    service_cpu: float = 0.0
    anvil_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process of the machine
    started: float = 0.0
    done: list[float] = field(default_factory=list)  # perf_counter() at each response
    timed_out: bool = False

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def cores(self, seconds: float) -> float:
        return seconds / self.wall if self.wall else float("nan")

    @property
    def others(self) -> float:
        """Cores used meanwhile by processes other than the load generator, the service and Anvil."""
        return self.cores(self.machine_cpu - self.client_cpu - self.service_cpu - self.anvil_cpu)

    def rate_by_tenth(self) -> list[float]:
        """Responses per second in each tenth of the responses, in order."""
        done = sorted(self.done)
        if len(done) < 10:
            return []
        cuts = [self.started] + [done[len(done) * i // 10 - 1] for i in range(1, 11)]
        return [(len(done) * (i + 1) // 10 - len(done) * i // 10) / max(cuts[i + 1] - cuts[i], 1e-9) for i in range(10)]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise RuntimeError(f"response without content-length: {head[:200]!r}")
    end = lower.find(b"\r\n", at + 2)
    body = await reader.readexactly(int(lower[at + 17 : end]))
    return status, body


async def _drive(
    port: int, requests: Iterable[bytes], clients: int, ok: tuple[int, ...], keep: int, marker: bytes | None, timeout: float
) -> Load:
    result = Load()
    shared = iter(requests)  # one iterator: each request goes out once, from whichever client is free

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        try:
            for request in shared:
                t0 = time.perf_counter()
                writer.write(request)
                status, body = await _read_response(reader)
                t1 = time.perf_counter()
                result.latencies.append(t1 - t0)
                result.done.append(t1)
                result.statuses[status] += 1
                if status not in ok and len(result.errors) < 5:
                    result.errors.append(f"{status} {body[:300]!r}")
                if marker is not None:
                    result.counted += body.count(marker)
                if len(result.bodies) < keep:
                    result.bodies.append(body)
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except asyncio.TimeoutError:
        result.timed_out = True
    return result


def run_load(
    port: int,
    requests: list[bytes],
    clients: int,
    *,
    service_pid: int,
    anvil_pid: int,
    ok: tuple[int, ...] = (201,),
    keep: int = 0,
    marker: bytes | None = None,
    timeout: float = 600.0,
) -> Load:
    """Sends `requests` over `clients` keep-alive connections; measures wall time, latencies and the CPU
    of the three processes (this one, the service, Anvil) while it ran."""
    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        new_loop = asyncio.new_event_loop
    loop = new_loop()
    try:
        s0, a0, c0, m0 = cpu_seconds(service_pid), cpu_seconds(anvil_pid), time.process_time(), machine_busy()
        t0 = time.perf_counter()
        result = loop.run_until_complete(_drive(port, requests, clients, ok, keep, marker, timeout))
        result.wall = time.perf_counter() - t0
        result.started = t0
        result.machine_cpu = machine_busy() - m0
        result.client_cpu = time.process_time() - c0
        result.service_cpu = cpu_seconds(service_pid) - s0
        result.anvil_cpu = cpu_seconds(anvil_pid) - a0
    finally:
        loop.close()
    return result


# ----- the world, through the API ------------------------------------------------------------------


def register_world(client: httpx.Client, volunteers: int, payers: int, stations: int, grant: int) -> World:
    domain = client.get("/v1/domain").json()["domain"]
    separator = P.domain_separator(domain["chainId"], domain["verifyingContract"])
    city = AdminClient(str(client.base_url), bytes.fromhex(DEV_KEYS[0][2:]), http=client, _domain=domain)
    admin = AdminClient(str(client.base_url), secrets.token_bytes(32), http=client, _domain=domain)
    city.command("RegisterDistrict", {"district": DISTRICT, "admin": admin.address})
    station_keys = [secrets.token_bytes(32) for _ in range(stations)]
    volunteer_ids = [P.to_hex(P.account_id(f"NJ-{DISTRICT}-V{i:06d}-{secrets.token_hex(3)}")) for i in range(volunteers)]
    payer_ids = [P.to_hex(P.account_id(f"NJ-{DISTRICT}-E{i:06d}-{secrets.token_hex(3)}")) for i in range(payers)]
    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(admin.command, "RegisterStation", {"station": P.to_hex(P.address_of(k)), "district": DISTRICT}) for k in station_keys]
        jobs += [pool.submit(admin.command, "RegisterAccount", {"account": a, "district": DISTRICT, "kind": 1}) for a in volunteer_ids]
        jobs += [pool.submit(admin.command, "RegisterAccount", {"account": a, "district": DISTRICT, "kind": 2}) for a in payer_ids]
        for job in jobs:
            job.result()
        grants = []
        for a in payer_ids:
            left = grant
            while left > 0:
                part = min(left, 2**32 - 1)
                grants.append(pool.submit(admin.command, "Grant", {"account": a, "minutes": part, "reason": 1}))
                left -= part
        for job in grants:
            job.result()
        # the elderly people's registered location (an order to a recipient without one is refused)
        profile = json.dumps({"location": {"lat": LAT, "lon": LON}, "qualified": False}).encode()
        host = host_of(client.base_url)

        def locate(account: str) -> None:
            path = f"/v1/accounts/{account}/profile"
            headers = sign_headers(admin.key, separator, "PUT", path, profile, host=host)
            response = client.put(path, content=profile, headers={**headers, "Content-Type": "application/json"})
            if response.status_code != 200:
                raise RuntimeError(f"profile refused: {response.status_code} {response.text[:300]}")

        for job in [pool.submit(locate, a) for a in payer_ids]:
            job.result()
    return World(domain, separator, station_keys, volunteer_ids, payer_ids)


# ----- the service ---------------------------------------------------------------------------------


def wait_drained(client: httpx.Client, timeout: float) -> tuple[float, bool]:
    """Waits until no order waits to be anchored; returns (seconds, drained)."""
    t0 = time.monotonic()
    while True:
        waiting = client.get("/v1/health", timeout=30).json().get("ordersWaiting")
        if waiting == 0:
            return time.monotonic() - t0, True
        if time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, False
        time.sleep(0.1)


def drained_after(client: httpx.Client, r: Any, phase: dict, orders: int, say: Callable[[str], None]) -> None:
    """After a load phase: its errors said, then how long anchoring took to catch up, in `phase`."""
    for e in r.errors:
        say(f"    ! {e}")
    drain_s, drained = wait_drained(client, max(120.0, orders / 100))
    phase["drain"], phase["drained"] = drain_s, drained
    say(f"    anchoring caught up {drain_s:.1f} s after the load stopped" + ("" if drained else " (NOT drained: gave up)"))


def orders_waiting(client: httpx.Client) -> int | None:
    return client.get("/v1/health", timeout=30).json().get("ordersWaiting")


# ----- profile -------------------------------------------------------------------------------------


def py_spy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    if os.access(local, os.X_OK):
        return str(local)
    return shutil.which("py-spy")


COMPONENTS = (
    # (label, test on the leaf frame "function (file)", its file)
    ("event loop in C (uvloop: sockets, callbacks; httptools)", lambda f, p: f.startswith("Runner.run ") or "uvloop/" in p),
    ("SQLite: commit (fsync)", lambda f, p: "do_commit" in f or "_commit_impl" in f),
    ("SQLite: execute statements", lambda f, p: "do_execute" in f or "_exec_single_context" in f or "do_executemany" in f),
    ("SQLAlchemy (Python)", lambda f, p: p.startswith("sqlalchemy/")),
    ("signature recovery (coincurve)", lambda f, p: f.startswith("recover ") or "coincurve/" in p),
    ("keccak / EIP-712 (api.protocol)", lambda f, p: p.endswith("api/protocol.py") or "eth_hash/" in p or "sha3" in p),
    ("RFC 8785 canonical JSON", lambda f, p: "rfc8785/" in p),
    ("JSON (stdlib)", lambda f, p: p.startswith("json/")),
    ("HTTP stack (uvicorn, starlette, fastapi, anyio)", lambda f, p: p.split("/")[0] in ("uvicorn", "starlette", "fastapi", "anyio", "httptools", "h11")),
    ("service code (api/)", lambda f, p: "api/" in p),
    ("chain RPC (web3, requests, urllib3)", lambda f, p: p.split("/")[0] in ("web3", "requests", "urllib3", "eth_abi", "eth_utils", "http", "socket.py", "ssl.py")),
    ("asyncio / threading / queue", lambda f, p: p.split("/")[0] in ("asyncio", "threading.py", "queue.py", "concurrent", "selectors.py")),
)


def _frame_parts(frame: str) -> tuple[str, str]:
    """("function (file)", "file") of a py-spy frame "function (file:line)"."""
    if frame.endswith(")") and " (" in frame:
        name, where = frame[:-1].rsplit(" (", 1)
        path = where.rsplit(":", 1)[0]
        return f"{name} ({path})", path
    return frame, ""


def _thread_label(name: str, frames: list[str]) -> str:
    joined = ";".join(frames)
    if "api/intake.py" in joined and "_run" in joined and name.startswith("order-writer"):
        return "order writer thread"
    for key, label in (("order-writer", "order writer thread"), ("batcher", "batcher thread"), ("follower", "follower thread"), ("MainThread", "event loop (main thread: HTTP, prepare)")):
        if name.startswith(key):
            return label
    if "AnyIO" in name or "anyio" in joined or "run_in_threadpool" in joined:
        return "threadpool (reads, health)"
    return f"other thread ({name})"


class ProfileError(RuntimeError):
    pass


def profile_run(pyspy: str, service: "ServiceProcess", raw: Path, orders: list[tuple[str, bytes]], clients: int,
                load: dict, args: argparse.Namespace, *, idle: bool, rate: int = 100) -> dict:
    """Runs the single-intake load over `orders` with py-spy recording the service; returns the summary."""
    requests = [post_request(service.port, "/v1/orders", b) for _, b in orders]
    command = [pyspy, "record", "--pid", str(service.pid), "--rate", str(rate), "--format", "raw", "--threads",
               "--subprocesses", "--nonblocking", "--output", str(raw)] + (["--idle"] if idle else [])  # fmt: skip
    log = raw.with_suffix(".log")
    with open(log, "wb") as err:
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        time.sleep(1.0)  # attached
        if spy.poll() is not None:
            raise ProfileError(f"py-spy exited with {spy.returncode}: {log.read_text(errors='replace')[-300:]}")
        t0 = time.perf_counter()
        r = run_load(service.port, requests, clients, timeout=args.phase_timeout, **load)
        seconds = time.perf_counter() - t0 + 1.0
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if not raw.exists():
        raise ProfileError(f"py-spy wrote nothing: {log.read_text(errors='replace')[-300:]}")
    summary = summarise_profile(raw, rate, seconds)
    summary["orders"] = r.statuses.get(201, 0)
    summary["orders_rate"] = r.statuses.get(201, 0) / r.wall
    summary["idle"] = idle
    return summary


def _innermost_api(frames: list[str]) -> str:
    for frame in reversed(frames):
        fn, path = _frame_parts(frame)
        if path.startswith("api/") or "/api/" in path:
            return fn.split(" (")[0]
    return "-"


def summarise_profile(raw_path: Path, rate: int, seconds: float, top: int = 15) -> dict:
    """Self and inclusive samples per function, per thread and per component, from py-spy's raw output;
    and per thread, the leaf functions with the innermost service function that called them."""
    self_samples: Counter = Counter()
    inclusive: Counter = Counter()
    threads: Counter = Counter()
    components: Counter = Counter()
    by_thread: dict[str, Counter] = defaultdict(Counter)
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread_name = ""
        if frames and frames[0].startswith("thread ("):
            thread_name = frames[0].split(": ", 1)[1] if ": " in frames[0] else frames[0]
            frames = frames[1:]
        if not frames:
            continue
        total += n
        label = _thread_label(thread_name, frames)
        threads[label] += n
        leaf_fn, leaf_path = _frame_parts(frames[-1])
        self_samples[leaf_fn] += n
        for fn in {_frame_parts(f)[0] for f in frames}:
            inclusive[fn] += n
        component = "other"
        for name, test in COMPONENTS:
            if test(leaf_fn, leaf_path):
                component = name
                break
        components[component] += n
        by_thread[label][f"{leaf_fn.split(' (')[0]} ← {_innermost_api(frames)}"] += n
    return {
        "samples": total,
        "seconds": seconds,
        "rate": rate,
        "busy_threads": total / (rate * seconds) if seconds else float("nan"),
        "threads": threads.most_common(),
        "components": components.most_common(),
        "self": self_samples.most_common(top),
        "inclusive_api": [(f, n) for f, n in inclusive.most_common() if "api/" in f][:top],
        "by_thread": {t: c.most_common(8) for t, c in by_thread.items()},
    }


def profile_lines(profile: dict) -> list[str]:
    cpu, wall = profile["cpu"], profile["wall"]
    total = cpu["samples"] or 1
    lines = [
        f"CPU view: {cpu['samples']} samples at {cpu['rate']} Hz over {cpu['seconds']:.1f} s while {cpu['orders']:,} orders "
        f"went in at {cpu['orders_rate']:,.0f}/s (≈{cpu['busy_threads']:.2f} threads running on average; waiting threads "
        "are not sampled).",
        "",
        "By thread:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in cpu["threads"]]
    lines += ["", "By component (the leaf frame's module; C calls count in the Python line that made them):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in cpu["components"]]
    lines += ["", "Top functions, self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in cpu["self"]]
    lines += ["", "Service code, inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in cpu["inclusive_api"]]
    lines += [
        "",
        f"Wall-clock view (py-spy --idle; {wall['orders']:,} more orders at {wall['orders_rate']:,.0f}/s): where each thread "
        "spends its time, running or waiting, as leaf function ← innermost service function:",
    ]
    per_thread = wall["rate"] * wall["seconds"]
    for thread in ("order writer thread", "event loop (main thread: HTTP, prepare)", "batcher thread", "follower thread"):
        rows = wall["by_thread"].get(thread)
        if not rows:
            continue
        lines += ["", f"  {thread}:"]
        lines += [f"    {min(100.0, 100 * n / per_thread):5.1f}%  {name}" for name, n in rows]
    return lines


# ----- the run -------------------------------------------------------------------------------------


@dataclass
class Plan:
    single: int
    bulk: int
    bulk_size: int
    warmup: int
    profile: int
    proofs: int
    verify: int
    volunteers: int
    payers: int
    stations: int
    clients: int
    bulk_clients: int


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(single=args.orders or 300, bulk=1000, bulk_size=250, warmup=50, profile=300, proofs=100, verify=5,
                    volunteers=8, payers=4, stations=2, clients=args.clients or 8, bulk_clients=2)
    single = args.orders or 60_000
    return Plan(single=single, bulk=args.bulk_orders or single, bulk_size=args.bulk_size, warmup=1000,
                profile=args.profile_orders or max(1000, single // 3), proofs=5000, verify=200,
                volunteers=128, payers=32, stations=4, clients=args.clients or 32, bulk_clients=args.bulk_clients)


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def run(args: argparse.Namespace) -> dict:
    plan = plan_for(args)
    extra_env = {"TIMEBANK_STATION_DAILY_MINUTES": str(10**12), **dict(kv.split("=", 1) for kv in args.env)}  # weeks of orders in minutes: no daily ceiling
    workdir = Path(tempfile.mkdtemp(prefix="timebank-bench-"))
    report: dict[str, Any] = {"plan": plan, "machine": machine(), "workdir": str(workdir), "block_time": args.block_time,
                              "code": args.code_label or code_label()}
    anvil: AnvilHandle | None = None
    service: ServiceProcess | None = None
    t_start = time.monotonic()
    try:
        # --- chain and contract
        if args.wait_quiet > 0:
            deadline = time.monotonic() + args.wait_quiet
            while (busy := others_cores(5.0)) > QUIET_CORES and time.monotonic() < deadline:
                say(f"the machine is busy ({busy:.2f} cores in use by other processes); waiting for a quiet moment ...")
        report["busy_before"] = others_cores(2.0)
        say(f"workdir {workdir}; the machine was busy {report['busy_before']:.2f} cores before the start (other processes)")
        report["anvil_extra"] = args.anvil_arg
        anvil = start_bench_anvil(workdir / "anvil", args.anvil_arg)
        from eth_account import Account
        from web3 import Web3

        from scripts.compile import load_artifact
        from scripts.deploy import deploy

        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        city, relayer = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
        address, receipt = deploy(w3, load_artifact("TimeBank"), city.key, city.address, relayer.address)
        (workdir / "deployments").mkdir()
        (workdir / "deployments" / f"{DEV_CHAIN_ID}.json").write_text(
            json.dumps({"chainId": DEV_CHAIN_ID, "address": address, "blockNumber": receipt["blockNumber"]})
        )
        say(f"anvil pid {anvil.pid} on {anvil.url}; TimeBank at {address}")

        # --- the service
        service = ServiceProcess(anvil.url, address, workdir, "bench", cwd=workdir, **extra_env).start()
        client = httpx.Client(base_url=service.url, timeout=120)
        report["service_env"] = service.env
        say(f"service pid {service.pid} on {service.url} (log {service.log_path})")

        # --- the world (automine: fast), then the orders, signed before any timing
        total = plan.warmup + plan.single + plan.bulk + plan.profile
        layout = Layout.for_total(total, plan.volunteers, plan.payers, plan.stations)
        per_payer = -(-total // plan.payers) * layout.minutes
        t0 = time.perf_counter()
        world = register_world(client, plan.volunteers, plan.payers, plan.stations, grant=per_payer * 2)
        report["setup_seconds"] = time.perf_counter() - t0
        say(
            f"registered 1 district, {plan.stations} stations, {plan.volunteers} volunteers, {plan.payers} payers "
            f"(granted {per_payer * 2} minutes each) in {report['setup_seconds']:.1f} s"
        )
        t0 = time.perf_counter()
        signed = sign_orders(world, layout, range(total), workers=min(2, os.cpu_count() or 1))
        say(f"pre-signed {total} orders ({layout.minutes}-minute services) in {time.perf_counter() - t0:.1f} s")
        cuts = list(itertools.accumulate((plan.warmup, plan.single, plan.bulk, plan.profile), initial=0))
        warmup, single, bulk, profiled = (signed[a:b] for a, b in itertools.pairwise(cuts))
        del signed
        if args.block_time > 0:
            rpc(anvil.url, "evm_setIntervalMining", [args.block_time])
        say(f"mining: {'a block every %d s' % args.block_time if args.block_time else 'a block per transaction'}")
        load = dict(service_pid=service.pid, anvil_pid=anvil.pid)

        # --- warm-up
        run_load(service.port, [post_request(service.port, "/v1/orders", b) for _, b in warmup], plan.clients, **load)
        wait_drained(client, 120)

        # --- 1. intake, single
        requests = [post_request(service.port, "/v1/orders", b) for _, b in single]
        say(f"\n[1] intake, single: {len(requests)} orders from {plan.clients} clients ...")
        r = run_load(service.port, requests, plan.clients, timeout=args.phase_timeout, **load)
        del requests
        backlog = orders_waiting(client)
        rss_single = (proc_status_kib(service.pid, "VmRSS"), proc_status_kib(service.pid, "VmHWM"))
        accepted = r.statuses.get(201, 0)
        report["single"] = s = {
            "orders": accepted,
            "requests": r.requests,
            "statuses": dict(r.statuses),
            "errors": r.errors,
            "wall": r.wall,
            "rate": accepted / r.wall,
            "p50": pct(r.latencies, 0.50),
            "p99": pct(r.latencies, 0.99),
            "max": max(r.latencies, default=float("nan")),
            "client_cores": r.cores(r.client_cpu),
            "service_cores": r.cores(r.service_cpu),
            "anvil_cores": r.cores(r.anvil_cpu),
            "other_cores": r.others,
            "by_tenth": r.rate_by_tenth(),
            "backlog": backlog,
            "timed_out": r.timed_out,
        }
        say(
            f"    {s['rate']:,.0f} orders/s; latency p50 {s['p50'] * 1000:.1f} ms, p99 {s['p99'] * 1000:.1f} ms; "
            f"{s['orders']} accepted in {s['wall']:.1f} s; statuses {s['statuses']}"
        )
        say(
            f"    CPU: service {s['service_cores']:.2f} cores, load generator {s['client_cores']:.2f}, "
            f"anvil {s['anvil_cores']:.2f}, other processes {s['other_cores']:.2f}; {backlog} orders waiting to be anchored at the end"
        )
        say("    orders/s by tenth of the run: " + ", ".join(f"{x:,.0f}" for x in s["by_tenth"]))
        drained_after(client, r, report["single"], plan.single, say)

        # --- 2. intake, bulk
        bodies = [b for _, b in bulk]
        requests = [
            post_request(service.port, "/v1/orders/bulk", b'{"items":[' + b",".join(bodies[i : i + plan.bulk_size]) + b"]}")
            for i in range(0, len(bodies), plan.bulk_size)
        ]
        del bodies
        say(f"\n[2] intake, bulk: {len(bulk)} orders in {len(requests)} requests of {plan.bulk_size} from {plan.bulk_clients} clients ...")
        r = run_load(service.port, requests, plan.bulk_clients, ok=(200,), marker=b'"httpStatus":201', timeout=args.phase_timeout, **load)
        del requests
        backlog = orders_waiting(client)
        rss_bulk = (proc_status_kib(service.pid, "VmRSS"), proc_status_kib(service.pid, "VmHWM"))
        report["bulk"] = b = {
            "orders": r.counted,
            "requests": r.requests,
            "statuses": dict(r.statuses),
            "errors": r.errors,
            "wall": r.wall,
            "rate": r.counted / r.wall,
            "p50": pct(r.latencies, 0.50),
            "p99": pct(r.latencies, 0.99),
            "client_cores": r.cores(r.client_cpu),
            "service_cores": r.cores(r.service_cpu),
            "anvil_cores": r.cores(r.anvil_cpu),
            "other_cores": r.others,
            "backlog": backlog,
            "timed_out": r.timed_out,
        }
        say(
            f"    {b['rate']:,.0f} orders/s; {b['orders']} of {len(bulk)} accepted in {b['wall']:.1f} s; request latency "
            f"p50 {b['p50'] * 1000:.0f} ms, p99 {b['p99'] * 1000:.0f} ms"
        )
        say(
            f"    CPU: service {b['service_cores']:.2f} cores, load generator {b['client_cores']:.2f}, anvil {b['anvil_cores']:.2f}, "
            f"other processes {b['other_cores']:.2f}"
        )
        drained_after(client, r, report["bulk"], plan.bulk, say)

        # --- 4. proofs (3 is read from the database at the end)
        sample = random.Random(7).sample([oid for oid, _ in single], min(plan.proofs, len(single)))
        requests = [get_request(service.port, f"/v1/orders/{oid}/proof") for oid in sample]
        say(f"\n[4] proofs: {len(requests)} bundles from {plan.clients} clients ...")
        r = run_load(service.port, requests, plan.clients, ok=(200,), keep=plan.verify, timeout=args.phase_timeout, **load)
        rss_proofs = (proc_status_kib(service.pid, "VmRSS"), proc_status_kib(service.pid, "VmHWM"))
        served = r.statuses.get(200, 0)
        report["proofs"] = pr = {
            "served": served,
            "statuses": dict(r.statuses),
            "errors": r.errors,
            "rate": served / r.wall,
            "p50": pct(r.latencies, 0.50),
            "p99": pct(r.latencies, 0.99),
            "service_cores": r.cores(r.service_cpu),
            "client_cores": r.cores(r.client_cpu),
            "other_cores": r.others,
        }
        say(f"    {pr['rate']:,.0f} bundles/s served; latency p50 {pr['p50'] * 1000:.1f} ms, p99 {pr['p99'] * 1000:.1f} ms; statuses {pr['statuses']}")
        for e in r.errors:
            say(f"    ! {e}")
        bundles = [json.loads(body) for body in r.bodies]
        report["verify"] = verify_figures(bundles, anvil.url, address)
        v = report["verify"]
        say(
            f"    standalone: fold {v['fold_rate']:,.0f}/s (depth {v['depth']}); steps 1-2 offline {v['offline_rate']:,.0f}/s; "
            f"verify_bundle (5 steps, local node) {v['full_rate']:,.1f}/s ({v['full_ok']}/{v['full_n']} verified)"
        )

        # --- 6. profile: the single-intake load twice more, under py-spy: CPU samples, then wall clock (--idle)
        pyspy = None if args.no_profile else py_spy_binary()
        if pyspy is None:
            report["profile"] = None
            report["profile_note"] = "skipped: " + ("--no-profile" if args.no_profile else "py-spy is not installed (pip install -e '.[bench]')")
            say(f"\n[6] profile {report['profile_note']}")
        else:
            half = len(profiled) // 2
            say(f"\n[6] profile: {len(profiled)} single orders with the service under py-spy (CPU, then wall clock) ...")
            try:
                cpu = profile_run(pyspy, service, workdir / "profile-cpu.raw.txt", profiled[:half], plan.clients, load, args, idle=False)
                wall = profile_run(pyspy, service, workdir / "profile-wall.raw.txt", profiled[half:], plan.clients, load, args, idle=True)
            except ProfileError as exc:
                report["profile"] = None
                report["profile_note"] = f"skipped: {exc}"
                say(f"    {report['profile_note']}")
            else:
                report["profile"] = {"cpu": cpu, "wall": wall}
                for line in profile_lines(report["profile"]):
                    say("    " + line)
        del profiled
        wait_drained(client, max(120.0, plan.profile / 100))

        # --- 5. memory
        report["memory"] = {
            "hwm_kib": proc_status_kib(service.pid, "VmHWM"),
            "rss_end_kib": proc_status_kib(service.pid, "VmRSS"),
            "rss_single_kib": rss_single[0],
            "rss_bulk_kib": rss_bulk[0],
            "rss_proofs_kib": rss_proofs[0],
        }
        client.close()
        service.stop()

        # --- 3 and 5: from the database, with the service stopped
        report["anchor"] = anchor_latency(service.base_env["TIMEBANK_DATABASE_URL"], [oid for oid, _ in single])
        a = report["anchor"]
        say(
            f"\n[3] accept-to-anchored (single-intake orders): p50 {a['p50']:.2f} s, p99 {a['p99']:.2f} s, max {a['max']:.2f} s "
            f"({a['anchored']} of {a['orders']} anchored; {a['batches']} batches, {a['mean_batch']:.0f} orders each on average)"
        )
        report["database"] = d = database_size(service.database)
        m = report["memory"]
        say(
            f"[5] memory: service VmHWM {m['hwm_kib'] / 1024:.0f} MiB (RSS after single {m['rss_single_kib'] / 1024:.0f} MiB, "
            f"after bulk {m['rss_bulk_kib'] / 1024:.0f} MiB, at the end {m['rss_end_kib'] / 1024:.0f} MiB)"
        )
        say(
            f"    database: {d['bytes'] / 2**20:.1f} MiB for {d['orders']} orders and {d['batches']} batches "
            f"= {d['bytes_per_order']:.0f} B/order, {d['per_million'] / 2**30:.2f} GiB per million orders"
        )
    finally:
        if service is not None:
            service.stop()
        if anvil is not None:
            stop_anvil(anvil)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["elapsed"] = time.monotonic() - t_start
    return report


# ----- --network: Anvil beside the four-node Clique network ----------------------------------------

NETWORK_SECTION = "## On the four-node Clique network"


def measure_on(kind: str, args: argparse.Namespace, orders: int, clients: int) -> dict:
    """Single intake and accept-to-anchored on one chain (`anvil` or `clique`), everything started here."""
    from eth_account import Account
    from web3 import Web3

    from scripts import network as N
    from scripts.compile import load_artifact
    from scripts.deploy import deploy

    workdir = Path(tempfile.mkdtemp(prefix=f"timebank-bench-{kind}-"))
    (workdir / "deployments").mkdir()
    anvil: AnvilHandle | None = None
    net = None
    service: ServiceProcess | None = None
    try:
        extra_env = {"TIMEBANK_STATION_DAILY_MINUTES": str(10**12), **dict(kv.split("=", 1) for kv in args.env)}  # weeks of orders in minutes: no daily ceiling
        if kind == "anvil":
            anvil = start_bench_anvil(workdir / "anvil", args.anvil_arg)
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
            city, relayer = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
            address, _receipt = deploy(w3, load_artifact("TimeBank"), city.key, city.address, relayer.address)
            rpc_url, chain_pid = anvil.url, anvil.pid
        else:
            ports = [(free_port(), free_port(), free_port()) for _ in range(N.SIGNERS)]
            net = N.create(workdir / "network", period=max(1, args.block_time), ports=ports)
            N.start(net)
            address = N.deploy(net, records_dir=workdir / "deployments", say=lambda *_: None)["address"]
            rpc_url, chain_pid = net.rpc_url, net.nodes[0].pid()
            extra_env = {"TIMEBANK_RELAYER_KEY": N.RELAYER_KEY, "TIMEBANK_CONFIRMATIONS": "3", "TIMEBANK_ID_HASH_KEY": secrets.token_hex(32), **extra_env}
        service = ServiceProcess(rpc_url, address, workdir, "bench", cwd=workdir, **extra_env).start()
        client = httpx.Client(base_url=service.url, timeout=120)
        warmup = 200
        layout = Layout.for_total(warmup + orders, 64, 16, 4)
        per_payer = -(-(warmup + orders) // 16) * layout.minutes
        t0 = time.perf_counter()
        world = register_world(client, 64, 16, 4, grant=per_payer * 2)
        setup = time.perf_counter() - t0
        signed = sign_orders(world, layout, range(warmup + orders), workers=min(2, os.cpu_count() or 1))
        if kind == "anvil" and args.block_time > 0:
            rpc(anvil.url, "evm_setIntervalMining", [args.block_time])
        load = dict(service_pid=service.pid, anvil_pid=chain_pid)
        run_load(service.port, [post_request(service.port, "/v1/orders", b) for _, b in signed[:warmup]], clients, **load)
        wait_drained(client, 120)
        single = signed[warmup:]
        say(f"[{kind}] intake, single: {len(single)} orders from {clients} clients ...")
        r = run_load(service.port, [post_request(service.port, "/v1/orders", b) for _, b in single], clients,
                     timeout=args.phase_timeout, **load)
        accepted = r.statuses.get(201, 0)
        drain, drained = wait_drained(client, 300)
        client.close()
        service.stop()
        anchor = anchor_latency(service.base_env["TIMEBANK_DATABASE_URL"], [oid for oid, _ in single])
        result = {
            "kind": kind, "orders": accepted, "statuses": dict(r.statuses), "errors": r.errors, "wall": r.wall,
            "rate": accepted / r.wall, "p50": pct(r.latencies, 0.50), "p99": pct(r.latencies, 0.99),
            "service_cores": r.cores(r.service_cpu), "chain_cores": r.cores(r.anvil_cpu), "other_cores": r.others,
            "drain": drain, "drained": drained, "anchor": anchor, "setup": setup,
        }
        say(f"    {result['rate']:,.0f} orders/s, p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms; "
            f"accept-to-anchored p50 {anchor['p50']:.2f} s, p99 {anchor['p99']:.2f} s ({anchor['anchored']} of "
            f"{anchor['orders']} in {anchor['batches']} batches); world registered in {setup:.1f} s")
        return result
    finally:
        if service is not None:
            service.stop()
        if anvil is not None:
            stop_anvil(anvil)
        if net is not None:
            N.stop(net)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_network(args: argparse.Namespace) -> dict:
    orders = args.orders or (300 if args.quick else 5000)
    clients = args.clients or (8 if args.quick else 32)
    report = {"machine": machine(), "code": args.code_label or code_label(), "block_time": max(1, args.block_time),
              "orders": orders, "clients": clients, "busy_before": others_cores(2.0)}
    report["anvil"] = measure_on("anvil", args, orders, clients)
    report["clique"] = measure_on("clique", args, orders, clients)
    return report


def network_markdown(report: dict, command: str) -> str:
    m = report["machine"]
    rows = []
    for label, r in (("Anvil (1 node, 1 confirmation)", report["anvil"]),
                     ("Clique, 4 geth signers (4 URLs, 3 confirmations)", report["clique"])):
        a = r["anchor"]
        rows.append(f"| {label} | {r['rate']:,.0f} | {r['p50'] * 1000:.1f} ms / {r['p99'] * 1000:.1f} ms | "
                    f"{a['p50']:.2f} s / {a['p99']:.2f} s | {a['anchored']:,} of {a['orders']:,} in {a['batches']} batches | "
                    f"{r['service_cores']:.2f} / {r['chain_cores']:.2f} |")
    return "\n".join([
        NETWORK_SECTION,
        "",
        f"Command: `{command}`. Code: {report['code']}. Machine: {m.get('cpus', '?')} CPUs, shared; cores busy with other "
        f"processes just before the start: {report['busy_before']:.2f}. Both chains seal a block every "
        f"{report['block_time']} s; the same service (default settings but those named), the same world (4 stations, "
        f"64 volunteers, 16 payers), {report['orders']:,} single orders from {report['clients']} clients after 200 of "
        "warm-up, Anvil first, then the network. On the network the service's `TIMEBANK_RPC_URL` lists the four "
        "nodes and `TIMEBANK_CONFIRMATIONS` is 3 (README: confirmations on Clique), so a batch counts as anchored "
        "two blocks later than on Anvil. \"chain cores\" is Anvil, or the first geth node (the one the service talks to); "
        f"other processes of the machine used {report['anvil']['other_cores']:.2f} and {report['clique']['other_cores']:.2f} "
        "cores during the two loads.",
        "",
        "| chain | intake orders/s | intake p50 / p99 | accept-to-anchored p50 / p99 | anchored | service / chain cores |",
        "|---|---:|---|---|---|---|",
        *rows,
        "",
    ])


def write_network_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(NETWORK_SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(NETWORK_SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end + 1:])
    else:
        anchor = text.find("\n## Anchoring gas")
        text = text[:anchor + 1] + section + "\n" + text[anchor + 1:] if anchor >= 0 else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def verify_figures(bundles: list[dict], rpc_url: str, contract: str) -> dict:
    from scripts.verify_proof import verify_bundle

    if not bundles:
        return {"fold_rate": float("nan"), "offline_rate": float("nan"), "full_rate": float("nan"), "full_ok": 0, "full_n": 0, "depth": 0}
    parsed = [
        (bytes.fromhex(x["leaf"][2:]), [bytes.fromhex(p[2:]) for p in x["proof"]], bytes.fromhex(x["batch"]["root"][2:]))
        for x in bundles
    ]
    assert all(P.fold(leaf, proof) == root for leaf, proof, root in parsed), "a served proof does not fold to its root"
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for leaf, proof, _root in parsed:
            P.fold(leaf, proof)
        n += len(parsed)
    fold_rate = n / (time.perf_counter() - t0)

    def offline(x: dict) -> bool:  # steps 1 and 2: digest, signer, leaf, fold
        chain_id, verifying = P.parse_domain(x["domain"])
        digest = P.ServiceOrder.from_json(x["order"]).digest(P.domain_separator(chain_id, verifying))
        station = P.recover(digest, bytes.fromhex(x["signature"][2:]))
        leaf = P.leaf(digest, station)
        return P.fold(leaf, [bytes.fromhex(p[2:]) for p in x["proof"]]) == bytes.fromhex(x["batch"]["root"][2:])

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for x in bundles:
            assert offline(x)
        n += len(bundles)
    offline_rate = n / (time.perf_counter() - t0)
    ok, t0 = 0, time.perf_counter()
    for x in bundles:
        ok += verify_bundle(x, rpc_url, contract=contract).ok
    full_rate = len(bundles) / (time.perf_counter() - t0)
    depth = max(len(p) for _, p, _ in parsed)
    return {"fold_rate": fold_rate, "offline_rate": offline_rate, "full_rate": full_rate, "full_ok": ok, "full_n": len(bundles), "depth": depth}


def anchor_latency(database_url: str, order_ids: list[str]) -> dict:
    """Accept-to-anchored of `order_ids` from the service's database (SQLite or PostgreSQL)."""
    from sqlalchemy import bindparam, text

    from api.db import make_engine

    engine = make_engine(database_url, writer=False)
    rows, batch_ids = [], set()
    try:
        with engine.connect() as con:
            query = text("SELECT anchored_at - accepted_at, batch_id, status FROM orders WHERE order_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            )
            for at in range(0, len(order_ids), 500):
                rows += con.execute(query, {"ids": order_ids[at : at + 500]}).all()
            batch_ids = sorted({r[1] for r in rows if r[1] is not None})
            sizes = []
            for at in range(0, len(batch_ids), 500):
                sizes += [c for (c,) in con.execute(
                    text("SELECT count FROM batches WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),
                    {"ids": batch_ids[at : at + 500]},
                )]
    finally:
        engine.dispose()
    latencies = [r[0] for r in rows if r[0] is not None and r[2] == "anchored"]
    return {
        "orders": len(rows),
        "anchored": len(latencies),
        "statuses": dict(Counter(r[2] for r in rows)),
        "p50": pct(latencies, 0.50),
        "p99": pct(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "batches": len(sizes),
        "mean_batch": sum(sizes) / len(sizes) if sizes else 0.0,
    }


def database_size(database: Path) -> dict:
    con = sqlite3.connect(database)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        orders = con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        batches = con.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    finally:
        con.close()
    files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    size = sum(f.stat().st_size for f in files if f.exists())
    per_order = size / orders if orders else float("nan")
    return {"bytes": size, "orders": orders, "batches": batches, "bytes_per_order": per_order, "per_million": per_order * 1e6}


# ----- report --------------------------------------------------------------------------------------


def figures(report: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, PASS/MISS or '') rows."""
    s, b, a, pr, v, m, d = (report[k] for k in ("single", "bulk", "anchor", "proofs", "verify", "memory", "database"))
    plan: Plan = report["plan"]
    single_ok = s["rate"] >= TARGETS["single_rate"] and s["p99"] < TARGETS["single_p99"]
    return [
        (f"Intake single: orders/s ({plan.clients} clients)", f"{s['rate']:,.0f}", "≥ 1,500", mark(single_ok)),
        ("Intake single: latency p50 / p99", f"{s['p50'] * 1000:.1f} ms / {s['p99'] * 1000:.1f} ms", "p99 < 100 ms", mark(s["p99"] < TARGETS["single_p99"])),
        (f"Intake bulk: orders/s (items of {plan.bulk_size}, {plan.bulk_clients} clients)", f"{b['rate']:,.0f}", "≥ 5,000", mark(b["rate"] >= TARGETS["bulk_rate"])),
        ("Intake bulk: request latency p50 / p99", f"{b['p50'] * 1000:.0f} ms / {b['p99'] * 1000:.0f} ms", "", ""),
        (f"Accept-to-anchored p50 / p99 (single-intake orders, {str(report['block_time']) + '-s blocks' if report['block_time'] else 'automine'})", f"{a['p50']:.2f} s / {a['p99']:.2f} s", "p99 < 3 s", mark(a["p99"] < TARGETS["anchor_p99"])),
        ("Proof bundles served/s (GET …/proof)", f"{pr['rate']:,.0f}", "", ""),
        ("Proof fold alone (api.protocol.fold)/s", f"{v['fold_rate']:,.0f}", "", ""),
        ("Offline steps 1–2 (digest, recover, leaf, fold)/s", f"{v['offline_rate']:,.0f}", "", ""),
        ("verify_bundle, five steps against the local node/s", f"{v['full_rate']:,.1f}", "", ""),
        ("Service memory, VmHWM", f"{m['hwm_kib'] / 1024:.0f} MiB", "", ""),
        ("Database per million orders (incl. WAL, after checkpoint)", f"{d['per_million'] / 2**30:.2f} GiB ({d['bytes_per_order']:.0f} B/order)", "", ""),
    ]


def print_summary(report: dict) -> None:
    rows = figures(report)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    say("\n=== Figures ===")
    for name, value, target, verdict in rows:
        say(f"{name:<{width}}  {value:>{vwidth}}  {target:<13} {verdict}")
    if report["plan"] and report.get("quick"):
        say("(--quick: a smoke test; these figures are not benchmarks)")
    say("\n=== Profile ===")
    if report.get("profile"):
        for line in profile_lines(report["profile"]):
            say(line)
    else:
        say(report.get("profile_note", "none"))
    say(f"\nelapsed {report['elapsed']:.0f} s")


def markdown(report: dict, command: str) -> str:
    m = report["machine"]
    plan: Plan = report["plan"]
    s, b, a, pr, d, mem = (report[k] for k in ("single", "bulk", "anchor", "proofs", "database", "memory"))
    out = [
        "# Benchmarks",
        "",
        "Produced by `scripts/bench.py`, which starts everything itself on loopback: its own Anvil "
        f"({'a block every %d s' % report['block_time'] if report['block_time'] else 'automine'} during the measurements), "
        "a fresh TimeBank deployment, the service as a subprocess (`python -m api`, uvloop, "
        "`ETH_HASH_BACKEND=pysha3`, its own SQLite file, default batch settings), a world registered through the API, "
        "and every order signed before any timing starts. The load generator shares the machine with the service "
        "and Anvil; its own CPU use is shown."
        + (f" Extra Anvil flags: `{' '.join(report['anvil_extra'])}`." if report.get("anvil_extra") else ""),
        "",
        f"Code: {report['code']}. Command: `{command}`" + ("  \n**--quick: a smoke test; these figures are not benchmarks.**" if report.get("quick") else ""),
        "",
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} memory; Python {m['python']}, SQLite {m['sqlite']}, {m['os']}. "
        f"Date: {time.strftime('%Y-%m-%d')}. Cores busy with other processes just before the start: {report['busy_before']:.2f} "
        "(each phase's figure is in the details)."
        + (
            f" **The machine was shared**: other processes used up to {busiest:.2f} of its {m['nproc']} cores during the "
            "phases, so these figures are lower than an idle machine would give."
            if (busiest := max(report["single"]["other_cores"], report["bulk"]["other_cores"], report["proofs"]["other_cores"])) > QUIET_CORES
            else ""
        ),
        "",
        f"World: 1 district, {plan.stations} stations, {plan.volunteers} volunteers, {plan.payers} payers. "
        f"Orders: {plan.warmup} warm-up, {plan.single} single, {plan.bulk} bulk, {plan.profile} under the profiler.",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
    ]
    out += [f"| {n} | {v} | {t} | {x} |" for n, v, t, x in figures(report)]
    out += [
        "",
        "## Details",
        "",
        f"- **Intake single**: {s['orders']:,} orders accepted in {s['wall']:.1f} s (statuses {s['statuses']}); max latency "
        f"{s['max'] * 1000:.0f} ms. CPU while it ran: service {s['service_cores']:.2f} cores, load generator "
        f"{s['client_cores']:.2f}, Anvil {s['anvil_cores']:.2f}, other processes of the machine {s['other_cores']:.2f}. "
        f"Orders waiting to be anchored when the load stopped: {s['backlog']:,}; anchoring caught up {s['drain']:.1f} s later. "
        "Orders/s by tenth of the run (the store grows as it goes): " + ", ".join(f"{x:,.0f}" for x in s["by_tenth"]) + ".",
        f"- **Intake bulk**: {b['orders']:,} orders in {b['requests']} requests in {b['wall']:.1f} s (statuses {b['statuses']}). "
        f"CPU: service {b['service_cores']:.2f} cores, load generator {b['client_cores']:.2f}, Anvil {b['anvil_cores']:.2f}, "
        f"other processes {b['other_cores']:.2f}. "
        f"Waiting when the load stopped: {b['backlog']:,}; caught up {b['drain']:.1f} s later.",
        f"- **Accept-to-anchored** (`anchored_at − accepted_at` in the service's database, the single-intake orders): "
        f"p50 {a['p50']:.2f} s, p99 {a['p99']:.2f} s, max {a['max']:.2f} s; {a['anchored']:,} of {a['orders']:,} anchored in "
        f"{a['batches']} batches of {a['mean_batch']:.0f} orders on average.",
        f"- **Proofs**: {pr['served']:,} bundles served at {pr['rate']:,.0f}/s (p50 {pr['p50'] * 1000:.1f} ms, p99 "
        f"{pr['p99'] * 1000:.1f} ms, {plan.clients} clients; service {pr['service_cores']:.2f} cores, other processes "
        f"{pr['other_cores']:.2f}); `verify_bundle` verified {report['verify']['full_ok']} of "
        f"{report['verify']['full_n']} bundles, one after another, each with its own RPC calls; proof depth "
        f"{report['verify']['depth']}.",
        f"- **Memory**: VmHWM {mem['hwm_kib'] / 1024:.0f} MiB; VmRSS after the single phase {mem['rss_single_kib'] / 1024:.0f} MiB, "
        f"after bulk {mem['rss_bulk_kib'] / 1024:.0f} MiB, after proofs {mem['rss_proofs_kib'] / 1024:.0f} MiB, at the end "
        f"{mem['rss_end_kib'] / 1024:.0f} MiB.",
        f"- **Database**: {d['bytes'] / 2**20:.1f} MiB for {d['orders']:,} orders and {d['batches']:,} batches, all anchored "
        f"(batch trees included) = {d['bytes_per_order']:.0f} bytes per order.",
        "",
        "## Where the service's time goes (py-spy, single-intake load)",
        "",
    ]
    if report.get("profile"):
        out += [
            f"The single-intake load twice more ({plan.profile:,} orders in all) with `py-spy record --threads "
            "--nonblocking --format raw` attached to the service: once sampling running threads only (CPU), once with "
            "`--idle` (wall clock, waiting included).",
            "",
            "```",
            *profile_lines(report["profile"]),
            "```",
        ]
    else:
        out.append(report.get("profile_note", "No profile."))
    out.append("")
    return "\n".join(out)


# ----- --compare: the `make run` configuration beside one process, on SQLite and PostgreSQL ----------

COMPARE_SECTION = "## Intake: the `make run` configuration beside one process"

# wrk's Lua: each of its threads sends the pre-signed orders of its own file (one JSON body a line), each
# once, over its connections; once every order of the thread is answered it writes a marker file (the
# benchmark then stops wrk). A connection with nothing left to send asks for a 400 the worker answers
# itself (a malformed order id), counted apart.
WRK_SCRIPT = r"""
local threads, counter = {}, 1
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
function init(args)
  dir = args[1]
  bodies = {}
  for line in io.lines(dir .. "/orders-" .. id .. ".txt") do bodies[#bodies + 1] = line end
  sent, answered, extra, statuses, marked = 0, 0, 0, {}, false
  headers = {["Content-Type"] = "application/json"}
end
function request()
  if id == 1 and not verified then
    -- wrk builds one request of its first thread before it connects, to count them; not sent
    verified = true
    return wrk.format("POST", "/v1/orders", headers, bodies[1])
  end
  if sent >= #bodies then
    return wrk.format("GET", "/v1/orders/0x00")
  end
  sent = sent + 1
  return wrk.format("POST", "/v1/orders", headers, bodies[sent])
end
function response(status, hdrs, body)
  if status == 400 then
    extra = extra + 1
  else
    answered = answered + 1
    statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
  end
  if answered >= #bodies and not marked then
    marked = true
    local f = io.open(dir .. "/done-" .. id, "w")
    f:write("done")
    f:close()
  end
end
function done(summary, latency, requests)
  local counts, parts = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
    counts["extra"] = (counts["extra"] or 0) + t:get("extra")
  end
  for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  io.write(string.format('WRK-RESULT {"p50":%d,"p99":%d,"max":%d,"duration":%d,"requests":%d,"counts":{%s}}\n',
    latency:percentile(50), latency:percentile(99), latency.max, summary.duration, summary.requests,
    table.concat(parts, ",")))
end
"""


def run_wrk(port: int, bodies: list[bytes], workdir: Path, *, service_pid: int, anvil_pid: int, connections: int = 32,
            threads: int = 2, timeout: float = 900.0) -> Load:
    """The single-intake load with Debian's `wrk` (C, `threads` threads, `connections` connections), each
    pre-signed order sent once; the figures as `run_load` gives them (latency percentiles from wrk)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `make bench-tools` installs Debian's wrk")
    job = Path(tempfile.mkdtemp(prefix="wrk-", dir=workdir))
    (job / "orders.lua").write_text(WRK_SCRIPT)
    for t in range(threads):
        (job / f"orders-{t + 1}.txt").write_bytes(b"\n".join(bodies[t::threads]) + b"\n")
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(timeout)}s", "--timeout", "30s",
               "-s", str(job / "orders.lua"), f"http://{HOST}:{port}", "--", str(job)]  # fmt: skip
    result = Load()
    s0, a0, m0 = cpu_seconds(service_pid), cpu_seconds(anvil_pid), machine_busy()
    t0 = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client_cpu = 0.0
    try:
        while not all((job / f"done-{t + 1}").exists() for t in range(threads)):
            if process.poll() is not None:
                result.timed_out = True
                break
            try:
                client_cpu = cpu_seconds(process.pid)
            except Exception:
                pass
            time.sleep(0.01)
        result.wall = time.perf_counter() - t0
        result.machine_cpu = machine_busy() - m0
        result.service_cpu = cpu_seconds(service_pid) - s0
        result.anvil_cpu = cpu_seconds(anvil_pid) - a0
        client_cpu = max(client_cpu, cpu_seconds(process.pid) if process.poll() is None else client_cpu)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    result.client_cpu = client_cpu
    line = next((x for x in output.splitlines() if x.startswith("WRK-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    figures = json.loads(line[len("WRK-RESULT "):])
    for key, count in figures["counts"].items():
        if not key.startswith("extra"):
            result.statuses[int(key)] += count
    result.wrk = figures  # type: ignore[attr-defined]
    return result


@dataclass
class Config:
    label: str  # "make run", "one process"
    database: str  # "SQLite", "PostgreSQL"
    env: dict[str, str]


def measure_config(config: Config, args: argparse.Namespace, database_url: str | None) -> dict:
    """Single intake (the built-in generator, or wrk with --wrk), bulk intake and accept-to-anchored of one
    configuration, everything started here; afterwards every accepted order must be anchored."""
    from eth_account import Account
    from web3 import Web3

    from scripts.compile import load_artifact
    from scripts.deploy import deploy

    workdir = Path(tempfile.mkdtemp(prefix="timebank-bench-compare-"))
    (workdir / "deployments").mkdir()
    anvil: AnvilHandle | None = None
    service: ServiceProcess | None = None
    orders = args.orders or (300 if args.quick else 20_000)
    bulk_orders = args.bulk_orders or (1000 if args.quick else orders)
    bulk_size = 250 if args.quick else args.bulk_size
    clients = args.clients or 32
    try:
        anvil = start_bench_anvil(workdir / "anvil", args.anvil_arg)
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        city, relayer = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
        address, _receipt = deploy(w3, load_artifact("TimeBank"), city.key, city.address, relayer.address)
        env = {**dict(kv.split("=", 1) for kv in args.env), **config.env}
        if database_url is not None:
            env["TIMEBANK_DATABASE_URL"] = database_url
        service = ServiceProcess(anvil.url, address, workdir, "bench", cwd=workdir, **env).start(timeout=120)
        client = httpx.Client(base_url=service.url, timeout=120)
        warmup = 500
        total = warmup + orders + bulk_orders
        # the service's own settings: a station's orders stay under its ceiling of minutes a day
        layout = Layout.for_total(total, 128, 32, COMPARE_STATIONS, station_daily=int(env.get("TIMEBANK_STATION_DAILY_MINUTES", Settings.model_fields["station_daily_minutes"].default)))
        per_payer = -(-total // 32) * layout.minutes
        world = register_world(client, 128, 32, COMPARE_STATIONS, grant=per_payer * 2)
        signed = sign_orders(world, layout, range(total), workers=min(2, os.cpu_count() or 1))
        if args.block_time > 0:
            rpc(anvil.url, "evm_setIntervalMining", [args.block_time])
        load = dict(service_pid=service.pid, anvil_pid=anvil.pid)
        run_load(service.port, [post_request(service.port, "/v1/orders", b) for _, b in signed[:warmup]], clients, **load)
        wait_drained(client, 120)
        single, bulk = signed[warmup : warmup + orders], signed[warmup + orders :]
        generator = "wrk" if args.wrk else "built-in"
        say(f"[{config.database}, {config.label}] intake, single ({generator}): {len(single)} orders, {clients} connections ...")
        if args.wrk:
            r = run_wrk(service.port, [b for _, b in single], workdir, connections=clients, timeout=args.phase_timeout, **load)
            p50, p99, worst = (r.wrk["p50"] / 1e6, r.wrk["p99"] / 1e6, r.wrk["max"] / 1e6)
        else:
            r = run_load(service.port, [post_request(service.port, "/v1/orders", b) for _, b in single], clients,
                         timeout=args.phase_timeout, **load)
            p50, p99, worst = pct(r.latencies, 0.5), pct(r.latencies, 0.99), max(r.latencies, default=float("nan"))
        accepted = r.statuses.get(201, 0)
        result: dict[str, Any] = {
            "label": config.label, "database": config.database, "env": config.env, "generator": generator,
            "single": {"orders": accepted, "statuses": dict(r.statuses), "errors": r.errors, "wall": r.wall,
                       "rate": accepted / r.wall, "p50": p50, "p99": p99, "max": worst,
                       "service_cores": r.cores(r.service_cpu), "client_cores": r.cores(r.client_cpu),
                       "anvil_cores": r.cores(r.anvil_cpu), "other_cores": r.others},
        }
        s = result["single"]
        say(f"    {s['rate']:,.0f} orders/s; p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; statuses {s['statuses']}; "
            f"service {s['service_cores']:.2f} cores, generator {s['client_cores']:.2f}, anvil {s['anvil_cores']:.2f}, "
            f"others {s['other_cores']:.2f}")
        s["drain"], s["drained"] = wait_drained(client, 300)
        bodies = [b for _, b in bulk]
        requests = [post_request(service.port, "/v1/orders/bulk", b'{"items":[' + b",".join(bodies[i : i + bulk_size]) + b"]}")
                    for i in range(0, len(bodies), bulk_size)]
        say(f"[{config.database}, {config.label}] intake, bulk: {len(bodies)} orders in {len(requests)} requests ...")
        r = run_load(service.port, requests, args.bulk_clients, ok=(200,), marker=b'"httpStatus":201', timeout=args.phase_timeout, **load)
        result["bulk"] = b = {"orders": r.counted, "requests": r.requests, "statuses": dict(r.statuses), "wall": r.wall,
                              "rate": r.counted / r.wall, "p50": pct(r.latencies, 0.5), "p99": pct(r.latencies, 0.99),
                              "service_cores": r.cores(r.service_cpu), "other_cores": r.others}
        say(f"    {b['rate']:,.0f} orders/s; request p50 {b['p50'] * 1000:.0f} ms, p99 {b['p99'] * 1000:.0f} ms; "
            f"service {b['service_cores']:.2f} cores, others {b['other_cores']:.2f}")
        b["drain"], b["drained"] = wait_drained(client, 300)
        result["memory_kib"] = proc_status_kib(service.pid, "VmHWM")
        client.close()
        service.stop()
        result["anchor"] = anchor_latency(service.base_env["TIMEBANK_DATABASE_URL"], [oid for oid, _ in single])
        every = anchor_latency(service.base_env["TIMEBANK_DATABASE_URL"], [oid for oid, _ in single + bulk])
        result["all"] = {"accepted": s["orders"] + b["orders"], "anchored": every["anchored"], "statuses": every["statuses"]}
        a = result["anchor"]
        say(f"    accept-to-anchored p50 {a['p50']:.2f} s, p99 {a['p99']:.2f} s; accepted {result['all']['accepted']}, "
            f"anchored {every['anchored']} ({every['statuses']})")
        return result
    finally:
        if service is not None:
            service.stop()
        if anvil is not None:
            stop_anvil(anvil)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_compare(args: argparse.Namespace) -> dict:
    """Every configuration of the comparison in one run: on SQLite, then on PostgreSQL (a cluster started
    here, scripts/postgres.py, a fresh database per configuration), the `make run` configuration (the
    service's defaults) beside one process (TIMEBANK_WORKERS=1)."""
    from scripts import postgres as PG

    configs = [("make run", {}), ("one process", {"TIMEBANK_WORKERS": "1"})]
    report: dict[str, Any] = {"machine": machine(), "code": args.code_label or code_label(), "block_time": args.block_time,
                              "busy_before": others_cores(2.0), "results": []}
    for label, env in configs:
        report["results"].append(measure_config(Config(label, "SQLite", env), args, None))
    if args.no_postgres:
        return report
    cluster = Path(tempfile.mkdtemp(prefix="timebank-bench-pg-"))
    cluster.chmod(0o755)  # run as root, the server runs as `postgres`, who must reach its directory
    handle = PG.start_postgres(cluster / "pg", throwaway=True)
    try:
        for n, (label, env) in enumerate(configs):
            name = f"bench{n}"
            with PG._connect(handle) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            report["results"].append(measure_config(Config(label, "PostgreSQL", env), args, handle.url_for(name)))
    finally:
        PG.stop_postgres(handle, mode="immediate")
        shutil.rmtree(cluster, ignore_errors=True)
    return report


def compare_markdown(report: dict, command: str) -> str:
    m = report["machine"]
    results = report["results"]
    generator = results[0]["generator"] if results else "built-in"
    out = [
        COMPARE_SECTION,
        "",
        f"Code: {report['code']}. Command: `{command}`. Machine: {m['nproc']} CPUs, {m['cpu']}; Python {m['python']}. "
        f"Date: {time.strftime('%Y-%m-%d')}. Cores busy with other processes just before the start: {report['busy_before']:.2f}.",
        "",
        "Each row starts its own Anvil (a block every %d s while measuring), deploys, starts the service as `make run` "
        "does (`python -m api`, the defaults of its settings, here `TIMEBANK_WORKERS` %s), registers a world (128 "
        "volunteers, 32 payers, %d stations, each order's minutes set so that no station passes its ceiling of minutes "
        "a day) and pre-signs every order. Single intake: %s, 32 connections%s, each order "
        "sent once. Bulk: items of %d, %d clients. Afterwards every accepted order is checked anchored in the "
        "service's database." % (
            report["block_time"], "unset (the `make run` configuration) or 1 (one process)", COMPARE_STATIONS,
            "Debian's `wrk` (C, 2 threads, a Lua script)" if generator == "wrk" else "the built-in asyncio generator",
            "" if generator == "wrk" else " (its own CPU is shown)", 250 if report.get("quick") else report.get("bulk_size", 1000),
            report.get("bulk_clients", 4),
        ),
        "",
        "| database | configuration | single orders/s | p50 / p99 | bulk orders/s | accept-to-anchored p50 / p99 | accepted = anchored | service cores (single) | others' cores |",
        "|---|---|---:|---|---:|---|---|---:|---:|",
    ]
    for r in results:
        s, b, a, every = r["single"], r["bulk"], r["anchor"], r["all"]
        out.append(
            f"| {r['database']} | {r['label']} | {s['rate']:,.0f} | {s['p50'] * 1000:.1f} ms / {s['p99'] * 1000:.1f} ms | "
            f"{b['rate']:,.0f} | {a['p50']:.2f} s / {a['p99']:.2f} s | "
            f"{'yes' if every['accepted'] == every['anchored'] else 'NO'} ({every['anchored']:,} of {every['accepted']:,}) | "
            f"{s['service_cores']:.2f} | {s['other_cores']:.2f} |"
        )
    out += ["", "Targets: single ≥ 1,500 orders/s with p99 < 100 ms, bulk ≥ 5,000 orders/s, accept-to-anchored p99 < 3 s.", ""]
    for r in results:
        s = r["single"]
        verdict = [
            f"single {mark(s['rate'] >= TARGETS['single_rate'])}",
            f"p99 {mark(s['p99'] < TARGETS['single_p99'])}",
            f"bulk {mark(r['bulk']['rate'] >= TARGETS['bulk_rate'])}",
            f"anchored p99 {mark(r['anchor']['p99'] < TARGETS['anchor_p99'])}",
        ]
        out.append(f"- {r['database']}, {r['label']}: " + ", ".join(verdict) + f"; single statuses {s['statuses']}, "
                   f"bulk statuses {r['bulk']['statuses']}, service memory (VmHWM, all processes) "
                   f"{(r['memory_kib'] or 0) / 1024:.0f} MiB.")
    out.append("")
    return "\n".join(out)


def write_section(path: Path, heading: str, section: str) -> None:
    """Writes (or replaces) the section under `heading` of `path`, the rest as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if heading in text:
        before, rest = text.split(heading, 1)
        after = rest.split("\n## ", 1)
        text = before + section + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    # stopped (SIGTERM): the `finally` blocks stop what was started (the service, Anvil, wrk)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds): a smoke test, not a benchmark")
    parser.add_argument("--orders", type=int, default=None, help="orders of the single-intake phase (default 60000; --quick 300)")
    parser.add_argument("--bulk-orders", type=int, default=None, help="orders of the bulk phase (default: --orders)")
    parser.add_argument("--profile-orders", type=int, default=None, help="orders of the profiled run (default: --orders / 3)")
    parser.add_argument("--bulk-size", type=int, default=1000, help="items per bulk request (default 1000)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients of the single phase (default 32)")
    parser.add_argument("--bulk-clients", type=int, default=4, help="concurrent clients of the bulk phase (default 4)")
    parser.add_argument("--block-time", type=int, default=1, help="seconds between blocks while measuring (0: automine)")
    parser.add_argument("--anvil-arg", action="append", default=[], metavar="ARG",
                        help="extra Anvil flag, e.g. --anvil-arg=--disable-min-priority-fee (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="TIMEBANK_X=V", help="extra service setting (repeatable)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help=f"first wait up to SECONDS for other processes to use under {QUIET_CORES} cores")
    parser.add_argument("--code-label", default=None, help="what code is measured, for the report (default: from git)")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="seconds after which a load phase is cut short")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (database, logs, raw profile)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as Markdown here (e.g. docs/BENCHMARKS.md)")
    parser.add_argument("--network", action="store_true",
                        help="single intake and accept-to-anchored on Anvil and on the four-node Clique network (make geth)")
    parser.add_argument("--compare", action="store_true",
                        help="single and bulk intake, the make-run configuration beside one process, on SQLite and PostgreSQL")
    parser.add_argument("--wrk", action="store_true", help="with --compare: the single-intake load from Debian's wrk")
    parser.add_argument("--no-postgres", action="store_true", help="with --compare: SQLite only")
    args = parser.parse_args(argv)
    for kv in args.env:
        if "=" not in kv or not kv.startswith("TIMEBANK_"):
            parser.error(f"--env {kv!r}: expected TIMEBANK_NAME=VALUE")
    if args.compare:
        report = run_compare(args)
        report.update(quick=args.quick, bulk_size=args.bulk_size, bulk_clients=args.bulk_clients)
        section = compare_markdown(report, ("python -m scripts.bench " + shlex.join(argv if argv is not None else sys.argv[1:])).strip())
        say("\n" + section)
        if args.out is not None:
            write_section(args.out, COMPARE_SECTION, section)
            say(f"wrote the section {COMPARE_SECTION!r} of {args.out}")
        return 0
    if args.network:
        report = run_network(args)
        if args.out is not None:
            command = "python -m scripts.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
            write_network_section(args.out, network_markdown(report, command.strip()))
            say(f"wrote the section {NETWORK_SECTION!r} of {args.out}")
        return 0
    report = run(args)
    report["quick"] = args.quick
    print_summary(report)
    if args.out is not None:
        command = "python -m scripts.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(report, command.strip()))
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
