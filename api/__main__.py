"""`python -m api`: serve the API on the configured host and port (TIMEBANK_HOST, TIMEBANK_PORT)."""

import logging

import uvicorn

from .app import create_app
from .settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop="uvloop", http="httptools", log_level="warning")


if __name__ == "__main__":
    main()
