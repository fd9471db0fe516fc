"""Durable alerting state in PostgreSQL: seen alerts, pending groups, the notification log.

Every write is idempotent on a natural key, so a replayed batch, a restart or a
second replica changes nothing twice:
- `alerts.alert_id` (= anomaly_id): a replayed anomaly is recognised and ignored;
- `alert_groups.group_key`: groups are upserted; a flush locks its row (SKIP LOCKED),
  so two replicas never flush the same group at once;
- `notifications.dedup_key` = group key + flush number: one row per message, ever.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, RowMapping, and_, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert

from alerting.config import AlertingConfig, InhibitRule
from alerting.matchers import all_match
from alerting.model import Alert, AlertSummary
from alerting.policy import FlushPlan, GroupState, Member, build_content, plan_flush
from alerting.routing import match_routes
from alerting.silences import Silence, active_silences
from core.contracts import Severity
from core.schema import alert_group_members, alert_groups, alerts, notifications

_CHUNK: Final = 2000  # rows per multi-row INSERT: well under PostgreSQL's 65,535 bind parameters
_SECOND: Final = text("interval '1 second'")


@dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    new: int
    stale: int
    routed: int  # (alert, receiver) pairs that joined a group


@dataclass(frozen=True, slots=True)
class Claim:
    """A notification this process may try to send now (it holds the lease)."""

    notification_id: int
    receiver: str
    attempts: int
    payload: dict[str, Any]


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


def ingest(*, engine: Engine, alerts_in: Sequence[Alert], config: AlertingConfig, now: datetime) -> IngestResult:
    """Record alerts and add the new ones to their groups, all in one transaction."""
    if not alerts_in:
        return IngestResult(0, 0, 0, 0)
    unique = {alert.alert_id: alert for alert in alerts_in}  # a batch may carry the same anomaly twice
    rows = [
        {
            "alert_id": a.alert_id,
            "tenant_id": a.tenant_id,
            "kind": a.kind,
            "severity": a.severity.value,
            "score": a.score,
            "labels": a.labels,
            "summary": a.summary.model_dump(mode="json"),
            "starts_at": a.starts_at,
            "ends_at": a.ends_at,
            "received_at": now,
        }
        for a in unique.values()
    ]
    with engine.begin() as connection:
        # Known ids in one indexed lookup, then a pipelined executemany of the rest: both far cheaper
        # than one huge multi-row VALUES statement. Two replicas racing on the same new alert both
        # route it, which is harmless: the member rows below conflict on (group_key, alert_id).
        known = set(
            connection.execute(
                select(alerts.c.alert_id).where(alerts.c.alert_id == func.any(literal(list(unique), ARRAY(UUID))))
            ).scalars()
        )
        new_ids = set(unique) - known
        if new_ids:
            connection.execute(insert(alerts).on_conflict_do_nothing(), [r for r in rows if r["alert_id"] in new_ids])
        fresh = [unique[i] for i in unique if i in new_ids]
        live = [a for a in fresh if a.ends_at > now]  # a replay of long-gone anomalies is not news
        groups: dict[str, dict[str, Any]] = {}
        members: list[dict[str, Any]] = []
        for alert in live:
            for match in match_routes(config, alert.labels):
                groups.setdefault(
                    match.group_key,
                    {
                        "group_key": match.group_key,
                        "route_id": match.route_id,
                        "receiver": match.receiver,
                        "tenant_id": match.group_labels.get("tenant_id") or alert.tenant_id,
                        "labels": match.group_labels,
                        "group_wait_s": match.timing.group_wait.total_seconds(),
                        "group_interval_s": match.timing.group_interval.total_seconds(),
                        "repeat_interval_s": match.timing.repeat_interval.total_seconds(),
                        "seq": 0,
                        "created_at": now,
                        "next_flush_at": now + match.timing.group_wait,
                    },
                )
                members.append({"group_key": match.group_key, "alert_id": alert.alert_id, "added_at": now})
        if groups:
            # Sorted keys: concurrent replicas lock group rows in the same order (no deadlock).
            ordered = [groups[key] for key in sorted(groups)]
            for chunk in _chunks(ordered):
                statement = insert(alert_groups).values(list(chunk))  # few rows: one per group
                existing = alert_groups.c
                due = func.coalesce(
                    existing.last_notified_at + existing.group_interval_s * _SECOND,
                    existing.created_at + existing.group_wait_s * _SECOND,
                )
                # Same rule as policy.next_flush_for_new_alert: never later than already planned.
                statement = statement.on_conflict_do_update(
                    index_elements=[existing.group_key],
                    set_={
                        "next_flush_at": func.least(
                            existing.next_flush_at, func.greatest(statement.excluded.created_at, due)
                        )
                    },
                )
                connection.execute(statement)
            connection.execute(insert(alert_group_members).on_conflict_do_nothing(), members)
    return IngestResult(len(unique), len(fresh), len(fresh) - len(live), len(members))


# --- flushing -----------------------------------------------------------------------------------


def _group_state(row: RowMapping) -> GroupState:
    return GroupState(
        group_key=row["group_key"],
        route_id=row["route_id"],
        receiver=row["receiver"],
        tenant_id=row["tenant_id"],
        labels=dict(row["labels"]),
        group_wait=timedelta(seconds=row["group_wait_s"]),
        group_interval=timedelta(seconds=row["group_interval_s"]),
        repeat_interval=timedelta(seconds=row["repeat_interval_s"]),
        seq=row["seq"],
        created_at=row["created_at"],
        next_flush_at=row["next_flush_at"],
        last_notified_at=row["last_notified_at"],
    )


def _members(connection: Connection, group_key: str, now: datetime) -> list[Member]:
    query = (
        select(
            alert_group_members.c.alert_id,
            alert_group_members.c.notified_seq,
            alerts.c.severity,
            alerts.c.score,
            alerts.c.labels,
            alerts.c.summary,
            alerts.c.starts_at,
            alerts.c.ends_at,
        )
        .join(alerts, alerts.c.alert_id == alert_group_members.c.alert_id)
        .where(alert_group_members.c.group_key == group_key, alerts.c.ends_at > now)
    )
    return [
        Member(
            alert_id=row["alert_id"],
            severity=Severity(row["severity"]),
            score=row["score"],
            labels=dict(row["labels"]),
            summary=AlertSummary.model_validate(row["summary"]),
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            notified_seq=row["notified_seq"],
        )
        for row in connection.execute(query).mappings()
    ]


def _inhibited(
    connection: Connection, rules: Sequence[InhibitRule], members: Sequence[Member], now: datetime
) -> set[uuid.UUID]:
    """Members muted by an active source alert with the same `equal` labels (Alertmanager rules)."""
    muted: set[uuid.UUID] = set()
    for rule in rules:
        targets: dict[tuple[str, ...], list[Member]] = defaultdict(list)
        for member in members:
            if all_match(rule.target_matchers, member.labels):
                targets[tuple(member.labels.get(name, "") for name in rule.equal)].append(member)
        for values, group in targets.items():
            # Narrow in SQL by containment (GIN index); the remaining matchers run in Python.
            # (A missing label equals a missing label, so empty values are checked in Python only.)
            wanted = dict(zip(rule.equal, values, strict=True))
            contains = {name: value for name, value in wanted.items() if value}
            contains.update({m.label: m.value for m in rule.source_matchers if m.op == "=" and m.value})
            query = (
                select(alerts.c.alert_id, alerts.c.labels)
                .where(
                    alerts.c.labels.op("@>")(literal(contains, type_=JSONB)),
                    alerts.c.starts_at <= now,
                    alerts.c.ends_at > now,
                )
                .limit(1000)
            )
            sources = [
                (row.alert_id, dict(row.labels))
                for row in connection.execute(query)
                if all_match(rule.source_matchers, row.labels)
                and all(row.labels.get(name, "") == value for name, value in wanted.items())
            ]
            for member in group:
                if any(source_id != member.alert_id for source_id, _ in sources):
                    muted.add(member.alert_id)
    return muted


def _silenced(silences_now: Sequence[Silence], members: Sequence[Member], now: datetime) -> set[uuid.UUID]:
    return {m.alert_id for m in members if any(s.mutes(m.labels, now=now) for s in silences_now)}


@dataclass(frozen=True, slots=True)
class FlushOutcome:
    group_key: str
    plan: FlushPlan
    notification_id: int | None


def flush_due(
    *, engine: Engine, config: AlertingConfig, now: datetime, public_url: str, limit: int = 50
) -> list[FlushOutcome]:
    """Flush up to `limit` due groups: each becomes at most one notification row (status pending)."""
    outcomes: list[FlushOutcome] = []
    with engine.begin() as connection:
        rows = (
            connection.execute(
                select(alert_groups)
                .where(alert_groups.c.next_flush_at <= now)
                .order_by(alert_groups.c.next_flush_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .mappings()
            .all()
        )
        if not rows:
            return outcomes
        silences_now = active_silences(connection, now=now)
        for row in rows:
            outcomes.append(_flush_one(connection, _group_state(row), config, silences_now, now, public_url))
    return outcomes


def _flush_one(
    connection: Connection,
    group: GroupState,
    config: AlertingConfig,
    silences_now: Sequence[Silence],
    now: datetime,
    public_url: str,
) -> FlushOutcome:
    key = group.group_key
    members = _members(connection, key, now)
    muted = _silenced(silences_now, members, now) | _inhibited(connection, config.inhibit_rules, members, now)
    plan = plan_flush(group, members, now=now, muted=muted)
    if plan.next_flush_at is None:
        connection.execute(delete(alert_group_members).where(alert_group_members.c.group_key == key))
        connection.execute(delete(alert_groups).where(alert_groups.c.group_key == key))
        return FlushOutcome(key, plan, None)
    # Members whose alerts expired are dead weight: drop them as we pass.
    connection.execute(
        delete(alert_group_members).where(
            alert_group_members.c.group_key == key,
            alert_group_members.c.alert_id.in_(
                select(alerts.c.alert_id).where(
                    alerts.c.alert_id == alert_group_members.c.alert_id, alerts.c.ends_at <= now
                )
            ),
        )
    )
    if plan.kind is None:
        connection.execute(
            update(alert_groups).where(alert_groups.c.group_key == key).values(next_flush_at=plan.next_flush_at)
        )
        return FlushOutcome(key, plan, None)
    seq = group.seq + 1
    dedup_key = f"{key}#{seq}"
    content = build_content(
        group=group,
        plan=plan,
        dedup_key=dedup_key,
        now=now,
        public_url=public_url,
        group_link=config.links.group,
        example_link=config.links.example,
        examples=config.examples,
    )
    unconfigured = config.unconfigured_receivers.get(group.receiver)
    if unconfigured is None and config.receiver(group.receiver) is None:
        unconfigured = "receiver no longer in the configuration"
    notification_id = connection.execute(
        insert(notifications)
        .values(
            dedup_key=dedup_key,
            group_key=key,
            receiver=group.receiver,
            tenant_id=group.tenant_id,
            severity=content.severity.value,
            status="suppressed" if unconfigured else "pending",
            attempts=0,
            anomaly_count=content.alert_count,
            title=content.title,
            payload=content.model_dump(mode="json"),
            last_error=unconfigured,
            created_at=now,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(index_elements=[notifications.c.dedup_key])
        .returning(notifications.c.notification_id)
    ).scalar()
    if plan.kind == "firing":
        ids = [m.alert_id for m in plan.include]
        connection.execute(
            update(alert_group_members)
            .where(alert_group_members.c.group_key == key, alert_group_members.c.alert_id.in_(ids))
            .values(notified_seq=seq)
        )
    connection.execute(
        update(alert_groups)
        .where(alert_groups.c.group_key == key)
        .values(seq=seq, last_notified_at=now, next_flush_at=plan.next_flush_at)
    )
    return FlushOutcome(key, plan, notification_id)


# --- dispatching --------------------------------------------------------------------------------


def claim_notifications(*, engine: Engine, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Lease due pending notifications to this process (a lease that lapses frees them again)."""
    due = (
        select(notifications.c.notification_id)
        .where(
            notifications.c.status == "pending",
            or_(notifications.c.next_attempt_at.is_(None), notifications.c.next_attempt_at <= now),
            or_(notifications.c.lease_until.is_(None), notifications.c.lease_until <= now),
        )
        .order_by(notifications.c.next_attempt_at, notifications.c.notification_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    with engine.begin() as connection:
        rows = connection.execute(
            update(notifications)
            .where(notifications.c.notification_id.in_(due))
            .values(lease_until=now + lease)
            .returning(
                notifications.c.notification_id,
                notifications.c.receiver,
                notifications.c.attempts,
                notifications.c.payload,
            )
        ).all()
    claims = [Claim(row.notification_id, row.receiver, row.attempts, dict(row.payload)) for row in rows]
    return sorted(claims, key=lambda claim: claim.notification_id)


def record_attempt(
    *,
    engine: Engine,
    notification_id: int,
    status: str,
    now: datetime,
    error: str | None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Store one attempt's outcome: `sent`, `failed`, or `pending` again with its next attempt time."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": notifications.c.attempts + 1,
        "last_attempt_at": now,
        "last_error": error,
        "lease_until": None,
        "next_attempt_at": next_attempt_at,
    }
    if status == "sent":
        values["sent_at"] = now
    with engine.begin() as connection:
        connection.execute(
            update(notifications)
            .where(notifications.c.notification_id == notification_id, notifications.c.status == "pending")
            .values(values)
        )


def release(*, engine: Engine, notification_ids: Sequence[int]) -> None:
    """Give back leases not used this round (a receiver was skipped after a failure)."""
    if notification_ids:
        with engine.begin() as connection:
            connection.execute(
                update(notifications)
                .where(notifications.c.notification_id.in_(list(notification_ids)))
                .values(lease_until=None)
            )


# --- housekeeping and system signals ---------------------------------------------------------------


def forget_old_alerts(*, engine: Engine, now: datetime, retention: timedelta) -> int:
    """Delete seen alerts past retention (longer than the topic's, so replays still dedup)."""
    with engine.begin() as connection:
        result = connection.execute(
            delete(alerts).where(
                alerts.c.ends_at < now - retention,
                ~select(alert_group_members.c.alert_id)
                .where(alert_group_members.c.alert_id == alerts.c.alert_id)
                .exists(),
            )
        )
    return int(result.rowcount or 0)


def anomalies_received_since(*, engine: Engine, since: datetime) -> int:
    """Distinct anomalies first seen after `since` (replays are not counted twice)."""
    with engine.connect() as connection:
        query = select(func.count()).where(and_(alerts.c.kind == "anomaly", alerts.c.received_at > since))
        return int(connection.execute(query).scalar_one())
