"""Case queries and changes. Every change is audited in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    Connection,
    DateTime,
    Double,
    Integer,
    String,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert

from api.audit import service as audit
from api.cases.models import VERDICT_LABELS, CaseStatus, CaseUpdate
from api.paging import cursor_datetime, cursor_float, cursor_uuid, decode_cursor, encode_cursor
from core.contracts import AnomalyStatus
from core.schema import anomalies, case_notes, cases, labels

SEVERITY_RANK: Final = {"info": 1, "warning": 2, "critical": 3}
_RANK_SEVERITY: Final = {rank: name for name, rank in SEVERITY_RANK.items()}
_ANOMALY_STATUS: Final = {
    CaseStatus.OPEN: AnomalyStatus.OPEN,
    CaseStatus.INVESTIGATING: AnomalyStatus.ACKNOWLEDGED,
    CaseStatus.CONFIRMED_FRAUD: AnomalyStatus.RESOLVED,
    CaseStatus.FALSE_POSITIVE: AnomalyStatus.RESOLVED,
    CaseStatus.EXPECTED: AnomalyStatus.RESOLVED,
}
ACTIVE_STATUSES: Final = (CaseStatus.OPEN.value, CaseStatus.INVESTIGATING.value)


def _scope(tenants: Sequence[str] | None) -> list[Any]:
    return [] if tenants is None else [cases.c.tenant_id.in_(list(tenants))]


def list_cases(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    statuses: Sequence[str] = (),
    assignee: str | None = None,
    severities: Sequence[str] = (),
    entity_type: str | None = None,
    entity_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    sort: str = "-event_time",
    cursor: str | None = None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    c = cases.c
    conditions = _scope(tenants)
    if statuses:
        conditions.append(c.status.in_(list(statuses)))
    if assignee is not None:
        conditions.append(c.assignee == assignee)
    if severities:
        conditions.append(c.max_severity.in_(list(severities)))
    if entity_type is not None:
        conditions.append(c.entity_type == entity_type)
    if entity_id is not None:
        conditions.append(c.entity_id == entity_id)
    if start is not None:
        conditions.append(c.event_time >= start)
    if end is not None:
        conditions.append(c.event_time < end)
    by_score = sort == "-max_score"
    columns = [c.max_score, c.event_time, c.case_id] if by_score else [c.event_time, c.case_id]
    descending = sort.startswith("-")
    if cursor is not None:
        values = decode_cursor(cursor, kind=f"cases{sort}", arity=len(columns))
        bound: list[Any] = []
        if by_score:
            bound.append(literal(cursor_float(values.pop(0)), Double))
        bound.append(literal(cursor_datetime(values[0]), DateTime(timezone=True)))
        bound.append(literal(cursor_uuid(values[1]), PG_UUID(as_uuid=True)))
        key = tuple_(*columns)
        conditions.append(key < tuple_(*bound) if descending else key > tuple_(*bound))
    query = (
        select(cases)
        .where(and_(True, *conditions))
        .order_by(*(col.desc() if descending else col.asc() for col in columns))
        .limit(limit + 1)
    )
    rows = [dict(row._mapping) for row in connection.execute(query)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        key_values = [last["event_time"], last["case_id"]]
        if by_score:
            key_values = [last["max_score"], *key_values]
        next_cursor = encode_cursor(f"cases{sort}", key_values)
    return rows, next_cursor


def get_case(
    *, connection: Connection, tenants: Sequence[str] | None, case_id: UUID, for_update: bool = False
) -> dict[str, Any] | None:
    query = select(cases).where(cases.c.case_id == case_id, *_scope(tenants))
    if for_update:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return None if row is None else dict(row._mapping)


def notes_of(*, connection: Connection, case_id: UUID) -> list[dict[str, Any]]:
    query = select(case_notes).where(case_notes.c.case_id == case_id).order_by(case_notes.c.note_id)
    return [dict(row._mapping) for row in connection.execute(query)]


def analyst_label(*, connection: Connection, tenant_id: str, transaction_id: str) -> dict[str, Any] | None:
    query = select(labels).where(
        labels.c.tenant_id == tenant_id,
        labels.c.transaction_id == transaction_id,
        labels.c.source == "analyst",
    )
    row = connection.execute(query).first()
    return None if row is None else dict(row._mapping)


def update_case(
    *, connection: Connection, tenants: Sequence[str] | None, case_id: UUID, change: CaseUpdate, actor: str
) -> dict[str, Any] | None:
    """Apply status/assignee/note changes with their labels and audit entries; None if not visible."""
    current = get_case(connection=connection, tenants=tenants, case_id=case_id, for_update=True)
    if current is None:
        return None
    tenant_id = current["tenant_id"]
    values: dict[str, Any] = {}
    audit_entries: list[tuple[str, dict[str, Any]]] = []
    if change.status is not None and change.status.value != current["status"]:
        values["status"] = change.status.value
        audit_entries.append(("case.status", {"from": current["status"], "to": change.status.value}))
        _apply_verdict(connection=connection, case=current, status=change.status, actor=actor, note=change.note)
    if "assignee" in change.model_fields_set and change.assignee != current["assignee"]:
        values["assignee"] = change.assignee
        audit_entries.append(("case.assign", {"from": current["assignee"], "to": change.assignee}))
    if change.note is not None:
        note_id = connection.execute(
            insert(case_notes)
            .values(case_id=case_id, tenant_id=tenant_id, author=actor, body=change.note)
            .returning(case_notes.c.note_id)
        ).scalar_one()
        audit_entries.append(("case.note", {"note_id": note_id}))
    if values or change.note is not None:
        values["updated_at"] = func.now()
        connection.execute(update(cases).where(cases.c.case_id == case_id).values(**values))
    for action, details in audit_entries:
        audit.record(
            connection=connection,
            actor=actor,
            tenant_id=tenant_id,
            action=action,
            object_type="case",
            object_id=str(case_id),
            details={"transaction_id": current["transaction_id"], **details},
        )
    return get_case(connection=connection, tenants=tenants, case_id=case_id)


def _apply_verdict(
    *, connection: Connection, case: dict[str, Any], status: CaseStatus, actor: str, note: str | None
) -> None:
    """Write (or withdraw) the analyst label and move the transaction's anomalies along."""
    tenant_id, transaction_id = case["tenant_id"], case["transaction_id"]
    label = VERDICT_LABELS.get(status)
    if label is not None:
        statement = pg_insert(labels).values(
            tenant_id=tenant_id,
            transaction_id=transaction_id,
            label=label,
            source="analyst",
            author=actor,
            reason=note,
            event_time=case["event_time"],
        )
        connection.execute(
            statement.on_conflict_do_update(
                constraint="labels_tenant_transaction_source_key",
                set_={
                    "label": statement.excluded.label,
                    "author": statement.excluded.author,
                    "reason": statement.excluded.reason,
                    "labelled_at": func.now(),
                },
            )
        )
        audit.record(
            connection=connection,
            actor=actor,
            tenant_id=tenant_id,
            action="label.set",
            object_type="label",
            object_id=transaction_id,
            details={"label": label, "source": "analyst"},
        )
    else:
        removed = connection.execute(
            delete(labels)
            .where(
                labels.c.tenant_id == tenant_id,
                labels.c.transaction_id == transaction_id,
                labels.c.source == "analyst",
            )
            .returning(labels.c.label)
        ).first()
        if removed is not None:
            audit.record(
                connection=connection,
                actor=actor,
                tenant_id=tenant_id,
                action="label.withdraw",
                object_type="label",
                object_id=transaction_id,
                details={"label": removed[0], "source": "analyst"},
            )
    connection.execute(
        update(anomalies)
        .where(anomalies.c.tenant_id == tenant_id, anomalies.c.transaction_id == transaction_id)
        .values(status=_ANOMALY_STATUS[status].value)
    )


def _severity_rank(column: Any) -> Any:
    return case(*((column == name, rank) for name, rank in SEVERITY_RANK.items()), else_=0)


def entity_groups(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    active_only: bool = False,
    cursor: str | None = None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Cases aggregated per (tenant, entity), most recently active first."""
    c = cases.c
    conditions = _scope(tenants)
    if entity_type is not None:
        conditions.append(c.entity_type == entity_type)
    if entity_id is not None:
        conditions.append(c.entity_id == entity_id)
    last_event = func.max(c.event_time)
    open_cases = func.count().filter(c.status.in_(ACTIVE_STATUSES))
    query = (
        select(
            c.tenant_id,
            c.entity_type,
            c.entity_id,
            func.count().label("case_count"),
            open_cases.label("open_cases"),
            func.sum(c.anomaly_count).cast(Integer).label("anomaly_count"),
            func.max(c.max_score).label("max_score"),
            func.max(_severity_rank(c.max_severity)).label("severity_rank"),
            last_event.label("last_event_time"),
        )
        .where(and_(True, *conditions))
        .group_by(c.tenant_id, c.entity_type, c.entity_id)
    )
    if active_only:
        query = query.having(open_cases > 0)
    key = tuple_(last_event, c.tenant_id, c.entity_type, c.entity_id)
    if cursor is not None:
        values = decode_cursor(cursor, kind="entities", arity=4)
        bound = tuple_(
            literal(cursor_datetime(values[0]), DateTime(timezone=True)),
            literal(str(values[1]), String),
            literal(str(values[2]), String),
            literal(str(values[3]), String),
        )
        query = query.having(key < bound)
    query = query.order_by(last_event.desc(), c.tenant_id.desc(), c.entity_type.desc(), c.entity_id.desc())
    rows = []
    for row in connection.execute(query.limit(limit + 1)):
        item = dict(row._mapping)
        item["max_severity"] = _RANK_SEVERITY.get(item.pop("severity_rank"), "info")
        rows.append(item)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            "entities", [last["last_event_time"], last["tenant_id"], last["entity_type"], last["entity_id"]]
        )
    return rows, next_cursor
