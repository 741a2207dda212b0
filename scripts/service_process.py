"""The service as a separate process (`python -m api`), the one way the tests, the benchmark and the
simulation start it: `TIMEBANK_*` environment variables on top of the caller's environment without its own
`TIMEBANK_*`, ready once `GET /v1/health` answers, stopped with SIGTERM (then SIGKILL) or killed with
SIGKILL. Its output goes to a log file whose tail error messages quote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.chain import free_port

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """One `python -m api` process over a SQLite database in `workdir`; `start` may be called again after
    it exited (a restart: same database, same port, possibly other environment). `cwd` is where it runs
    (a directory without a `.env` keeps the checkout's local settings out)."""

    def __init__(self, rpc_url: str, contract: str, workdir: Path, name: str = "service", *, cwd: Path = ROOT, **env: Any):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.cwd = Path(cwd)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"{name}.log"
        self.database = self.workdir / f"{name}.sqlite3"
        self.base_env = {
            "TIMEBANK_RPC_URL": rpc_url,
            "TIMEBANK_CONTRACT_ADDRESS": contract,
            "TIMEBANK_DATABASE_URL": f"sqlite:///{self.database}",
            "TIMEBANK_PORT": str(self.port),
            "TIMEBANK_HOST": "127.0.0.1",
            # no deployment record of another chain may leak in: the follower starts at block 0
            "TIMEBANK_DEPLOYMENTS_DIR": str(self.workdir / "deployments"),
        }
        self.base_env.update({k: str(v) for k, v in env.items()})
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        """The service's `TIMEBANK_*` settings (without the RPC URL, which names a temporary port)."""
        return {k: v for k, v in self.base_env.items() if k != "TIMEBANK_RPC_URL"}

    def start(self, timeout: float = 60, **env: Any) -> ServiceProcess:
        """Starts the process (with `env` on top of the base environment) and waits until it answers."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
        environment["PYTHONPATH"] = str(ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
        environment.update(self.base_env)
        environment.update({k: str(v) for k, v in env.items()})
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} env {env}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"],
                cwd=self.cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                if self.client.get("/v1/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer /v1/health within {timeout:.0f} s:\n{self.log_tail()}")
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
            raise RuntimeError(f"{self.name} still running after {timeout}s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the service."""
        if self.running():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.running():
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
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

    def health(self) -> dict:
        return self.client.get("/v1/health").json()
