"""Views of `GET /v1/system/status`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ServiceState = Literal["ready", "not_ready", "running", "down", "unknown"]


class ConsumerLagView(BaseModel):
    group: str
    topics: list[str]
    state: str = Field(description="Kafka group state: stable, empty, rebalancing, dead, unknown ...")
    members: int | None = Field(description="Consumers in the group now; 0 = nobody is consuming.")
    lag: int | None = Field(description="Messages not yet committed by the group (sum over partitions).")
    partitions: int


class ServiceView(BaseModel):
    name: str
    status: ServiceState = Field(
        description=(
            "`ready`/`not_ready` from the service's /readyz; without a reachable ops endpoint, `running` when its "
            "consumer group has members, `down` when it has none, `unknown` when neither can be checked."
        )
    )
    checks: dict[str, bool] = Field(description="The service's readiness checks (empty when not probed).")
    consumer: ConsumerLagView | None


class DlqView(BaseModel):
    topic: str
    depth: int | None = Field(description="Dead letters retained in the topic; null when Kafka is unreachable.")


class ThroughputView(BaseModel):
    transactions_per_second: float | None = Field(
        description="Messages per second into tx.valid over up to the last minute; null until two samples exist."
    )
    anomalies_last_minute: int = Field(description="Anomalies detected in the last 60 s (your tenants only).")


class SystemStatusView(BaseModel):
    """The pipeline at a glance; cached for about 2 s."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-24T10:15:02Z",
                    "kafka_reachable": True,
                    "services": [
                        {
                            "name": "detect-ml",
                            "status": "not_ready",
                            "checks": {"database": True, "model:vigil-supervised": False},
                            "consumer": {
                                "group": "vigil-detect-ml",
                                "topics": ["tx.features"],
                                "state": "stable",
                                "members": 1,
                                "lag": 1200,
                                "partitions": 6,
                            },
                        }
                    ],
                    "dlq": {"topic": "tx.dlq", "depth": 3},
                    "throughput": {"transactions_per_second": 48.5, "anomalies_last_minute": 12},
                    "degraded_detectors": ["vigil-supervised"],
                }
            ]
        }
    )

    generated_at: datetime
    kafka_reachable: bool
    services: list[ServiceView]
    dlq: DlqView
    throughput: ThroughputView
    degraded_detectors: list[str] = Field(description="Detectors judging nothing or running on a fallback.")
