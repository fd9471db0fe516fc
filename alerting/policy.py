"""Alertmanager's grouping decisions as pure functions of the group, its members and `now`.

Nothing here reads a clock or a database, so the timing rules are unit-tested
in microseconds. The store loads a group, asks `plan_flush`, and applies the plan.

Rules (Alertmanager semantics, for alerts that expire instead of resolving):
- a new group waits `group_wait` before its first message, gathering a burst;
- alerts arriving after a message wait for the next `group_interval` tick;
- while alerts stay active and nothing new arrives, remind every `repeat_interval`;
- silenced or inhibited alerts stay pending and are re-checked every `group_interval`,
  so a silence's expiry brings them back while they are still active;
- a group whose alerts are all past their active window is dropped.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import quote

from alerting.model import SEVERITY_RANK, AlertSummary, Example, NotificationContent
from core.contracts import Severity


@dataclass(frozen=True, slots=True)
class GroupState:
    """A persisted aggregation group (table `alert_groups`)."""

    group_key: str
    route_id: str
    receiver: str
    tenant_id: str | None
    labels: dict[str, str]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    seq: int
    created_at: datetime
    next_flush_at: datetime
    last_notified_at: datetime | None


@dataclass(frozen=True, slots=True)
class Member:
    """An alert in a group (tables `alert_group_members` + `alerts`)."""

    alert_id: uuid.UUID
    severity: Severity
    score: float
    labels: dict[str, str]
    summary: AlertSummary
    starts_at: datetime
    ends_at: datetime
    notified_seq: int | None


@dataclass(frozen=True, slots=True)
class FlushPlan:
    """What a flush does: maybe one message, which members it marks, when to look again."""

    kind: Literal["firing", "reminder"] | None
    include: tuple[Member, ...]
    active: int
    muted: int
    next_flush_at: datetime | None  # None: no active alert left, drop the group


def next_flush_for_new_alert(group: GroupState, *, now: datetime) -> datetime:
    """When a group that just received a new alert should flush (never later than planned)."""
    if group.last_notified_at is None:
        due = group.created_at + group.group_wait
    else:
        due = group.last_notified_at + group.group_interval
    return min(group.next_flush_at, max(now, due))


def plan_flush(
    group: GroupState, members: Sequence[Member], *, now: datetime, muted: Collection[uuid.UUID]
) -> FlushPlan:
    """Decide a due group's flush; `muted` are the ids silenced or inhibited right now."""
    active = [m for m in members if m.ends_at > now]
    if not active:
        return FlushPlan(kind=None, include=(), active=0, muted=0, next_flush_at=None)
    pending = [m for m in active if m.notified_seq is None]
    sendable = tuple(m for m in pending if m.alert_id not in muted)
    still_muted = len(pending) - len(sendable)
    announced = tuple(m for m in active if m.notified_seq is not None and m.alert_id not in muted)

    kind: Literal["firing", "reminder"] | None = None
    include: tuple[Member, ...] = ()
    last = group.last_notified_at
    if sendable:
        kind, include, last = "firing", sendable, now
    elif announced and last is not None and now >= last + group.repeat_interval:
        kind, include, last = "reminder", announced, now

    candidates = [max(m.ends_at for m in active)]  # drop the group when its last alert expires
    if still_muted:
        candidates.append(now + group.group_interval)
    if last is not None and (announced or sendable):
        candidates.append(last + group.repeat_interval)
    return FlushPlan(
        kind=kind,
        include=include,
        active=len(active),
        muted=sum(1 for m in active if m.alert_id in muted),
        next_flush_at=max(min(candidates), now),
    )


def _fill(template: str, values: dict[str, str]) -> str:
    class _Blank(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return ""

    encoded = {k: (v if k == "public_url" else quote(v, safe="")) for k, v in values.items()}
    return template.format_map(_Blank(encoded))


def _ranked(names: Iterable[str]) -> dict[str, int]:
    """Counts, largest first, ties by name: stable messages and golden files."""
    return dict(sorted(Counter(names).items(), key=lambda item: (-item[1], item[0])))


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def title_for(*, group: GroupState, include: Sequence[Member], kind: str) -> str:
    """One line naming severity, how many, and what they are about."""
    severity = max((m.severity for m in include), key=lambda s: SEVERITY_RANK[s])
    prefix = f"[{severity.value.upper()}]" + (" Reminder:" if kind == "reminder" else "")
    kinds = {m.labels.get("kind", "anomaly") for m in include}
    if kinds == {"system"}:
        names = sorted({m.summary.title for m in include})
        return f"{prefix} {names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
    what = _plural(len(include), "anomaly", "anomalies")
    labels = group.labels
    if labels.get("entity_type") and labels.get("entity_id"):
        about = f"{labels['entity_type']} {labels['entity_id']}"
    else:
        about = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if v and k != "tenant_id") or "Vigil"
    tenant = group.tenant_id or labels.get("tenant_id")
    return f"{prefix} {what} for {about}" + (f" (tenant {tenant})" if tenant else "")


def build_content(
    *,
    group: GroupState,
    plan: FlushPlan,
    dedup_key: str,
    now: datetime,
    public_url: str,
    group_link: str,
    example_link: str,
    examples: int,
) -> NotificationContent:
    """The channel-neutral message for a flush that notifies."""
    if plan.kind is None or not plan.include:
        raise ValueError("only a plan with alerts to announce has content")
    include = plan.include
    top = sorted(include, key=lambda m: (-m.score, m.starts_at, str(m.alert_id)))[:examples]
    base = {"public_url": public_url.rstrip("/"), **group.labels}
    if group.tenant_id:
        base.setdefault("tenant_id", group.tenant_id)
    shown = []
    for member in top:
        values = {**base, **member.labels, "transaction_id": member.summary.transaction_id or ""}
        link = _fill(example_link, values) if member.summary.transaction_id else None
        shown.append(Example(severity=member.severity, score=member.score, summary=member.summary, link=link))
    silence = " ".join(f'{k}="{v}"' for k, v in sorted(group.labels.items()) if v)
    return NotificationContent(
        dedup_key=dedup_key,
        group_key=group.group_key,
        receiver=group.receiver,
        kind=plan.kind,
        title=title_for(group=group, include=include, kind=plan.kind),
        severity=max((m.severity for m in include), key=lambda s: SEVERITY_RANK[s]),
        tenant_id=group.tenant_id,
        group_labels=dict(group.labels),
        alert_count=len(include),
        active_count=plan.active,
        counts_by_detector=_ranked(m.labels.get("detector_name", m.summary.title) for m in include),
        counts_by_severity=_ranked(m.severity.value for m in include),
        first_at=min(m.starts_at for m in include),
        last_at=max(m.starts_at for m in include),
        examples=shown,
        link=_fill(group_link, base),
        silence_command=f'vigil silences add {silence} --duration 2h --comment "<why>"',
        generated_at=now,
    )
