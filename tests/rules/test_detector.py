"""Rules as core.detection detectors, and the default pack on traffic featurised by the real engine."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import pytest

from core.contracts import Channel, DetectorFamily, FeatureVector, Severity
from core.detection import Detector, FeatureBatch, Thresholds, detect
from rules import DEFAULT_PACK, ActiveRule, RuleSet, detectors_for, load_pack, pack_detectors
from tests.rules.factories import T0, vector
from vigil.commands.rules import offline_features, registry_catalogue


def active(rule_id: str, expression: str, *, severity: Severity = Severity.WARNING, **extra: object) -> ActiveRule:
    return ActiveRule(
        rule_id=rule_id,
        version=3,
        name=rule_id.replace("-", " ").title(),
        description="",
        expression=expression,
        severity=severity,
        **extra,
    )


RULES = [
    active("small-card", "card_count_1h >= 5 and amount < 10", severity=Severity.CRITICAL),
    active("big", "amount > 1000"),
    active("acme-night", "hour < 6", tenant_id="acme"),
]
ROWS = [
    vector(0, amount="2.00", features={"card_count_1h": 6.0}),
    vector(1, amount="5000.00", features={"card_count_1h": None}, tenant="other"),
    vector(2, amount="3.00", occurred=T0.replace(hour=2), tenant="other"),
    vector(3, amount="3.00", occurred=T0.replace(hour=2), tenant="acme"),
]


def build(rules: list[ActiveRule]) -> list[Detector]:
    ruleset, invalid = RuleSet.compile(rules)
    assert invalid == {}
    return list(detectors_for(ruleset))


def test_each_rule_is_a_detector_with_its_id_version_and_severity() -> None:
    detectors = build(RULES)
    assert all(isinstance(d, Detector) for d in detectors)
    assert [(d.family, d.name, d.version) for d in detectors] == [
        (DetectorFamily.RULES, "rule:small-card", "3"),
        (DetectorFamily.RULES, "rule:big", "3"),
        (DetectorFamily.RULES, "rule:acme-night", "3"),
    ]
    batch = FeatureBatch(ROWS)
    scores = [d.score(batch) for d in detectors]
    assert [np.flatnonzero(~np.isnan(s.normalised)).tolist() for s in scores] == [[0], [1], [3]]
    assert scores[0].normalised[0] == 100.0 and scores[0].raw.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert Thresholds().decide(scores[0]) == [(0, Severity.CRITICAL)]  # the rule's severity, not score bands


def test_anomalies_carry_readable_reasons_with_the_values_read() -> None:
    anomalies = detect(detectors=build(RULES), batch=FeatureBatch(ROWS), thresholds=Thresholds())
    by_name = {a.detector_name: a for a in anomalies}
    assert set(by_name) == {"rule:small-card", "rule:big", "rule:acme-night"}
    card = by_name["rule:small-card"]
    assert (card.transaction_id, card.severity, card.detector_version) == ("tx-0", Severity.CRITICAL, "3")
    assert card.reasons[0].text == "Rule 'Small Card' (version 3) matched: card_count_1h = 6, amount = 2."
    assert [(r.feature, r.value) for r in card.reasons[1:]] == [("card_count_1h", 6.0), ("amount", 2.0)]
    assert card.reasons[1].text == "card_count_1h was 6 for this transaction."
    assert by_name["rule:acme-night"].tenant_id == "acme"


def test_detectors_share_one_evaluation_per_batch_and_pickle() -> None:
    detectors = build(RULES)
    batch = FeatureBatch(ROWS)
    detectors[0].score(batch)
    run = detectors[0]._run  # type: ignore[attr-defined]
    matches = run._matches
    detectors[1].score(batch)
    assert run._matches is matches  # the second rule reused the batch's match matrix
    clones = pickle.loads(pickle.dumps(detectors))
    for clone, original in zip(clones, detectors, strict=True):
        np.testing.assert_array_equal(clone.score(batch).normalised, original.score(batch).normalised)


def test_catalogue_shipped_in_rules_matches_the_feature_registry() -> None:
    from rules import default_catalogue

    shipped = {(f.name, f.type, f.source) for f in default_catalogue()}
    live = {(f.name, f.type, f.source) for f in registry_catalogue()}
    assert shipped == live


def _featurised(vectors: list[FeatureVector]) -> list[FeatureVector]:
    add = offline_features()
    return list(add(sorted(vectors, key=lambda v: (v.transaction.occurred_at, v.transaction.transaction_id))))


@pytest.fixture(scope="module")
def default_pack() -> list[Detector]:
    detectors = pack_detectors(DEFAULT_PACK, catalogue=registry_catalogue())
    assert len(detectors) == len(load_pack(DEFAULT_PACK))
    return detectors


def test_default_pack_flags_a_card_testing_burst_and_leaves_normal_traffic_alone(
    default_pack: list[Detector],
) -> None:
    vectors: list[FeatureVector] = []
    # A month of ordinary shopping: 20 accounts, one card and one device each, a purchase every ~6 hours.
    for account in range(20):
        for k in range(120):
            vectors.append(
                vector(
                    account * 1000 + k,
                    transaction_id=f"n-{account}-{k}",
                    amount=f"{20 + (account * 7 + k * 13) % 180}.{k % 100:02d}",
                    account=f"acc-{account}",
                    card=f"card-{account}",
                    device=f"dev-{account}",
                    merchant=f"m-{(account + k) % 15}",
                    occurred=T0 - timedelta(days=30) + timedelta(hours=6 * k, minutes=account),
                )
            )
    # Card testing: one stolen card, 12 payments of 1.00 at different merchants within 11 minutes.
    burst = [
        vector(
            0,
            transaction_id=f"ct-{k}",
            amount="1.00",
            account="acc-victim",
            card="card-stolen",
            device="dev-bot",
            merchant=f"web-{k}",
            channel=Channel.ECOMMERCE,
            occurred=T0 + timedelta(minutes=k),
        )
        for k in range(12)
    ]
    batch = FeatureBatch(_featurised(vectors + burst))
    anomalies = detect(detectors=default_pack, batch=batch, thresholds=Thresholds())
    flagged = {(a.transaction_id, a.detector_name) for a in anomalies}
    card_testing = {tx for tx, name in flagged if name == "rule:card-testing-burst"}
    assert card_testing == {f"ct-{k}" for k in range(2, 12)}  # the 3rd payment onwards (counts include itself)
    assert not {tx for tx, _ in flagged if tx.startswith("n-")}, "ordinary traffic must not be flagged"
    example = next(a for a in anomalies if a.transaction_id == "ct-11")
    assert example.severity == Severity.CRITICAL
    assert "card_count_1h = 12" in example.reasons[0].text and "card_amount_max_1h = 1" in example.reasons[0].text
