"""Rule engine benchmark: µs per transaction for 100 active rules at batch size 1,000.

Target (issue 5): 100 active rules add <= 20 µs per transaction at batch size 1,000.
Reference: interpreting rules one event at a time costs ~20 µs per rule, ~2 ms per
transaction for 100 rules.

Run: .venv/bin/python -m bench.rules [--rules 100] [--batch 1000] [--repeat 30]

Figures printed (median over repeats, this machine):
- evaluate:   the vectorised program alone, columns already extracted;
- +columns:   plus extracting the referenced columns from FeatureVectors (per batch);
- detectors:  what the detection service runs: 100 RuleDetector.score() calls + decide;
- batch of 1: the same rules evaluated one transaction at a time, for contrast.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.contracts import Channel, FeatureVector, Severity, Transaction
from core.detection import FeatureBatch, Thresholds
from rules import ActiveRule, Columns, RuleSet, default_catalogue, detectors_for

COUNTRIES = ["DE", "FR", "GB", "US", "NG", "RU", "BR", "IN", "CN", "ES"]
CATEGORIES = ["5411", "5812", "5967", "4829", "6051", "7995", "5999", "4121"]
CHANNELS = list(Channel)


def make_vectors(n: int, rng: random.Random) -> list[FeatureVector]:
    names = [spec.name for spec in default_catalogue() if spec.source == "feature"]
    start = datetime(2026, 11, 20, tzinfo=UTC)
    vectors = []
    for i in range(n):
        tx = Transaction(
            transaction_id=f"tx-{i}",
            occurred_at=start + timedelta(seconds=37 * i),
            tenant_id=rng.choice(["acme", "globex"]),
            account_id=f"acc-{rng.randrange(500)}",
            card_id=None if rng.random() < 0.2 else f"card-{rng.randrange(800)}",
            merchant_id=f"m-{rng.randrange(300)}",
            merchant_category=rng.choice(CATEGORIES),
            amount=Decimal(f"{rng.lognormvariate(3.5, 1.2):.2f}") + Decimal("0.01"),
            currency="EUR",
            channel=rng.choice(CHANNELS),
            country=rng.choice(COUNTRIES),
            device_id=None if rng.random() < 0.3 else f"dev-{rng.randrange(900)}",
        )
        amount = float(tx.amount)
        features = {name: None if rng.random() < 0.1 else _feature(name, amount, rng) for name in names}
        vectors.append(FeatureVector(transaction=tx, features=features, feature_set_version=1))
    return vectors


def _feature(name: str, amount: float, rng: random.Random) -> float:
    """A plausible value per kind of feature, so rules fire about as rarely as in production."""
    if name.startswith("account_new_"):
        return float(rng.random() < 0.05)
    if "_count_" in name or "history_count" in name:
        return float(1 + int(rng.expovariate(0.5)))
    if "distinct" in name:
        return float(1 + int(rng.expovariate(1.5)))
    if "zscore" in name:
        return round(rng.gauss(0, 1), 3)
    if "seconds_since_last" in name:
        return round(rng.expovariate(1 / 36_000), 1)
    if "velocity" in name:
        return round(rng.expovariate(1 / 20), 2)
    if "typicality" in name or name == "hour_of_day":
        return round(rng.random(), 3)
    return round(amount * rng.lognormvariate(0, 0.5), 2)  # amount statistics: near this amount


def make_rules(count: int, rng: random.Random) -> list[ActiveRule]:
    """A realistic mix: thresholds, windows, flags, in-lists, between, null handling, functions."""
    windows = ["1h", "24h", "7d", "30d"]
    entities = ["account", "card", "merchant", "device", "ip"]
    templates: list[Callable[[], str]] = [
        lambda: (
            f"{rng.choice(entities)}_count_{rng.choice(windows)} >= {rng.randint(3, 30)} "
            f"and amount < {rng.randint(5, 50)}"
        ),
        lambda: f"amount > {rng.randint(500, 5000)} and account_new_device and account_new_country",
        lambda: (
            f"country in ({', '.join(repr(c) for c in rng.sample(COUNTRIES, 3))}) "
            f"and amount >= {rng.randint(100, 2000)}"
        ),
        lambda: (
            f"merchant_category in ('4829', '6051', '7995') and coalesce(account_amount_zscore, 0) > "
            f"{rng.uniform(2, 6):.1f}"
        ),
        lambda: (
            f"account_geo_velocity_kmh > {rng.randint(300, 1200)} or account_distinct_countries_24h >= "
            f"{rng.randint(3, 6)}"
        ),
        lambda: (
            f"channel == '{rng.choice(CHANNELS).value}' and hour between {rng.randint(0, 3)} and "
            f"{rng.randint(4, 6)} and not account_new_merchant"
        ),
        lambda: (
            f"amount / coalesce({rng.choice(entities)}_amount_mean_{rng.choice(windows)}, amount) > "
            f"{rng.randint(3, 12)}"
        ),
        lambda: f"card_id is null and device_id is not null and amount > {rng.randint(50, 900)}",
        lambda: (
            f"device_distinct_accounts_24h >= {rng.randint(3, 8)} or ip_distinct_accounts_24h >= {rng.randint(5, 15)}"
        ),
        lambda: (
            f"max({rng.choice(entities)}_amount_max_24h, amount) > {rng.randint(1000, 8000)} "
            f"and starts_with(merchant_id, 'm-{rng.randint(1, 9)}')"
        ),
    ]
    rules = []
    for i in range(count):
        expression = templates[i % len(templates)]()
        rules.append(
            ActiveRule(
                rule_id=f"bench-{i:03d}",
                version=1,
                name=f"Bench rule {i}",
                description="",
                expression=expression,
                severity=rng.choice(list(Severity)),
                tenant_id="acme" if i % 7 == 0 else None,
            )
        )
    return rules


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    vectors = make_vectors(args.batch, rng)
    active = make_rules(args.rules, rng)
    started = time.perf_counter()
    ruleset, invalid = RuleSet.compile(active)
    compile_ms = (time.perf_counter() - started) * 1000
    assert not invalid, invalid
    n = len(vectors)

    columns = Columns(vectors)
    matches = ruleset.evaluate(columns)
    hits = int(matches.sum())

    def evaluate_only() -> object:
        ruleset._last = None  # defeat the per-batch cache: time a real evaluation
        return ruleset.evaluate(columns)

    def with_columns() -> object:
        return ruleset.evaluate(Columns(vectors))

    detectors = detectors_for(ruleset)
    thresholds = Thresholds()

    def detector_path() -> object:
        batch = FeatureBatch(vectors)
        return [thresholds.decide(d.score(batch)) for d in detectors]

    singles = [[v] for v in vectors[:200]]

    def one_at_a_time() -> object:
        return [ruleset.evaluate(Columns(single)) for single in singles]

    evaluate_s = median_seconds(evaluate_only, args.repeat)
    columns_s = median_seconds(with_columns, args.repeat)
    detectors_s = median_seconds(detector_path, args.repeat)
    singles_s = median_seconds(one_at_a_time, max(3, args.repeat // 10))

    print(f"rules bench: {len(ruleset.rules)} rules, batch {n}, {ruleset.instruction_count} vector instructions")
    print(f"  compile              {compile_ms:8.1f} ms for the rule set")
    print(f"  matches              {hits} rule hits in the batch ({hits / n:.2f} per transaction)")
    print(f"  evaluate             {evaluate_s * 1e6 / n:8.2f} µs/tx   ({evaluate_s * 1e3:.2f} ms per batch)")
    print(f"  +columns             {columns_s * 1e6 / n:8.2f} µs/tx   ({columns_s * 1e3:.2f} ms per batch)")
    print(f"  detectors (service)  {detectors_s * 1e6 / n:8.2f} µs/tx   ({detectors_s * 1e3:.2f} ms per batch)")
    print(f"  batch of 1           {singles_s * 1e6 / len(singles):8.2f} µs/tx   (same rules, one event at a time)")
    target = 20.0
    worst = max(evaluate_s, columns_s, detectors_s) * 1e6 / n
    print(f"  target <= {target:.0f} µs/tx at batch 1,000: {'met' if worst <= target else 'NOT met'} ({worst:.2f})")


if __name__ == "__main__":
    main()
