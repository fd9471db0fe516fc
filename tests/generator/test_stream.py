"""The synthetic stream: deterministic, valid, realistic habits and recognisable fraud typologies."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from core.contracts import Transaction
from ingestion import Valid, parse_transaction
from vigil.generator import TYPOLOGIES, GeneratorConfig, GeneratorConfigError, Label, SyntheticStream
from vigil.generator.population import CATEGORY_SPEND, PER_USD
from vigil.generator.stream import _MCCS
from vigil.generator.world import COUNTRIES, haversine_km

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def run(**overrides: Any) -> tuple[SyntheticStream, list[dict[str, Any]], list[Label]]:
    config = GeneratorConfig(**{"rate": 500, "duration": 60, "seed": 7, "start": START, **overrides})
    stream = SyntheticStream(config)
    transactions: list[dict[str, Any]] = []
    labels: list[Label] = []
    for batch in stream.batches():
        transactions.extend(batch.transactions)
        labels.extend(batch.labels)
    return stream, transactions, labels


@pytest.fixture(scope="module")
def big() -> tuple[SyntheticStream, list[dict[str, Any]], list[Label]]:
    return run(rate=2000, duration=60, accounts=3000, merchants=400, fraud_rate=0.03, seed=11)


def test_same_seed_same_bytes_other_seed_other_data() -> None:
    _, first, first_labels = run()
    _, again, again_labels = run()
    _, other, _ = run(seed=8)
    assert b"".join(map(orjson.dumps, first)) == b"".join(map(orjson.dumps, again))
    assert first_labels == again_labels
    assert [t["account_id"] for t in first[:50]] != [t["account_id"] for t in other[:50]]


def test_the_fraud_settings_do_not_change_legitimate_traffic() -> None:
    _, low, low_labels = run(fraud_rate=0.0)
    _, high, high_labels = run(fraud_rate=0.05)
    assert low_labels == []
    fraud_ids = {label.transaction_id for label in high_labels}
    same = [a == b for a, b in zip(low, high, strict=True) if a["transaction_id"] not in fraud_ids]
    # Episodes also contain unlabelled legitimate-looking steps (the first leg of impossible travel).
    assert sum(same) / len(same) > 0.99


def test_count_time_range_and_order_follow_the_config() -> None:
    _, transactions, _ = run(rate=300, duration=20, event_rate=10)
    assert len(transactions) == 6000
    times = [datetime.fromisoformat(t["occurred_at"]) for t in transactions]
    assert times == sorted(times)
    assert times[0] >= START
    # event_rate 10/s: 6000 transactions cover 600 s of event time.
    assert timedelta(seconds=590) < times[-1] - START <= timedelta(seconds=600)
    assert len({t["transaction_id"] for t in transactions}) == 6000


@pytest.mark.parametrize("fraud_rate", [0.0, 0.01, 0.05, 0.2])
def test_the_fraud_share_is_the_one_asked_for(fraud_rate: float) -> None:
    _, transactions, labels = run(rate=1000, duration=20, fraud_rate=fraud_rate)
    share = len(labels) / len(transactions)
    assert share == pytest.approx(fraud_rate, abs=0.002)
    ids = {t["transaction_id"] for t in transactions}
    assert {label.transaction_id for label in labels} <= ids
    assert all(label.label == "fraud" and label.typology in TYPOLOGIES for label in labels)


def test_every_transaction_satisfies_the_contract_and_carries_no_label(
    big: tuple[SyntheticStream, list[dict[str, Any]], list[Label]],
) -> None:
    _, transactions, labels = big
    for record in transactions:
        assert isinstance(parse_transaction(orjson.dumps(record), max_bytes=65_536), Valid), record
        assert not {"label", "typology", "fraud", "is_fraud"} & set(record)
    for record in transactions[:300]:
        Transaction.model_validate(record)
    assert {label.typology for label in labels} == set(TYPOLOGIES)
    by_id = {t["transaction_id"]: t for t in transactions}
    assert all(by_id[label.transaction_id]["tenant_id"] == label.tenant_id for label in labels)
    assert all(by_id[label.transaction_id]["occurred_at"] == label.occurred_at for label in labels)


def test_legitimate_customers_keep_their_habits(big: tuple[SyntheticStream, list[dict[str, Any]], list[Label]]) -> None:
    stream, transactions, labels = big
    pop = stream.population
    fraud = {label.transaction_id for label in labels}
    index = {account_id: a for a, account_id in enumerate(pop.account_ids)}
    legit = [t for t in transactions if t["transaction_id"] not in fraud]
    at_home = at_usual = own_card = 0
    for t in legit:
        a = index[t["account_id"]]
        home = COUNTRIES[int(pop.home[a])]
        at_home += t["country"] == home.code and t["currency"] == home.currency
        at_usual += t["merchant_id"] in {pop.merchant_ids[m] for m in pop.usual[a]}
        own_card += t["card_id"] in pop.cards[a]
    assert at_home / len(legit) > 0.97
    assert at_usual / len(legit) > 0.8
    assert own_card == len(legit)
    # Busy accounts pay more often than quiet ones.
    counts = Counter(t["account_id"] for t in legit)
    busiest = sorted(range(pop.size), key=lambda a: pop.activity[a])[-100:]
    quietest = sorted(range(pop.size), key=lambda a: pop.activity[a])[:100]
    assert sum(counts[pop.account_ids[a]] for a in busiest) > 5 * sum(counts[pop.account_ids[a]] for a in quietest)


def test_legitimate_located_payments_never_travel_faster_than_an_airliner() -> None:
    # Few merchants for many countries (the recall test's 60 for 20): residents of a country without
    # shops must shop in one nearby country, not at merchants scattered over the world.
    stream, transactions, labels = run(rate=300, duration=40, accounts=300, merchants=60, fraud_rate=0.0, seed=1)
    assert not labels
    assert any(len(pool) < 2 for pool in stream.population.by_country), "the case under test: shopless countries"
    last: dict[str, tuple[datetime, float, float]] = {}
    distances = []
    for t in transactions:
        if "lat" not in t:
            continue
        at = datetime.fromisoformat(t["occurred_at"].replace("Z", "+00:00"))
        previous = last.get(t["account_id"])
        if previous is not None:
            distances.append(haversine_km(previous[1], previous[2], t["lat"], t["lon"]))
        last[t["account_id"]] = (at, t["lat"], t["lon"])
    assert len(distances) > 1000
    # Merchants scatter ~17 km around one city per country: no legitimate hop is intercontinental.
    assert max(distances) < 2500, max(distances)


def test_accounts_pay_in_their_usual_local_hours() -> None:
    # Three days of event time, one transaction every 10 s.
    stream, transactions, _ = run(rate=1, duration=25_920, event_rate=0.1, accounts=300, fraud_rate=0)
    pop = stream.population
    index = {account_id: a for a, account_id in enumerate(pop.account_ids)}
    night = total = 0
    for t in transactions:
        a = index[t["account_id"]]
        if pop.group_profile[pop.group[a]] != 0:  # daytime people only
            continue
        local = (datetime.fromisoformat(t["occurred_at"]).hour + COUNTRIES[int(pop.home[a])].utc_offset) % 24
        total += 1
        night += not 8 <= local < 20
    assert total > 1000
    assert night / total < 0.1  # 12 quiet hours at 4% activity each


def _typical(stream: SyntheticStream, account: int, mcc: str) -> Decimal:
    pop = stream.population
    home = int(pop.home[account])
    spend = CATEGORY_SPEND[_MCCS.index(mcc)]
    return Decimal(str(math.exp(float(pop.mu[account])) * spend * PER_USD[home]))


def test_fraud_typologies_have_their_signatures(big: tuple[SyntheticStream, list[dict[str, Any]], list[Label]]) -> None:
    stream, transactions, labels = big
    pop = stream.population
    index = {account_id: a for a, account_id in enumerate(pop.account_ids)}
    by_id = {t["transaction_id"]: t for t in transactions}
    of_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        of_type[label.typology].append(by_id[label.transaction_id])

    # Card testing: bursts of tiny online charges on one card.
    per_card = Counter(t["card_id"] for t in of_type["card_testing"])
    assert max(per_card.values()) >= 5
    for t in of_type["card_testing"]:
        home = COUNTRIES[int(pop.home[index[t["account_id"]]])]
        assert Decimal(t["amount"]) <= Decimal(str(2.0 * home.per_usd)) + 1
        assert t["channel"] == "ecommerce" and t["device_id"].startswith("fdev-")

    # Account takeover: new device, far country, amount far above habit.
    for t in of_type["account_takeover"]:
        a = index[t["account_id"]]
        home = COUNTRIES[int(pop.home[a])]
        abroad = next(c for c in COUNTRIES if c.code == t["country"])
        assert t["device_id"] != pop.devices[a]
        assert haversine_km(home.lat, home.lon, abroad.lat, abroad.lon) >= 3000
        assert Decimal(t["amount"]) >= 4 * _typical(stream, a, t["merchant_category"])

    # Compromised terminal: one rogue terminal, many cards.
    terminals: dict[str, set[str]] = defaultdict(set)
    for t in of_type["compromised_merchant"]:
        terminals[t["attributes"]["terminal_id"]].add(t["card_id"])
        assert t["channel"] == "card_present" and t["attributes"]["entry_mode"] == "magstripe"
    assert max(len(cards) for cards in terminals.values()) >= 5

    # High amount: many times the account's habit.
    for t in of_type["high_amount"]:
        a = index[t["account_id"]]
        assert Decimal(t["amount"]) >= Decimal(19) * _typical(stream, a, t["merchant_category"])

    # Impossible travel: the same card present far away shortly after a home payment.
    last_seen: dict[str, dict[str, Any]] = {}
    checked = 0
    travel_ids = {t["transaction_id"] for t in of_type["impossible_travel"]}
    for t in transactions:
        if t["transaction_id"] in travel_ids:
            before = last_seen[t["card_id"]]
            a_lat, a_lon, b_lat, b_lon = before["lat"], before["lon"], t["lat"], t["lon"]
            hours = (
                datetime.fromisoformat(t["occurred_at"]) - datetime.fromisoformat(before["occurred_at"])
            ).total_seconds() / 3600
            assert haversine_km(a_lat, a_lon, b_lat, b_lon) / max(hours, 1e-6) > 1000  # km/h
            checked += 1
        if t["channel"] == "card_present":
            last_seen[t["card_id"]] = t
    assert checked == len(travel_ids) > 0

    # Mule fan-in: many unrelated accounts transfer to one beneficiary.
    senders: dict[str, set[str]] = defaultdict(set)
    for t in of_type["mule_fan_in"]:
        assert t["channel"] == "transfer" and t["merchant_id"].startswith("mule-")
        senders[t["merchant_id"]].add(t["account_id"])
    assert max(len(s) for s in senders.values()) >= 8


def test_tenants_partition_accounts() -> None:
    _, transactions, _ = run(tenants=("bank-a", "bank-b", "bank-c"))
    tenants_of: dict[str, set[str]] = defaultdict(set)
    for t in transactions:
        tenants_of[t["account_id"]].add(t["tenant_id"])
    assert {t["tenant_id"] for t in transactions} == {"bank-a", "bank-b", "bank-c"}
    assert all(len(tenants) == 1 for tenants in tenants_of.values())


def test_impossible_configurations_are_refused() -> None:
    with pytest.raises(GeneratorConfigError, match="rate"):
        GeneratorConfig(rate=0)
    with pytest.raises(GeneratorConfigError, match="time zone"):
        GeneratorConfig(start=datetime(2026, 1, 1))
    with pytest.raises(GeneratorConfigError, match="fraud_rate"):
        GeneratorConfig(fraud_rate=0.9)


def test_an_endless_stream_keeps_going() -> None:
    stream = SyntheticStream(GeneratorConfig(duration=0, seed=3, start=START))
    batches = stream.batches()
    seen = sum(len(next(batches).transactions) for _ in range(5))
    assert stream.config.total is None and seen == 5 * 4096
