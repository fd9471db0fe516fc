"""ASGI middleware: request body limits (413) and Prometheus request metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import metrics

_CONVERTOR = re.compile(r":[a-z]+}")


class BodyTooLargeError(HTTPException):
    """Raised while reading a streamed body that outgrows its limit (rendered as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


def _error(status: int, code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": []}})


class BodyLimitMiddleware:
    """Refuse bodies over the limit for their path: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, *, default_limit: int, path_limits: Mapping[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.path_limits = dict(path_limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.default_limit)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send, limit)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, limited, send)

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        body = _error(413, "payload_too_large", f"request body larger than {limit} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Count and time requests by route template (never by raw path: ids would explode cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route: Any = scope.get("route")
            # The OpenAPI form of the template: `{case_id:uuid}` -> `{case_id}`.
            template = _CONVERTOR.sub("}", getattr(route, "path", None) or "unmatched")
            method = scope.get("method", "?")
            metrics.HTTP_REQUESTS.labels(method, template, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)
