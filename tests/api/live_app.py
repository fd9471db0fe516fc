"""Application factory for the live contract test (`uvicorn tests.api.live_app:build --factory`).

Wires the ports exactly as `vigil run api` does, the synchronous scorer included: the
fuzzer exercises `POST /v1/score` against the real feature engine and detectors (models
that cannot load are reported as degraded, never as a server error).
"""

from __future__ import annotations

from fastapi import FastAPI

from api import create_app
from core.settings import load_settings
from vigil.commands.api import build_ports


def build() -> FastAPI:
    settings = load_settings()
    return create_app(settings, ports=build_ports(settings))
