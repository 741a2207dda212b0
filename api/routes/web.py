"""The pages (`web/`, built by Vite into `web/dist`) served by the service itself, and `/docs` with Swagger
UI's assets from that build (copied from npm `swagger-ui-dist`): nothing comes from a CDN, so both work on
a network with no internet. Any GET that is not an API path or a file of the build answers `index.html`
(the pages route in the browser)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ..settings import ROOT

DIST = Path(os.environ.get("TIMEBANK_WEB_DIST", ROOT / "web" / "dist"))
ASSETS = "/docs-assets"

NOT_BUILT = """<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>时间银行</title>
<body style="font: 20px/1.5 sans-serif; margin: 2em"><h1>页面尚未构建 · The pages are not built</h1>
<p><code>make run</code> 会构建 <code>web/</code>；或手动：<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>。</p>
<p>The API is up: <a href="/v1/health">/v1/health</a>, <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""


def install(app: FastAPI, dist: Path = DIST) -> None:
    """Adds `/docs` (Swagger UI from local assets) and the pages with their SPA fallback. Call last: the
    fallback answers every GET no other route took."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if not (dist / "docs-assets" / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    app.add_middleware(Pages, dist=dist)


class Pages:
    """ASGI middleware: a GET or HEAD outside the API (`/v1`, `/openapi.json`, `/docs`) answers a file of
    the build, or `index.html` for a page's route; everything else goes to the API untouched (so unknown
    API paths and methods answer as before)."""

    def __init__(self, app, dist: Path = DIST):
        self.app = app
        self.root = dist.resolve()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not _is_api(scope["path"]):
            await self.page(scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def page(self, url_path: str) -> Response:
        path = url_path.lstrip("/")
        if path:
            target = (self.root / path).resolve()
            if target.is_relative_to(self.root) and target.is_file():
                immutable = path.startswith(("assets/", "docs-assets/"))
                headers = {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"}
                return FileResponse(target, headers=headers)
            if path.startswith(("assets/", "docs-assets/")) or "." in path.rsplit("/", 1)[-1]:
                return JSONResponse({"error": {"code": "not_found", "message": f"no file {url_path}"}}, status_code=404)
        index = self.root / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


def _is_api(path: str) -> bool:
    return path == "/v1" or path.startswith(("/v1/", "/openapi.json")) or path == "/docs" or path.startswith("/docs/")
