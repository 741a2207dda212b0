"""The embedded development chain: an Anvil node whose state survives restarts, kills and power cuts.

    python -m scripts.chain start|stop|status

`start` runs Anvil detached on 127.0.0.1:$TIMEBANK_ANVIL_PORT (default 8545),
chain id 31337, mining one block per transaction (automine) by default, or a
block every $TIMEBANK_BLOCK_TIME seconds when that is set above 0. It loads the
newest good snapshot of node/data/snapshots/ (a file that does not parse is set
aside and the one before it is used), says which and how many blocks were lost
since, and starts a snapshotter: a small detached process that asks Anvil for its
state every $TIMEBANK_SNAPSHOT_SECONDS (default 2) and writes it whole to a
temporary file, fsyncs it and renames it into the next numbered snapshot (the last
few are kept). A kill or a power cut at any moment leaves the previous snapshot
whole, so at most the snapshot interval is lost. Anvil's own `--state` file is not
used: Anvil rewrites it in place (truncate, then write), and a kill during that
write leaves it unreadable. The log is node/data/anvil.log, the pids
node/data/anvil.pid and node/data/snapshotter.pid. `stop` stops the snapshotter,
writes a last snapshot and sends Anvil SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.rpc import Rpc, RpcError

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "node" / "data"
HOST = "127.0.0.1"
DEFAULT_PORT = 8545
DEFAULT_BLOCK_TIME = 0
DEV_CHAIN_ID = 31337
DEFAULT_SNAPSHOT_SECONDS = 2.0  # between snapshots while the chain runs: the most a crash loses
KEEP_SNAPSHOTS = 3  # good snapshots kept (the newest and the ones before it, in case it is damaged)
SNAPSHOTS = "snapshots"  # under the state directory: state-<n>.json, the newest the highest n

# Anvil's development accounts, from the mnemonic "test test ... test junk"
# (m/44'/60'/0'/0/i). Public knowledge: never use them on a real network.
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class ChainError(RuntimeError):
    """Anvil could not be found, started or stopped."""


@dataclass
class Restored:
    """What a start loaded: the snapshot (None: a new chain), its block, the last block the snapshotter
    saw before the node went down (None: never recorded), and the snapshots set aside as damaged."""

    snapshot: Path | None
    block: int | None
    last_known_block: int | None
    skipped: list[tuple[Path, str]]

    @property
    def blocks_lost(self) -> int | None:
        if self.last_known_block is None:
            return None
        return max(0, self.last_known_block - (self.block if self.block is not None else -1))

    def describe(self, root: Path | None = None) -> str:
        def name(path: Path) -> str:
            return str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)

        said = [f"set aside {name(path)} ({reason})" for path, reason in self.skipped]
        if self.snapshot is None:
            said.append("no snapshot: a new chain")
        else:
            said.append(f"loaded {name(self.snapshot)} (block {self.block})")
        if self.last_known_block is not None:
            # the snapshotter reads the head at most half a second apart: a block made in that time is not counted
            said.append(f"at least {self.blocks_lost} blocks lost (the last block seen before was {self.last_known_block})")
        return "; ".join(said)


@dataclass
class AnvilHandle:
    pid: int
    port: int
    state_dir: Path
    process: subprocess.Popen | None = None  # set when this process started it
    restored: Restored | None = None  # set by start_anvil

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def anvil_binary() -> str:
    """The platform binary shipped in node_modules/@foundry-rs, else the npm launcher, else PATH."""
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), "")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), ""
    )
    candidates = [
        ROOT / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil",
        ROOT / "node_modules" / ".bin" / "anvil",
    ]
    for path in candidates:
        if os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("anvil")
    if found is None:
        raise ChainError("anvil not found: run `make setup` (it installs the npm package @foundry-rs/anvil)")
    return found


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0):
    """One JSON-RPC call (`scripts/rpc.py`); returns its result. ChainError for the node's error, an OSError
    when it does not answer."""
    try:
        return Rpc(url, timeout).call(method, *(params or []))
    except RpcError as exc:
        raise ChainError(str(exc)) from None


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _log_tail(state_dir: Path, lines: int = 15) -> str:
    try:
        text = (state_dir / "anvil.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ----- snapshots: the chain's state written whole, atomically, as numbered good copies -------------


def snapshot_dir(state_dir: Path) -> Path:
    return Path(state_dir) / SNAPSHOTS


def snapshots(state_dir: Path) -> list[Path]:
    """The numbered snapshots of `state_dir`, newest first."""
    found = []
    for path in snapshot_dir(state_dir).glob("state-*.json"):
        number = path.name[len("state-") : -len(".json")]
        if number.isdigit():
            found.append((int(number), path))
    return [path for _n, path in sorted(found, reverse=True)]


def snapshot_block(path: Path) -> int:
    """The block a snapshot holds the chain up to; `ValueError` when the file is not a whole Anvil
    state (truncated, empty, not JSON, or JSON of something else)."""
    try:
        state = json.loads(Path(path).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON: {str(exc)[:120]}") from None
    if not isinstance(state, dict) or not {"block", "accounts", "blocks"} <= state.keys():
        raise ValueError("not an Anvil state (block, accounts, blocks missing)")
    number = state.get("best_block_number", state["block"].get("number") if isinstance(state["block"], dict) else None)
    try:
        return int(number, 16) if isinstance(number, str) else int(number)
    except (TypeError, ValueError):
        raise ValueError(f"not an Anvil state (block number {number!r})") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """`data` into `path` whole or not at all: a temporary file beside it, fsync, rename, fsync the directory."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_snapshot(url: str, state_dir: Path, keep: int = KEEP_SNAPSHOTS, timeout: float = 120.0) -> tuple[Path, int]:
    """Asks the node at `url` for its whole state (`anvil_dumpState`) and writes it as the next numbered
    snapshot, atomically; keeps the newest `keep`. Returns the snapshot and its block.

    The temporary file (`.state-<n>.json.tmp`) is created before the node is asked, so one that exists
    means a snapshot is being taken; a kill at any point leaves at most that file behind, which the next
    start removes."""
    directory = snapshot_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    existing = snapshots(state_dir)
    number = int(existing[0].name[len("state-") : -len(".json")]) + 1 if existing else 1
    path = directory / f"state-{number:08d}.json"
    tmp = directory / f".{path.name}.tmp"
    try:
        with open(tmp, "wb") as f:
            dumped = rpc(url, "anvil_dumpState", timeout=timeout)
            data = bytes.fromhex(dumped[2:] if dumped.startswith("0x") else dumped)
            if data[:2] == b"\x1f\x8b":  # Anvil gzips the JSON; --load-state reads it plain
                data = gzip.decompress(data)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        block = snapshot_block(tmp)
        os.replace(tmp, path)
        _fsync_dir(directory)
    finally:
        tmp.unlink(missing_ok=True)
    for old in snapshots(state_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path, block


def record_head(state_dir: Path, block: int) -> None:
    """Writes the last block seen (head.json beside the snapshots): what a later start compares with."""
    directory = snapshot_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / "head.json", json.dumps({"block": block, "at": time.time()}).encode())


def last_known_block(state_dir: Path) -> int | None:
    try:
        return int(json.loads((snapshot_dir(state_dir) / "head.json").read_text())["block"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose_snapshot(state_dir: Path) -> Restored:
    """The newest snapshot that is a whole Anvil state. Damaged ones (newer than it) are renamed
    `*.bad` and listed in `skipped`; leftover temporary files of interrupted snapshots are removed. A
    `state.json` of Anvil's own `--state` (written before snapshots existed) is taken in as the first
    snapshot when there is none."""
    directory = snapshot_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    legacy = Path(state_dir) / "state.json"
    if not snapshots(state_dir) and legacy.is_file():
        with contextlib.suppress(ValueError):
            snapshot_block(legacy)
            _write_atomically(directory / "state-00000001.json", legacy.read_bytes())
    skipped: list[tuple[Path, str]] = []
    for path in snapshots(state_dir):
        try:
            block = snapshot_block(path)
        except ValueError as exc:
            bad = path.with_name(path.name + ".bad")
            path.replace(bad)
            skipped.append((bad, str(exc)))
            continue
        return Restored(path, block, last_known_block(state_dir), skipped)
    return Restored(None, None, last_known_block(state_dir), skipped)


# ----- the node ---------------------------------------------------------------------------------


def start_anvil(
    port: int,
    state_dir: Path,
    block_time: int,
    chain_id: int = DEV_CHAIN_ID,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> AnvilHandle:
    """Start Anvil detached from the newest good snapshot of `state_dir` (`choose_snapshot`), keeping
    its log and pid there; wait until it answers. `handle.restored` says what was loaded.

    `block_time` 0 mines one block per transaction (automine); `extra_args` go to Anvil as they are
    (e.g. ["--disable-min-priority-fee"]). Snapshots are written by `write_snapshot`: by `stop_anvil`
    on the way out, and every few seconds by the snapshotter `start_chain` adds."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if _port_in_use(port):
        raise ChainError(f"port {port} on {HOST} is already in use")
    restored = choose_snapshot(state_dir)
    command = [
        anvil_binary(),
        "--host", HOST,
        "--port", str(port),
        "--chain-id", str(chain_id),
    ]  # fmt: skip
    if restored.snapshot is not None:
        command += ["--load-state", str(restored.snapshot)]
    if block_time > 0:
        command += ["--block-time", str(block_time)]
    command += extra_args
    with open(state_dir / "anvil.log", "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {' '.join(command)}\n".encode())
        log.write(f"=== {restored.describe()}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (state_dir / "anvil.pid").write_text(f"{process.pid}\n")
    handle = AnvilHandle(process.pid, port, state_dir, process, restored)
    try:
        _wait_until_answering(handle, chain_id, timeout)
    except ChainError as exc:
        if restored.snapshot is None or "--load-state" not in str(exc):
            raise
        # Anvil refused a snapshot that parses as JSON: set it aside and start from the one before
        restored.snapshot.replace(restored.snapshot.with_name(restored.snapshot.name + ".bad"))
        handle = start_anvil(port, state_dir, block_time, chain_id, timeout, extra_args)
        handle.restored.skipped[:0] = [*restored.skipped, (restored.snapshot, f"refused by anvil: {str(exc)[-200:]}")]
        return handle
    if restored.block is not None:
        record_head(state_dir, max(restored.block, int(rpc(handle.url, "eth_blockNumber"), 16)))
    return handle


def _wait_until_answering(handle: AnvilHandle, chain_id: int, timeout: float) -> None:
    """Poll eth_chainId until it answers `chain_id`; stop Anvil and raise if it fails or exits."""
    deadline = time.monotonic() + timeout
    while True:
        if handle.process.poll() is not None:
            (handle.state_dir / "anvil.pid").unlink(missing_ok=True)
            log = _log_tail(handle.state_dir)
            raise ChainError(f"anvil exited with code {handle.process.returncode}:\n{log}")
        try:
            answered = int(rpc(handle.url, "eth_chainId", timeout=1), 16)
        except (OSError, ValueError):
            answered = None
        if answered == chain_id:
            return
        if answered is not None:
            stop_anvil(handle)
            raise ChainError(f"anvil answered chain id {answered}, want {chain_id}")
        if time.monotonic() > deadline:
            stop_anvil(handle)
            raise ChainError(f"anvil did not answer on {handle.url} within {timeout:.0f}s")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_anvil(handle: AnvilHandle, timeout: float = 60.0) -> None:
    """Stop the snapshotter of `handle.state_dir` if one runs, write a last snapshot, then SIGTERM Anvil
    and wait for it to exit.

    Escalates to SIGKILL after `timeout` seconds; the last snapshot is already written then."""
    stop_snapshotter(handle.state_dir)
    try:
        write_snapshot(handle.url, handle.state_dir)
    except (OSError, ValueError, ChainError) as exc:
        print(f"anvil (pid {handle.pid}): no last snapshot ({exc}); the previous one stays", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(handle.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (handle.process.poll() is None) if handle.process else _alive(handle.pid):
        if time.monotonic() > deadline:
            print(f"anvil (pid {handle.pid}) ignored SIGTERM for {timeout:.0f}s; killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)
    pid_file = handle.state_dir / "anvil.pid"
    if pid_file.is_file() and pid_file.read_text().strip() == str(handle.pid):
        pid_file.unlink()


# ----- the snapshotter: a detached process beside Anvil, outliving whoever started it ----------------


def snapshot_seconds() -> float:
    return float(os.environ.get("TIMEBANK_SNAPSHOT_SECONDS", DEFAULT_SNAPSHOT_SECONDS))


def start_chain(port: int, state_dir: Path, block_time: int, interval: float | None = None, **kwargs) -> AnvilHandle:
    """What `python -m scripts.chain start` (`make chain`, `make run`) does: Anvil from the newest good
    snapshot (`start_anvil`), and its snapshotter every `interval` seconds (default
    $TIMEBANK_SNAPSHOT_SECONDS, else 2)."""
    handle = start_anvil(port, state_dir, block_time, **kwargs)
    try:
        start_snapshotter(handle, snapshot_seconds() if interval is None else interval)
    except BaseException:
        stop_anvil(handle)
        raise
    return handle


def running_snapshotter(state_dir: Path) -> int | None:
    """The pid of the snapshotter recorded in `state_dir`, if that process is still one."""
    try:
        pid = int((Path(state_dir) / "snapshotter.pid").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ValueError):
        return None
    return pid if "scripts.chain" in argv and "snapshotter" in argv else None


def start_snapshotter(handle: AnvilHandle, interval: float) -> int:
    """Starts (or replaces) the snapshotter of `handle`'s Anvil, detached; returns its pid."""
    stop_snapshotter(handle.state_dir)
    command = [
        sys.executable, "-m", "scripts.chain", "snapshotter",
        "--url", handle.url, "--state-dir", str(handle.state_dir), "--anvil-pid", str(handle.pid),
        "--interval", str(interval),
    ]  # fmt: skip
    with open(Path(handle.state_dir) / "anvil.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (Path(handle.state_dir) / "snapshotter.pid").write_text(f"{process.pid}\n")
    return process.pid


def stop_snapshotter(state_dir: Path, timeout: float = 30.0) -> None:
    """SIGTERM the snapshotter (it finishes the snapshot it is writing) and wait for it to exit."""
    pid = running_snapshotter(state_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and not _zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid) and not _zombie(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    (Path(state_dir) / "snapshotter.pid").unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    """Exited but not reaped by its parent (a snapshotter this process started, in tests)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


def run_snapshotter(url: str, state_dir: Path, anvil_pid: int, interval: float) -> int:
    """The snapshotter's loop: records the head block as it moves (head.json), and every `interval`
    seconds, when the chain moved since the last one, writes a snapshot. Exits when Anvil is gone or on
    SIGTERM (after the snapshot it is writing)."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    snapshot = snapshots(state_dir)
    snapshotted = snapshot_block(snapshot[0]) if snapshot else -1
    seen, due = -1, time.monotonic() + interval
    while not stopping and _alive(anvil_pid) and not _zombie(anvil_pid):
        try:
            head = int(rpc(url, "eth_blockNumber", timeout=5), 16)
            if head != seen:
                record_head(state_dir, head)
                seen = head
            if time.monotonic() >= due and head != snapshotted:
                started = time.monotonic()
                path, snapshotted = write_snapshot(url, state_dir)
                took = time.monotonic() - started
                if took > interval / 2:
                    print(f"snapshot {path.name} (block {snapshotted}, {path.stat().st_size:,} bytes) took {took:.1f}s",
                          flush=True)  # fmt: skip
        except (OSError, ValueError, ChainError) as exc:
            print(f"snapshotter: {exc}", flush=True)
        if time.monotonic() >= due:
            due = time.monotonic() + interval
        time.sleep(max(0.0, min(0.5, due - time.monotonic(), interval / 4)))
    return 0


def running_anvil(state_dir: Path = DATA_DIR) -> AnvilHandle | None:
    """The Anvil recorded in `state_dir`/anvil.pid, if that process is still an Anvil."""
    pid_file = Path(state_dir) / "anvil.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        if not Path("/proc/self").exists() and _alive(pid):  # no procfs (macOS): trust the pid
            return AnvilHandle(pid, default_port(), Path(state_dir))
        return None
    if not argv or "anvil" not in Path(argv[0]).name:
        return None
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else default_port()
    return AnvilHandle(pid, port, Path(state_dir))


def default_port() -> int:
    return int(os.environ.get("TIMEBANK_ANVIL_PORT", DEFAULT_PORT))


def default_block_time() -> int:
    return int(os.environ.get("TIMEBANK_BLOCK_TIME", DEFAULT_BLOCK_TIME))


def default_rpc_url() -> str:
    """$TIMEBANK_RPC_URL, else the embedded Anvil's URL."""
    return os.environ.get("TIMEBANK_RPC_URL") or f"http://{HOST}:{default_port()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.chain", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        commands.add_parser(name)
    snapshotter = commands.add_parser("snapshotter", help="(started by `start`) write snapshots while Anvil runs")
    snapshotter.add_argument("--url", required=True)
    snapshotter.add_argument("--state-dir", type=Path, required=True)
    snapshotter.add_argument("--anvil-pid", type=int, required=True)
    snapshotter.add_argument("--interval", type=float, default=DEFAULT_SNAPSHOT_SECONDS)
    args = parser.parse_args(argv)
    if args.command == "snapshotter":
        return run_snapshotter(args.url, args.state_dir, args.anvil_pid, args.interval)
    data_dir = Path(os.environ.get("TIMEBANK_CHAIN_DIR") or DATA_DIR).resolve()
    where = data_dir.relative_to(ROOT) if data_dir.is_relative_to(ROOT) else data_dir
    handle = running_anvil(data_dir)
    interval = snapshot_seconds()

    if args.command == "start":
        if handle is not None:
            if running_snapshotter(data_dir) is None:
                start_snapshotter(handle, interval)
                print(f"anvil already running (pid {handle.pid}) on {handle.url}; its snapshotter started again")
            else:
                print(f"anvil already running (pid {handle.pid}) on {handle.url}; nothing to do")
            return 0
        block_time = default_block_time()
        handle = start_chain(default_port(), data_dir, block_time, interval)
        mining = f"a block every {block_time}s" if block_time > 0 else "a block per transaction"
        print(f"chain state: {handle.restored.describe(ROOT)}")
        print(
            f"anvil started (pid {handle.pid}) on {handle.url}, chain id {DEV_CHAIN_ID}, {mining};"
            f" a snapshot every {interval:g}s in {where}/{SNAPSHOTS}/, log in {where}/anvil.log"
        )
    elif args.command == "stop":
        if handle is None:
            stop_snapshotter(data_dir)
            print("anvil is not running")
            return 0
        stop_anvil(handle)
        newest = snapshots(data_dir)
        saved = f"; state saved in {where}/{SNAPSHOTS}/{newest[0].name}" if newest else ""
        print(f"anvil stopped (pid {handle.pid}){saved}")
    else:
        if handle is None:
            print("anvil is not running")
            return 3
        try:
            block = int(rpc(handle.url, "eth_blockNumber"), 16)
            chain_id = int(rpc(handle.url, "eth_chainId"), 16)
        except (OSError, ValueError, ChainError) as exc:
            print(f"anvil running (pid {handle.pid}) but {handle.url} does not answer: {exc}")
            return 1
        newest = snapshots(data_dir)
        saved = "no snapshot yet"
        if newest:
            age = time.time() - newest[0].stat().st_mtime
            saved = f"last snapshot {newest[0].name} ({newest[0].stat().st_size:,} bytes, {age:.0f}s ago)"
        snapshotting = "snapshotter running" if running_snapshotter(data_dir) else "NO snapshotter (run start again)"
        print(f"anvil running (pid {handle.pid}) on {handle.url}, chain id {chain_id}, block {block}; {saved}; {snapshotting}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChainError as exc:
        sys.exit(f"error: {exc}")
