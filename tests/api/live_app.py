"""Application factory for the live contract test (`uvicorn tests.api.live_app:build --factory`).

Wires the ports exactly as `vigil run api` does, except the scorer: no synchronous scorer
exists in the product yet, and an unwired port answers 503, which a fuzzer rightly reports
as a server error. A constant scorer stands in so `POST /v1/score` is exercised end to end.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import FastAPI

from api import DetectorVerdict, ScoreOutcome, create_app
from core.contracts import Reason, Transaction
from core.settings import load_settings
from vigil.commands.api import build_ports


class ConstantScorer:
    def score(self, transaction: Transaction) -> ScoreOutcome:
        reason = Reason(feature="amount", value=float(transaction.amount), text="Constant test verdict.")
        return ScoreOutcome(
            score=42.0,
            verdicts=[DetectorVerdict(family="rules", name="constant", version="1", score=42.0, reasons=[reason])],
        )


def build() -> FastAPI:
    settings = load_settings()
    ports = replace(build_ports(settings), scorer=ConstantScorer())
    return create_app(settings, ports=ports)
