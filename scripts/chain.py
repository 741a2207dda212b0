"""The embedded development chain: an Anvil node whose state survives restarts.

    python -m scripts.chain start|stop|status

`start` runs Anvil detached on 127.0.0.1:$TIMEBANK_ANVIL_PORT (default 8545),
chain id 31337, mining one block per transaction (automine) by default, or a
block every $TIMEBANK_BLOCK_TIME seconds when that is set above 0 (an idle chain
then still grows its state file by about 1.7 KB a block). The chain state is kept in
node/data/state.json: loaded on start, written every few seconds and on exit, so
a crash loses seconds at most. Its log is node/data/anvil.log, its pid
node/data/anvil.pid. `stop` sends SIGTERM and waits, so the state is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "node" / "data"
HOST = "127.0.0.1"
DEFAULT_PORT = 8545
DEFAULT_BLOCK_TIME = 0
DEV_CHAIN_ID = 31337
STATE_INTERVAL = 5  # seconds between state dumps while running

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
class AnvilHandle:
    pid: int
    port: int
    state_dir: Path
    process: subprocess.Popen | None = None  # set when this process started it

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
    """One JSON-RPC call; returns its result."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    if "error" in answer:
        raise ChainError(f"{method}: {answer['error']}")
    return answer["result"]


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


def start_anvil(
    port: int,
    state_dir: Path,
    block_time: int,
    chain_id: int = DEV_CHAIN_ID,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> AnvilHandle:
    """Start Anvil detached, keeping its state, log and pid in `state_dir`; wait until it answers.

    `block_time` 0 mines one block per transaction (automine); `extra_args` go
    to Anvil as they are (e.g. ["--disable-min-priority-fee"]). Anvil rewrites
    state.json in place, so a kill at the wrong moment can leave it truncated
    (Anvil then refuses to start): the file each successful start loaded is
    kept as state.json.prev.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if _port_in_use(port):
        raise ChainError(f"port {port} on {HOST} is already in use")
    state, loading = state_dir / "state.json", state_dir / "state.json.loading"
    if state.is_file():
        shutil.copyfile(state, loading)
    command = [
        anvil_binary(),
        "--host", HOST,
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--state", str(state),
        "--state-interval", str(STATE_INTERVAL),
    ]  # fmt: skip
    if block_time > 0:
        command += ["--block-time", str(block_time)]
    command += extra_args
    with open(state_dir / "anvil.log", "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (state_dir / "anvil.pid").write_text(f"{process.pid}\n")
    handle = AnvilHandle(process.pid, port, state_dir, process)
    try:
        _wait_until_answering(handle, chain_id, timeout)
        if loading.is_file():
            loading.replace(state_dir / "state.json.prev")
    finally:
        loading.unlink(missing_ok=True)
    return handle


def _wait_until_answering(handle: AnvilHandle, chain_id: int, timeout: float) -> None:
    """Poll eth_chainId until it answers `chain_id`; stop Anvil and raise if it fails or exits."""
    deadline = time.monotonic() + timeout
    while True:
        if handle.process.poll() is not None:
            (handle.state_dir / "anvil.pid").unlink(missing_ok=True)
            log = _log_tail(handle.state_dir)
            if "failed to parse json file" in log:
                state = handle.state_dir / "state.json"
                log += (
                    f"\n{state} is damaged (Anvil killed while writing it?). Restore the state of the last"
                    f" good start with `mv {state}.prev {state}`, or delete it to start a new chain."
                )
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
    """SIGTERM Anvil and wait for it to exit (it writes its state on the way out).

    Escalates to SIGKILL after `timeout` seconds, losing at most the last
    few seconds of state.
    """
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
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    where = DATA_DIR.relative_to(ROOT)
    handle = running_anvil(DATA_DIR)

    if args.command == "start":
        if handle is not None:
            print(f"anvil already running (pid {handle.pid}) on {handle.url}; nothing to do")
            return 0
        block_time = default_block_time()
        handle = start_anvil(default_port(), DATA_DIR, block_time)
        mining = f"a block every {block_time}s" if block_time > 0 else "a block per transaction"
        print(
            f"anvil started (pid {handle.pid}) on {handle.url}, chain id {DEV_CHAIN_ID}, {mining};"
            f" state in {where}/state.json, log in {where}/anvil.log"
        )
    elif args.command == "stop":
        if handle is None:
            print("anvil is not running")
            return 0
        stop_anvil(handle)
        print(f"anvil stopped (pid {handle.pid}); state saved in {where}/state.json")
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
        print(f"anvil running (pid {handle.pid}) on {handle.url}, chain id {chain_id}, block {block}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChainError as exc:
        sys.exit(f"error: {exc}")
