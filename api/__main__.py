"""`python -m api`: serve the API on the configured host and port (TIMEBANK_HOST, TIMEBANK_PORT), and say
so in one line once it serves (the mirror caught up, the socket listening). With `TIMEBANK_WORKERS` ≥ 2
(the default) as a supervisor of a writer process and that many intake workers (`api/workers.py`), which it
starts as `python -m api --role writer|worker ...`; with 0 or 1 in this one process."""

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from .app import create_app
from .serving import header_timeout_protocol
from .settings import get_settings


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"serving on http://{host}:{port} (OpenAPI at /docs)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api")
    parser.add_argument("--role", choices=("writer", "worker"), help="a process of the supervised service (api/workers.py)")
    parser.add_argument("--runtime", type=Path, help="the supervisor's directory of sockets")
    parser.add_argument("--fd", type=int, help="a worker's listening socket")
    parser.add_argument("--index", type=int, default=0, help="a worker's number")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migrations run at every start
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a worker passing requests to the writer: one line each otherwise
    settings = get_settings()
    if args.role is not None or settings.workers >= 2:
        from . import workers

        if args.role == "writer":
            workers.run_writer(settings, args.runtime)
            return 0
        if args.role == "worker":
            workers.run_worker(settings, args.runtime, args.fd, args.index)
            return 0
        return workers.Supervisor(settings).run()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=header_timeout_protocol(settings.header_timeout_seconds),
        timeout_keep_alive=5,
        log_level="warning",
    )
    _Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
