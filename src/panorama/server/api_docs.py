"""The OpenAPI page at /docs, served offline: Swagger UI's files come from the installed
`swagger-ui-bundle-v2` package (FastAPI's default page loads them from a CDN, and the machine
may have no internet). ReDoc, which has no such package, is not served."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = "/docs/assets"
# the files the page needs, and their types (nothing else of the package is served)
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def assets_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def install(app: FastAPI) -> None:
    """Add /docs (Swagger UI over /openapi.json) with its files served from the package."""
    root = assets_dir()
    version = root.name.removeprefix("swagger-ui-")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/{version}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/{version}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/{version}/favicon-32x32.png",
        )

    @app.get(ASSETS + "/{version}/{name}", include_in_schema=False)
    async def docs_asset(version: str, name: str) -> FileResponse:
        media = _FILES.get(name)
        if media is None:
            raise HTTPException(404, "not found")
        return FileResponse(root / name, media_type=media,
                            headers={"cache-control": "public, max-age=31536000, immutable"})  # fmt: skip
