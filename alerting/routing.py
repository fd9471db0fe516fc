"""Routing: which receivers an alert goes to, and the aggregation group it joins there."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from alerting.config import AlertingConfig, GroupTiming
from alerting.matchers import all_match

MAX_GROUP_KEY: Final = 280  # leaves room for "#<seq>" in the 300-character dedup key


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """An alert's place in one receiver's aggregation group."""

    route_id: str
    receiver: str
    group_labels: dict[str, str]
    timing: GroupTiming
    group_key: str


def group_key_for(route_id: str, receiver: str, group_labels: Mapping[str, str]) -> str:
    """Readable, stable key: `route/receiver/{k="v",...}`; hashed when it would be too long."""
    inner = ",".join(f'{name}="{value}"' for name, value in sorted(group_labels.items()))
    key = f"{route_id}/{receiver}/{{{inner}}}"
    if len(key) <= MAX_GROUP_KEY:
        return key
    digest = hashlib.sha256(inner.encode()).hexdigest()
    return f"{route_id}/{receiver}/sha256:{digest}"[:MAX_GROUP_KEY]


def match_routes(config: AlertingConfig, labels: Mapping[str, str]) -> list[RouteMatch]:
    """Routes in order; the first match wins unless it says `continue`. Receiver None = silence."""
    matches: list[RouteMatch] = []
    matched_any = False
    for route in config.routes:
        if not all_match(route.matchers, labels):
            continue
        matched_any = True
        if route.receiver is not None:
            matches.append(_match(route.id, route.receiver, route.timing(config.defaults), labels))
        if not route.continue_:
            break
    if not matched_any and config.default_receiver is not None:
        matches.append(_match("default", config.default_receiver, config.defaults, labels))
    return matches


def _match(route_id: str, receiver: str, timing: GroupTiming, labels: Mapping[str, str]) -> RouteMatch:
    group_labels = {name: labels.get(name, "") for name in timing.group_by}
    return RouteMatch(
        route_id=route_id,
        receiver=receiver,
        group_labels=group_labels,
        timing=timing,
        group_key=group_key_for(route_id, receiver, group_labels),
    )
