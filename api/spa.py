"""Serve the built dashboard (web/dist) at `/` with a single-page-app fallback."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

_API_PREFIXES = ("v1/", "v1", "openapi.json", "docs", "redoc", "healthz", "readyz", "metrics")


class SpaStaticFiles(StaticFiles):
    """Static files; unknown paths outside the API get index.html so client-side routes work."""

    async def get_response(self, path: str, scope: Any) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path.startswith(_API_PREFIXES):
                raise
            return await super().get_response("index.html", scope)
