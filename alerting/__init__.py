"""Alerting: route, group, silence and deliver anomaly notifications (Alertmanager semantics).

Public surface: configuration (`load_config`, `AlertingConfig`), the service
(`AlertingService`, `run_alerting`), silences (`create_silence`, `expire_silence`,
`list_silences`) and the channel plugin interface (`Channel`, `DeliveryResult`).
"""

from alerting.channels import Channel, DeliveryResult, DeliveryStatus, build_channels
from alerting.config import AlertingConfig, load_config
from alerting.errors import AlertingConfigError, AlertingError, MatcherError, SilenceError
from alerting.matchers import Matcher, parse_matcher
from alerting.model import Alert, NotificationContent
from alerting.service import AlertingService, run_alerting
from alerting.silences import Silence, create_silence, expire_silence, list_silences

__all__ = [
    "Alert",
    "AlertingConfig",
    "AlertingConfigError",
    "AlertingError",
    "AlertingService",
    "Channel",
    "DeliveryResult",
    "DeliveryStatus",
    "Matcher",
    "MatcherError",
    "NotificationContent",
    "Silence",
    "SilenceError",
    "build_channels",
    "create_silence",
    "expire_silence",
    "list_silences",
    "load_config",
    "parse_matcher",
    "run_alerting",
]
