"""`python -m api`: serve the API on the configured host and port (TIMEBANK_HOST, TIMEBANK_PORT), and say
so in one line once it serves (the mirror caught up, the socket listening)."""

import logging

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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migrations run at every start
    settings = get_settings()
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


if __name__ == "__main__":
    main()
