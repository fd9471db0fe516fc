"""The scorer's feature follower against the real Kafka and PostgreSQL: it holds the stream's state."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine

from core.contracts import FeatureVector, Transaction
from core.kafka import DeliveringProducer, StopFlag, read_all
from core.settings import Settings
from core.topics import TX_FEATURES, TX_VALID
from features import FeatureFollower
from features.codec import features_dict
from features.engine import Batch, FeatureEngine
from features.service import FeatureStage, StageOptions
from features.store import SnapshotStore
from tests.features.generator import generate, produce, store_stale_snapshot

pytestmark = pytest.mark.integration


class _Stage:
    """The features stage in this process (on a thread): faster to start than `vigil run features`."""

    def __init__(self, settings: Settings, database: Engine, *, snapshot_interval: float = 3600.0) -> None:
        self.stop = StopFlag()
        self.stage = FeatureStage(
            settings=settings,
            options=StageOptions(idle_seconds=1.0, snapshot_interval=snapshot_interval),
            database=database,
            stop=self.stop,
        )
        self.thread = threading.Thread(target=self.stage.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def fast(topics: Settings) -> Settings:
    return topics.model_copy(update={"batch_timeout_ms": 50})


@pytest.fixture
def followers() -> Iterator[list[FeatureFollower]]:
    started: list[FeatureFollower] = []
    yield started
    for follower in started:
        follower.close()


def _follow(settings: Settings, database: Engine, followers: list[FeatureFollower]) -> FeatureFollower:
    follower = FeatureFollower(settings=settings, database=database, idle_seconds=1.0)
    followers.append(follower)
    follower.start()
    assert follower.wait_ready(30), follower.status()
    return follower


def _read(follower: FeatureFollower, count: int, *, applied: bool, timeout: float = 20.0) -> None:
    """Wait until the follower has read `count` events (and applied them all, when `applied`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = follower.status()
        if status.applied + status.unapplied >= count and (not applied or status.unapplied == 0):
            return
        time.sleep(0.02)
    raise AssertionError(f"the follower did not read {count} events: {follower.status()}")


def _named(row: np.ndarray) -> dict[str, float | None]:
    return features_dict(row)


def _offline_row(transactions: list[Transaction]) -> np.ndarray:
    """The last transaction's row after all the others, in release order, through a fresh engine."""
    batch = Batch.empty()
    for tx in sorted(transactions, key=lambda t: (t.occurred_at, t.transaction_id)):
        batch.append_transaction(tx)
    row: np.ndarray = FeatureEngine().compute(batch)[-1]
    return row


def test_peek_equals_what_the_stage_emits_when_the_transaction_arrives_and_changes_nothing(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    traffic = generate(330, seed=21, accounts=12, merchants=6, devices=8)
    history, upcoming = traffic[:300], traffic[300:]
    produce(fast, history)
    stage = _Stage(fast, db)
    try:
        follower = _follow(fast, db, followers)
        _read(follower, len(history), applied=True)  # both idle-flush the whole history

        state = follower._engine.to_bytes()
        first = follower.peek(upcoming[0])
        stranger = upcoming[1].model_copy(update={"account_id": "acc-new", "merchant_id": "m-new", "card_id": None})
        follower.peek(stranger)  # entities the state has never seen
        assert np.array_equal(follower.peek(upcoming[0]), first, equal_nan=True)
        assert follower._engine.to_bytes() == state  # peeking changed nothing

        peeked: dict[str, dict[str, float | None]] = {}
        producer = DeliveringProducer(fast, service="test")
        for count, tx in enumerate(upcoming, start=len(history) + 1):
            # Earlier upcoming transactions may still wait for the watermark: peek must count them in.
            peeked[tx.transaction_id] = _named(follower.peek(tx))
            producer.produce(fast.topic(TX_VALID), tx.model_dump_json().encode(), key=tx.account_id)
            producer.flush_or_raise()
            _read(follower, count, applied=False)
        deadline = time.monotonic() + 30
        while stage.stage.emitted < len(traffic) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stage.close()  # flushes what it emitted
    vectors = [
        FeatureVector.model_validate_json(m.value() or b"") for m in read_all(fast, fast.topic(TX_FEATURES), timeout=5)
    ]
    emitted = {v.transaction.transaction_id: v for v in vectors}
    assert len(emitted) == len(traffic)
    differing = [tx_id for tx_id, features in peeked.items() if emitted[tx_id].features != features]
    assert not differing, (differing, emitted[differing[0]].features, peeked[differing[0]])
    # The traffic exercised the windows and the pair maps (repeat merchants, shared devices).
    assert sum(features["account_count_1h"] or 0 for features in peeked.values()) > len(upcoming)
    assert any(features["account_new_merchant"] == 0.0 for features in peeked.values())


def test_restores_the_newest_snapshot_then_follows_the_rest(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    traffic = generate(260, seed=22, accounts=10, merchants=5)
    before, after, scored = traffic[:200], traffic[200:259], traffic[259]
    produce(fast, before)
    stage = _Stage(fast, db)
    store = SnapshotStore(db, source_topic=fast.topic(TX_VALID))
    try:
        deadline = time.monotonic() + 30
        while stage.stage.emitted < len(before) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stage.close()  # a clean stop writes a snapshot of everything so far
    snapshots = store.list()
    assert snapshots and snapshots[0].processed == len(before)
    produce(fast, after)

    follower = _follow(fast, db, followers)
    _read(follower, len(before) + len(after), applied=True)
    status = follower.status()
    assert status.snapshot_id == snapshots[0].snapshot_id and status.error is None
    assert status.applied == len(before) + len(after)
    assert np.array_equal(follower.peek(scored), _offline_row(traffic), equal_nan=True)


def test_a_snapshot_from_an_incompatible_version_means_following_from_the_beginning(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    traffic = generate(120, seed=24, accounts=6)
    produce(fast, traffic[:119])
    store_stale_snapshot(db, fast, allowed_lateness=10.0)  # what an upgrade finds
    follower = _follow(fast, db, followers)
    _read(follower, 119, applied=True)
    assert follower.status().snapshot_id is None and follower.status().error is None
    assert np.array_equal(follower.peek(traffic[119]), _offline_row(traffic), equal_nan=True)


def test_a_malformed_record_is_skipped_and_following_goes_on(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    traffic = generate(80, seed=23, accounts=5)
    produce(fast, traffic[:40], extra=[b"{not json", b'{"transaction_id": "x"}'])
    follower = _follow(fast, db, followers)  # from the beginning: no snapshot
    produce(fast, traffic[40:79])
    _read(follower, 79, applied=True)
    assert follower.skipped == 2 and follower.status().error is None and follower.ready
    assert follower.status().snapshot_id is None
    assert np.array_equal(follower.peek(traffic[79]), _offline_row(traffic), equal_nan=True)


def test_a_transaction_behind_what_was_released_is_peeked_like_a_late_one(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    traffic = generate(40, seed=24, accounts=3)
    produce(fast, traffic)
    follower = _follow(fast, db, followers)
    _read(follower, len(traffic), applied=True)
    old = traffic[10].model_copy(update={"transaction_id": "tx-late"})
    # The stage would compute it against the current state without folding it in (a late event).
    reference = FeatureEngine()
    batch = Batch.empty()
    for tx in traffic:
        batch.append_transaction(tx)
    reference.compute(batch)
    late = Batch.empty()
    late.append_transaction(old, apply=False)
    expected = reference.compute(late)[-1]
    assert np.array_equal(follower.peek(old), expected, equal_nan=True)
    in_order = Batch.empty()
    in_order.append_transaction(old)
    assert not np.array_equal(FeatureEngine.from_bytes(follower._engine.to_bytes()).compute(in_order)[-1], expected)


def test_peeks_while_the_follower_grows_its_state_always_see_a_consistent_state(
    fast: Settings, db: Engine, followers: list[FeatureFollower]
) -> None:
    """Optimistic peeks (no lock unless the state changed meanwhile) never return a torn row.

    The scored account's history is read first; then thousands of payments of *other* entities arrive
    and force the state's arrays to be reallocated while peeks run, so every peek must give the same row.
    """
    mine = generate(61, seed=26, accounts=2, merchants=3, devices=2)
    history, scored = mine[:60], mine[60]
    produce(fast, history)
    follower = _follow(fast, db, followers)
    _read(follower, len(history), applied=True)
    expected = _offline_row(mine)
    assert np.array_equal(follower.peek(scored), expected, equal_nan=True)
    others = [
        tx.model_copy(
            update={
                "transaction_id": f"other-{i}",
                "account_id": f"other-acc-{i}",
                "card_id": f"other-card-{i}",
                "merchant_id": f"other-m-{i % 300}",
                "device_id": f"other-dev-{i}",
                "ip": None,
                "occurred_at": history[-1].occurred_at
                + (scored.occurred_at - history[-1].occurred_at) * (i + 1) / 4000,
            }
        )
        for i, tx in enumerate(generate(3000, seed=27))
    ]
    outcomes: list[bool] = []
    done = threading.Event()

    def peek_meanwhile() -> None:
        while not done.is_set():
            outcomes.append(np.array_equal(follower.peek(scored), expected, equal_nan=True))

    peeker = threading.Thread(target=peek_meanwhile, daemon=True)
    peeker.start()  # from before the first message is produced until all are applied
    try:
        produce(fast, others)
        _read(follower, len(history) + len(others), applied=True, timeout=30)
    finally:
        done.set()
        peeker.join(10)
    assert outcomes and all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} peeks differed"
    assert len(outcomes) > 10
    assert follower.status().applied == len(history) + len(others)
    assert follower._engine.entity_counts()["account"] > 3000  # grown (from 1,024 slots) while peeking
