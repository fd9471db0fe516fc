"""Rule storage on the real PostgreSQL: versions, immutability, audit, seeding, hot reload."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError

from core.contracts import Severity
from core.schema import audit_log, rule_versions
from rules import (
    DEFAULT_PACK,
    InvalidRuleError,
    RuleEngine,
    RuleExistsError,
    RuleNotFoundError,
    RuleSyntaxError,
    RuleVersionConflictError,
    create_rule,
    disable,
    enable,
    get_rule,
    get_version,
    list_rules,
    list_versions,
    load_active_rules,
    load_pack,
    publish_version,
    rules_fingerprint,
    seed_pack,
)

pytestmark = pytest.mark.integration


def _audit(db: Engine, rule_id: str) -> list[tuple[str, str, dict[str, object]]]:
    with db.connect() as connection:
        rows = connection.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.details)
            .where(audit_log.c.object_type == "rule", audit_log.c.object_id == rule_id)
            .order_by(audit_log.c.audit_id)
        )
        return [(row.action, row.actor, row.details) for row in rows]


def test_create_publish_disable_enable_keeps_every_version_and_audits_each_change(db: Engine) -> None:
    created = create_rule(
        engine=db,
        rule_id="big-spend",
        name="Big spend",
        expression="amount > 1000",
        severity="warning",
        author="ana",
    )
    assert (created.current_version, created.enabled, created.author) == (1, True, "ana")

    second = publish_version(
        engine=db, rule_id="big-spend", author="bo", expression="amount > 5000", severity="critical"
    )
    assert (second.current_version, second.expression, second.severity) == (2, "amount > 5000", Severity.CRITICAL)
    assert second.name == "Big spend"  # carried over

    assert disable(engine=db, rule_id="big-spend", actor="cy", reason="noisy").enabled is False
    assert disable(engine=db, rule_id="big-spend", actor="cy").enabled is False  # idempotent, not audited twice
    assert enable(engine=db, rule_id="big-spend", actor="cy").enabled is True
    assert get_rule(engine=db, rule_id="big-spend").current_version == 2  # switching is not a new version

    versions = list_versions(engine=db, rule_id="big-spend")
    assert [(v.version, v.expression, v.author) for v in versions] == [
        (1, "amount > 1000", "ana"),
        (2, "amount > 5000", "bo"),
    ]
    assert get_version(engine=db, rule_id="big-spend", version=1).severity == Severity.WARNING
    audit = _audit(db, "big-spend")
    assert [(action, actor) for action, actor, _ in audit] == [
        ("rule.create", "ana"),
        ("rule.version", "bo"),
        ("rule.disable", "cy"),
        ("rule.enable", "cy"),
    ]
    assert audit[1][2]["changed"] == ["expression", "severity"] and audit[1][2]["version"] == 2
    assert audit[2][2]["reason"] == "noisy"


def test_publishing_identical_content_creates_no_version(db: Engine) -> None:
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="ana")
    same = publish_version(engine=db, rule_id="r1", author="bo", expression="amount > 1")
    assert same.current_version == 1
    assert len(list_versions(engine=db, rule_id="r1")) == 1


def test_published_versions_are_immutable_in_the_database(db: Engine) -> None:
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="ana")
    with pytest.raises(DBAPIError, match="immutable"), db.begin() as connection:
        connection.execute(update(rule_versions).values(expression="true"))
    with pytest.raises(DBAPIError, match="immutable"), db.begin() as connection:
        connection.execute(text("DELETE FROM rule_versions"))
    assert get_rule(engine=db, rule_id="r1").expression == "amount > 1"


def test_invalid_input_is_rejected_before_anything_is_stored(db: Engine) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        create_rule(engine=db, rule_id="bad", name="Bad", expression="amout > 1", author="ana")
    assert (caught.value.line, caught.value.column) == (1, 1)
    with pytest.raises(InvalidRuleError, match="id: String should match pattern"):
        create_rule(engine=db, rule_id="Not Valid!", name="x", expression="amount > 1", author="ana")
    with pytest.raises(InvalidRuleError, match="severity"):
        create_rule(engine=db, rule_id="sev", name="x", expression="amount > 1", severity="urgent", author="ana")
    assert list_rules(engine=db) == []
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="ana")
    with pytest.raises(RuleExistsError):
        create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 2", author="ana")
    with pytest.raises(RuleSyntaxError):
        publish_version(engine=db, rule_id="r1", author="bo", expression="amount >")
    with pytest.raises(RuleNotFoundError):
        publish_version(engine=db, rule_id="nope", author="bo", expression="amount > 1")
    with pytest.raises(RuleNotFoundError):
        get_version(engine=db, rule_id="r1", version=9)
    assert len(list_versions(engine=db, rule_id="r1")) == 1


def test_expected_version_guards_concurrent_edits(db: Engine) -> None:
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="ana")
    publish_version(engine=db, rule_id="r1", author="ana", expression="amount > 2", expected_version=1)
    with pytest.raises(RuleVersionConflictError, match="version 2, not 1"):
        publish_version(engine=db, rule_id="r1", author="bo", expression="amount > 3", expected_version=1)


def test_tenant_scope_listing_and_active_rules(db: Engine) -> None:
    create_rule(engine=db, rule_id="global", name="G", expression="amount > 1", author="a")
    create_rule(engine=db, rule_id="acme-only", name="A", expression="amount > 2", author="a", tenant_id="acme")
    create_rule(engine=db, rule_id="other-only", name="O", expression="amount > 3", author="a", tenant_id="other")
    create_rule(engine=db, rule_id="off", name="Off", expression="amount > 4", author="a", enabled=False)
    assert [r.rule_id for r in list_rules(engine=db, tenant_id="acme")] == ["acme-only", "global", "off"]
    assert [r.rule_id for r in list_rules(engine=db, include_disabled=False)] == ["acme-only", "global", "other-only"]
    active = {r.rule_id: r for r in load_active_rules(engine=db)}
    assert set(active) == {"acme-only", "global", "other-only"}
    assert active["acme-only"].tenant_id == "acme" and active["global"].tenant_id is None


def test_fingerprint_changes_exactly_when_the_active_set_may_change(db: Engine) -> None:
    empty = rules_fingerprint(engine=db)
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="a")
    one = rules_fingerprint(engine=db)
    assert one != empty and rules_fingerprint(engine=db) == one
    publish_version(engine=db, rule_id="r1", author="a", description="only words")
    two = rules_fingerprint(engine=db)
    assert two != one
    disable(engine=db, rule_id="r1", actor="a")
    assert rules_fingerprint(engine=db) not in (one, two)


def test_seeding_the_default_pack_is_idempotent_and_respects_analyst_edits(db: Engine) -> None:
    drafts = load_pack(DEFAULT_PACK)
    first = seed_pack(engine=db, drafts=drafts)
    assert sorted(first.created) == sorted(d.rule_id for d in drafts) and len(drafts) >= 5
    again = seed_pack(engine=db, drafts=drafts)
    assert again.created == [] and sorted(again.unchanged) == sorted(first.created)

    publish_version(engine=db, rule_id="card-testing-burst", author="ana", expression="card_count_1h >= 8")
    kept = seed_pack(engine=db, drafts=drafts)
    assert kept.kept == ["card-testing-burst"]
    assert get_rule(engine=db, rule_id="card-testing-burst").expression == "card_count_1h >= 8"
    edited = seed_pack(engine=db, drafts=drafts, update=True)
    assert edited.edited == ["card-testing-burst"] and edited.updated == [], "--update keeps an analyst's tuning"
    assert get_rule(engine=db, rule_id="card-testing-burst").expression == "card_count_1h >= 8"
    forced = seed_pack(engine=db, drafts=drafts, update=True, force=True)
    assert forced.updated == ["card-testing-burst"]
    assert get_rule(engine=db, rule_id="card-testing-burst").current_version == 3

    # A newer pack: --update publishes it over the seeder's own versions, without --force.
    newer = [
        d.model_copy(update={"expression": "amount > 99999"}) if d.rule_id == "impossible-travel" else d for d in drafts
    ]
    assert seed_pack(engine=db, drafts=newer, update=True).updated == ["impossible-travel"]
    assert get_rule(engine=db, rule_id="impossible-travel").expression == "amount > 99999"


def test_engine_reloads_on_change_and_keeps_rules_when_the_database_fails(db: Engine) -> None:
    now = [0.0]
    engine = RuleEngine(engine=db, poll_seconds=2.0, clock=lambda: now[0])
    assert engine.current().rules == ()
    create_rule(engine=db, rule_id="r1", name="R1", expression="amount > 1", author="a")
    assert engine.current().rules == ()  # not polled yet: the next poll is due in 2 s
    now[0] = 2.0
    assert [r.rule.version for r in engine.current().rules] == [1]
    reloads = engine.reloads
    now[0] = 4.0
    engine.current()
    assert engine.reloads == reloads  # unchanged fingerprint: nothing recompiled
    publish_version(engine=db, rule_id="r1", author="a", expression="amount > 2")
    now[0] = 6.0
    assert [r.rule.version for r in engine.current().rules] == [2]

    broken = RuleEngine(engine=db, poll_seconds=0.0)
    broken.refresh()
    loaded = broken.current()
    broken._engine = _unreachable()  # a database outage after start
    assert broken.current() is loaded


def _unreachable() -> Engine:
    from sqlalchemy import create_engine

    return create_engine("postgresql+psycopg://nobody:nothing@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
