"""A throwaway PostgreSQL server for tests and development: Debian's server binaries, a cluster of its own.

    python -m scripts.postgres start|stop|url [--dir DIR]

`start` creates a cluster in DIR (default data/postgres) unless one is there, starts it on a free
127.0.0.1 port (fsync and synchronous commits on, its unix socket inside the data directory, password
authentication only) and creates the database `timebank`; it prints the SQLAlchemy URL to put in
TIMEBANK_DATABASE_URL, as `url` does while it runs. `stop` stops it (pg_ctl stop -m fast); the cluster
stays in DIR for the next start. Its log is DIR/postgres.log.

PostgreSQL refuses to run as root: run as root, the server runs as the `postgres` system user (which
Debian's package creates), who then owns DIR and must be able to reach it. `make postgres-server` installs
Debian's server when it is missing.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.chain import HOST, free_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "data" / "postgres"
SUPERUSER = "timebank"
DATABASE = "timebank"
SYSTEM_USER = "postgres"  # who runs the server when we are root
STATE_FILE = "cluster.json"  # port, password, binaries of the running server (readable by its starter only)

# Appended to the cluster's postgresql.conf by `start_postgres` (the port is given on each start).
SETTINGS = """
# --- scripts/postgres.py ---
listen_addresses = '{host}'
unix_socket_directories = '{socket_dir}'
fsync = on
synchronous_commit = on
full_page_writes = on
"""


class PostgresError(RuntimeError):
    """The PostgreSQL server could not be found, created, started or stopped."""


@dataclass
class PostgresHandle:
    dir: Path  # the cluster: data/ (PGDATA), postgres.log, cluster.json
    port: int
    password: str
    bindir: Path
    user: str | None = None  # the system user the server runs as, when we are root

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database `timebank` (api.db.make_engine picks the psycopg driver)."""
        return self.url_for(DATABASE)


def server_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin. (Debian's pg_config comes with libpq-dev and names the directory even when
    the server is not installed, hence the check for the binaries.)"""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    for candidate in candidates:
        if candidate and all(os.access(Path(candidate) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    raise PostgresError(
        "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin): "
        "run `make postgres-server` (Debian's package `postgresql`)"
    )


def _system_user() -> str | None:
    """None when we are not root; else the unprivileged user the server runs as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, and there is no `{SYSTEM_USER}` system user to run the server as "
            "(PostgreSQL refuses root): install Debian's postgresql package or run as another user"
        ) from None
    return SYSTEM_USER


def _run(handle_or_user: PostgresHandle | str | None, command: list[str], cwd: Path, timeout: float = 120) -> str:
    """Runs a server binary, as the server's system user when there is one; returns its output."""
    user = handle_or_user.user if isinstance(handle_or_user, PostgresHandle) else handle_or_user
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    try:
        done = subprocess.run(
            command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{' '.join(command)} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        raise PostgresError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def _log_tail(directory: Path, lines: int = 20) -> str:
    try:
        return "\n".join((directory / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _init_cluster(directory: Path, bindir: Path, user: str | None, sync: bool) -> str:
    """initdb into directory/data with a random superuser password; returns the password. `sync` False
    skips initdb's final flush of the new files to disk (for throwaway clusters; the server itself
    always runs with fsync on)."""
    password = secrets.token_hex(16)
    pwfile = directory / ".pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    _chown(pwfile, user)
    try:
        _run(user, [
            str(bindir / "initdb"),
            "--pgdata", str(directory / "data"),
            "--username", SUPERUSER,
            "--pwfile", str(pwfile),
            "--auth-local", "scram-sha-256",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-instructions",
            *([] if sync else ["--no-sync"]),
        ], cwd=directory)  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    with open(directory / "data" / "postgresql.conf", "a") as conf:
        conf.write(SETTINGS.format(host=HOST, socket_dir=directory / "data"))
    return password


def _read_state(directory: Path) -> dict | None:
    try:
        return json.loads((Path(directory) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(handle: PostgresHandle) -> None:
    path = handle.dir / STATE_FILE
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps({"port": handle.port, "password": handle.password, "bindir": str(handle.bindir), "user": handle.user}))


def _is_running(handle: PostgresHandle) -> bool:
    command = [str(handle.bindir / "pg_ctl"), "status", "--pgdata", str(handle.data_dir)]
    if handle.user is not None:
        command = ["runuser", "-u", handle.user, "--", *command]
    return subprocess.run(command, cwd=handle.dir, capture_output=True).returncode == 0


def running_postgres(directory: Path = DEFAULT_DIR) -> PostgresHandle | None:
    """The server of the cluster in `directory`, if it runs."""
    state = _read_state(directory)
    if state is None:
        return None
    handle = PostgresHandle(Path(directory), state["port"], state["password"], Path(state["bindir"]), state["user"])
    return handle if _is_running(handle) else None


def _connect(handle: PostgresHandle, database: str = "postgres"):
    import psycopg

    return psycopg.connect(handle.url_for(database), autocommit=True, connect_timeout=10)


def start_postgres(
    directory: Path, *, database: str = DATABASE, throwaway: bool = False, timeout: float = 60.0
) -> PostgresHandle:
    """Starts the cluster in `directory` (creating it first when there is none) on a free loopback port,
    waits until it accepts connections and creates `database` if missing. Returns its handle.
    `throwaway` (tests) creates the cluster without flushing initdb's files to disk: a second faster."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    bindir = server_bindir()
    user = _system_user()
    _chown(directory, user)
    directory.chmod(0o700)
    state = _read_state(directory)
    if (directory / "data" / "PG_VERSION").exists() and state is not None:
        password = state["password"]
    else:
        if (directory / "data").exists():
            raise PostgresError(f"{directory / 'data'} exists but holds no cluster this script made: remove it")
        password = _init_cluster(directory, bindir, user, sync=not throwaway)
    handle = PostgresHandle(directory, 0, password, bindir, user)
    if _is_running(handle):
        raise PostgresError(f"a server already runs on {handle.data_dir}: `python -m scripts.postgres stop --dir {directory}`")
    for attempt in range(3):  # the free port may be taken between choosing it and binding it
        handle.port = free_port()
        try:
            _run(handle, [
                str(bindir / "pg_ctl"), "start",
                "--pgdata", str(handle.data_dir),
                "--log", str(directory / "postgres.log"),
                "--wait", "--timeout", str(int(timeout)),
                "--options", f"-p {handle.port}",
            ], cwd=directory, timeout=timeout + 10)  # fmt: skip
            break
        except PostgresError as exc:
            if attempt == 2 or "could not bind" not in _log_tail(directory):
                raise PostgresError(f"{exc}\n{_log_tail(directory)}") from None
    _write_state(handle)
    with _connect(handle) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{database}"')
    return handle


def stop_postgres(handle: PostgresHandle, *, mode: str = "fast", timeout: float = 60.0) -> None:
    """Stops the server. `fast` ends open sessions and writes a shutdown checkpoint (committed work is
    kept, a next start needs no recovery); `immediate`, for a cluster deleted next, skips the checkpoint,
    seconds saved when many databases were written."""
    if mode not in ("fast", "immediate"):
        raise ValueError(f"mode: expected fast or immediate, got {mode!r}")
    if not _is_running(handle):
        return
    _run(handle, [
        str(handle.bindir / "pg_ctl"), "stop",
        "--pgdata", str(handle.data_dir),
        "--mode", mode, "--wait", "--timeout", str(int(timeout)),
    ], cwd=handle.dir, timeout=timeout + 10)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "url"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's directory (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    handle = running_postgres(args.dir)
    if args.command == "start":
        if handle is None:
            started = time.monotonic()
            handle = start_postgres(args.dir)
            print(f"postgres started on {HOST}:{handle.port} in {time.monotonic() - started:.1f}s; log in {handle.dir / 'postgres.log'}", file=sys.stderr)
        print(handle.url)
    elif args.command == "url":
        if handle is None:
            print(f"no PostgreSQL server runs for {args.dir}", file=sys.stderr)
            return 3
        print(handle.url)
    else:
        if handle is None:
            print("postgres is not running", file=sys.stderr)
            return 0
        stop_postgres(handle)
        print(f"postgres stopped; the cluster stays in {handle.dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PostgresError as exc:
        sys.exit(f"error: {exc}")
