"""Pipeline status for operators and the dashboard: services, consumer lag, DLQ depth, throughput."""

from api.system.service import ConsumerSpec, SystemStatus

__all__ = ["ConsumerSpec", "SystemStatus"]
