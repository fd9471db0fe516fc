"""A small seeded transaction generator for the features tests (not the product generator)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from core.contracts import Channel, Transaction
from core.kafka import DeliveringProducer
from core.settings import Settings
from core.topics import TX_VALID

START = datetime(2026, 3, 1, tzinfo=UTC)


def generate(
    count: int,
    *,
    seed: int = 7,
    accounts: int = 40,
    merchants: int = 15,
    devices: int = 25,
    start: datetime = START,
    mean_gap_seconds: float = 20.0,
) -> list[Transaction]:
    """`count` valid transactions in event-time order with repeats, shared devices/IPs and travel."""
    rng = random.Random(seed)
    moment = start
    out = []
    for i in range(count):
        moment += timedelta(seconds=rng.expovariate(1 / mean_gap_seconds), microseconds=rng.randrange(1000))
        account = rng.randrange(accounts)
        located = rng.random() < 0.6
        out.append(
            Transaction(
                transaction_id=f"tx-{seed}-{i:06d}",
                occurred_at=moment,
                tenant_id="t1",
                account_id=f"acc-{account}",
                card_id=f"card-{account}-{rng.randrange(2)}" if rng.random() < 0.8 else None,
                merchant_id=f"m-{min(rng.randrange(merchants), rng.randrange(merchants))}",
                merchant_category="5411",
                amount=Decimal(rng.randrange(100, 50_000)) / 100,
                currency="EUR",
                channel=rng.choice(list(Channel)),
                country=rng.choice(["DE", "DE", "DE", "FR", "NL", "US"]),
                device_id=f"dev-{rng.randrange(devices)}" if rng.random() < 0.7 else None,
                ip=f"10.0.{rng.randrange(4)}.{rng.randrange(8)}" if rng.random() < 0.7 else None,
                lat=48.0 + rng.random() * 5 if located else None,
                lon=2.0 + rng.random() * 10 if located else None,
                ingested_at=moment + timedelta(milliseconds=50),
            )
        )
    return out


def to_csv_rows(transactions: list[Transaction]) -> list[dict[str, str]]:
    """Rows for a CSV file with the contract's field names (the offline replay's input)."""
    rows = []
    for tx in transactions:
        data = tx.model_dump(mode="json")
        rows.append(
            {
                key: "" if data.get(key) is None else str(data[key])
                for key in (
                    "transaction_id",
                    "occurred_at",
                    "tenant_id",
                    "account_id",
                    "card_id",
                    "merchant_id",
                    "merchant_category",
                    "amount",
                    "currency",
                    "channel",
                    "country",
                    "device_id",
                    "ip",
                    "lat",
                    "lon",
                )
            }
        )
    return rows


def produce(settings: Settings, transactions: list[Transaction], extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
    """The transactions onto the test's tx.valid keyed by account, then `extra` raw records."""
    producer = DeliveringProducer(settings, service="test")
    topic = settings.topic(TX_VALID)
    for tx in transactions:
        producer.produce(topic, tx.model_dump_json().encode(), key=tx.account_id)
    for raw in extra:
        producer.produce(topic, raw, key=b"acc-0")
    producer.flush_or_raise()


def store_stale_snapshot(database: Engine, settings: Settings, *, allowed_lateness: float) -> None:
    """Store what an upgrade finds: a snapshot whose engine state is in the format before tenant-scoped keys."""
    from features.codec import batch_of, decode_transactions
    from features.engine import FeatureEngine
    from features.ordering import Sequencer
    from features.service import pack_state
    from features.store import SnapshotStore

    engine = FeatureEngine()
    engine.compute(batch_of(decode_transactions([t.model_dump_json().encode() for t in generate(5)])[0], [True] * 5))
    blob = pack_state(engine, Sequencer(partitions=(0, 1, 2), allowed_lateness=allowed_lateness))
    assert blob.count(b"VFE3") == 1, "the engine state's magic is where this helper expects it"
    SnapshotStore(database, source_topic=settings.topic(TX_VALID)).save(
        owner="0/1", owned=(0, 1, 2), processed=5, output_offsets={}, state=blob.replace(b"VFE3", b"VFE2")
    )
