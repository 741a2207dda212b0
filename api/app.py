"""The HTTP API of PROTOCOL.md section 6 (FastAPI): `create_app` builds the app, includes one router per
resource (`api/routes/`) and answers every refusal through one error handler: `{"error": {"code",
"message", "messageEn", "messageZh"}}` with the catalogue's status, `message` in the language the
request's Accept-Language prefers (api/errors.py). Routes parse, then call the service."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .certificates import Verifications
from .chain import ChainUnavailable
from .errors import ApiError, localize, request_language
from .recordings import MAX_RECORDING_BYTES
from .routes import accounts, admin, audit, batches, cards, certificates, grants, groups, meta, orders, people, recordings, web
from .service import Service
from .serving import BodyLimit
from .settings import Settings, get_settings

ROUTERS = (meta, orders, recordings, accounts, admin, batches, cards, people, groups, grants, audit, certificates)


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = service is None
        app.state.service = service or Service(settings)
        app.state.verifications = Verifications(settings.certificate_verify_workers, settings.certificate_verify_waiting)
        if own:
            app.state.service.start()
        yield
        app.state.verifications.close()
        if own:
            app.state.service.stop()

    app = FastAPI(
        title="Time-bank ledger",
        version="1",
        description="Signed service orders in, Merkle-anchored batches out, proofs any auditor checks alone. "
        "Wire formats: PROTOCOL.md.",
        lifespan=lifespan,
        docs_url=None,  # /docs with local assets: api/routes/web.py
        redoc_url=None,
    )

    # bodies over the limit are refused before they are read (api/serving.py)
    # (a voice recording, PUT /v1/orders/{id}/recording, has its own cap: api/recordings.py)
    def body_limit(path: str) -> int:
        return max(settings.max_body_bytes, MAX_RECORDING_BYTES) if path.endswith("/recording") else settings.max_body_bytes

    app.add_middleware(BodyLimit, limit=body_limit)

    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    # the pages and /docs, served from the web/ build (last: its fallback takes every other GET)
    web.install(app)
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal as `{"error": {"code", "message"}}` with the catalogue's status (also on the intake
    workers' app, `api/workers.py`)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(status_code=exc.status, content=exc.body(request_language(request)), headers=exc.headers)

    @app.exception_handler(ChainUnavailable)
    async def _chain_down(request: Request, _exc: ChainUnavailable):
        return JSONResponse(status_code=503, content=ApiError("chain_unavailable").body(request_language(request)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        error = ApiError("invalid_request", f"{where}: {first.get('msg', 'invalid')}")
        return JSONResponse(status_code=400, content=error.body(request_language(request)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        body = localize({"error": {"code": code, "message": str(exc.detail)}}, request_language(request))
        return JSONResponse(status_code=exc.status_code, content=body)
