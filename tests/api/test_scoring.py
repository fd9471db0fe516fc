"""`POST /v1/score` with the real synchronous scorer (vigil.scoring) on the session database and MLflow."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from api import ApiPorts, create_app
from core.contracts import Transaction
from core.schema import transactions
from core.settings import Settings
from features.engine import Batch, FeatureEngine
from rules import create_rule
from tests.api.conftest import BASE_TIME, TENANT_A, TENANT_B, TokenFactory, bearer, transaction_row
from vigil.commands.rules import registry_catalogue
from vigil.scoring import FOLLOWER_DEGRADED, HistoryReader, SyncScorer, build_scorer, small_engine

pytestmark = pytest.mark.integration

SCORED_AT = BASE_TIME + timedelta(days=1)


def _body(tenant_id: str, amount: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": f"tx-now-{uuid.uuid4().hex[:8]}",
        "tenant_id": tenant_id,
        "occurred_at": SCORED_AT.isoformat(),
        "account_id": "acc-shared",
        "card_id": "card-shared",
        "merchant_id": "m-shared",
        "merchant_category": "5411",
        "amount": amount,
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
        "device_id": "dev-shared",
        "ip": "10.0.0.1",
    }
    body.update(overrides)
    return body


def _history(
    db: Engine, tenant_id: str, *, amounts: list[float], newest: timedelta = timedelta(hours=1), **overrides: Any
) -> None:
    """Past payments of the shared entities, one every 30 minutes up to `newest` before SCORED_AT."""
    rows = [
        transaction_row(
            tenant_id,
            f"hist-{tenant_id}-{i}",
            occurred_at=SCORED_AT - newest - timedelta(minutes=30 * i),
            account_id="acc-shared",
            card_id="card-shared",
            merchant_id="m-shared",
            device_id="dev-shared",
            amount=Decimal(f"{amount:.2f}"),
            **overrides,
        )
        for i, amount in enumerate(amounts)
    ]
    with db.begin() as connection:
        connection.execute(insert(transactions), rows)


def _usual(n: int = 30, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(35.0, 50.0), 2) for _ in range(n)]


@pytest.fixture
def scorer(api_settings: Settings, db: Engine) -> Iterator[SyncScorer]:
    del db  # the session database must be migrated and clean first
    # History replay only: these tests are about what stored history gives (the follower has its own).
    built = build_scorer(api_settings.model_copy(update={"score_state": "replay"}), with_models=False)
    built.warm()
    yield built
    built.close()


@pytest.fixture
def scoring_client(api_settings: Settings, db: Engine, scorer: SyncScorer) -> Iterator[TestClient]:
    app = create_app(api_settings, ports=ApiPorts(scorer=scorer), engine=db)
    with TestClient(app) as client:
        yield client


def _verdict(result: dict[str, Any], name: str) -> dict[str, Any]:
    found = [d for d in result["detectors"] if d["detector_name"] == name]
    assert found, f"no verdict of {name} in {[d['detector_name'] for d in result['detectors']]}"
    verdict: dict[str, Any] = found[0]
    return verdict


def test_an_amount_far_above_the_accounts_history_declines_with_a_readable_reason(
    db: Engine, scoring_client: TestClient, token_for: TokenFactory
) -> None:
    _history(db, TENANT_A, amounts=_usual())
    token = token_for("ingest", kind="client")
    response = scoring_client.post("/v1/score", json=_body(TENANT_A, "4999.00"), headers=bearer(token))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["score"] >= 80 and result["decision"] == "decline"
    zscore = _verdict(result, "account_amount_zscore")
    assert zscore["detector_family"] == "statistical" and zscore["severity"] == "critical"
    text = result["reasons"][0]["text"]
    assert "4999.00 EUR" in text and "above" in text and "30 past payments of this account" in text
    assert result["degraded"] == []

    usual = scoring_client.post("/v1/score", json=_body(TENANT_A, "44.00"), headers=bearer(token)).json()
    assert usual["decision"] == "approve" and usual["score"] < 50
    assert _verdict(usual, "account_amount_zscore")["score"] is not None and usual["reasons"] == []


def test_without_history_the_statistical_detectors_do_not_judge(
    scoring_client: TestClient, token_for: TokenFactory
) -> None:
    response = scoring_client.post(
        "/v1/score", json=_body(TENANT_A, "4999.00"), headers=bearer(token_for("ingest", kind="client"))
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert _verdict(result, "account_amount_zscore")["score"] is None
    assert result["score"] == 0 and result["decision"] == "approve"


def test_a_matching_rule_of_the_tenant_appears_in_the_verdicts_and_other_tenants_rules_do_not(
    db: Engine, scoring_client: TestClient, token_for: TokenFactory, scorer: SyncScorer
) -> None:
    catalogue = registry_catalogue()
    create_rule(
        engine=db,
        rule_id="card-burst",
        name="Card burst",
        expression="card_count_1h >= 3 and amount >= 100",
        author="test",
        severity="critical",
        tenant_id=TENANT_A,
        catalogue=catalogue,
    )
    create_rule(
        engine=db,
        rule_id="b-only",
        name="Tenant B only",
        expression="amount > 0",
        author="test",
        tenant_id=TENANT_B,
        catalogue=catalogue,
    )
    # Two payments of the card within the last hour (the third is the scored one).
    _history(db, TENANT_A, amounts=[20.0, 20.0], newest=timedelta(minutes=10))
    # The rules were created after the scorer loaded them: its background poller picks them up within
    # seconds (every 2 s), without a restart and without a request waiting on the rules table.
    deadline = time.monotonic() + 10
    while True:
        response = scoring_client.post(
            "/v1/score", json=_body(TENANT_A, "150.00"), headers=bearer(token_for("ingest", kind="client"))
        )
        assert response.status_code == 200, response.text
        result = response.json()
        if any(d["detector_name"] == "rule:card-burst" for d in result["detectors"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    rule = _verdict(result, "rule:card-burst")
    assert rule["detector_family"] == "rules" and rule["score"] == 100 and rule["severity"] == "critical"
    assert "card_count_1h = 3" in rule["reasons"][0]["text"]
    assert result["decision"] == "decline"
    assert not [d for d in result["detectors"] if d["detector_name"] == "rule:b-only"]


def test_an_unavailable_model_is_listed_as_degraded_and_the_answer_is_still_200(
    api_settings: Settings, db: Engine, token_for: TokenFactory
) -> None:
    missing = f"vigil-missing-{uuid.uuid4().hex[:8]}"
    settings = api_settings.model_copy(update={"ml_model_names": [missing]})
    scorer = build_scorer(settings)
    app = create_app(settings, ports=ApiPorts(scorer=scorer), engine=db)
    try:
        with TestClient(app) as client:
            response = client.post(
                "/v1/score", json=_body(TENANT_A, "10.00"), headers=bearer(token_for("ingest", kind="client"))
            )
    finally:
        scorer.close()
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["degraded"] == [missing]
    model = _verdict(result, missing)
    assert model["detector_family"] == "ml" and model["score"] is None


def test_tenant_scoping_a_token_of_tenant_a_cannot_score_for_b_and_bs_history_never_serves_a(
    db: Engine, scoring_client: TestClient, token_for: TokenFactory
) -> None:
    # Same entity ids in both tenants: A pays ~40, B pays ~5000.
    _history(db, TENANT_A, amounts=_usual(seed=2))
    _history(db, TENANT_B, amounts=[round(x * 120, 2) for x in _usual(seed=3)])
    token_a = token_for("ingest", (TENANT_A,), kind="client")
    token_b = token_for("ingest", (TENANT_B,), kind="client")

    forbidden = scoring_client.post("/v1/score", json=_body(TENANT_B, "4999.00"), headers=bearer(token_a))
    assert forbidden.status_code == 403, forbidden.text
    assert "score" not in forbidden.json() and "past payments" not in forbidden.text

    for_a = scoring_client.post("/v1/score", json=_body(TENANT_A, "4999.00"), headers=bearer(token_a)).json()
    for_b = scoring_client.post("/v1/score", json=_body(TENANT_B, "4999.00"), headers=bearer(token_b)).json()
    assert for_a["decision"] == "decline" and "30 past payments" in for_a["reasons"][0]["text"]
    # For B, 4999 is an ordinary amount: only B's own history was used.
    assert for_b["decision"] == "approve", for_b
    baseline_b = _verdict(for_b, "account_amount_zscore")
    assert baseline_b["score"] is not None and baseline_b["score"] < 50


def test_history_is_the_tenants_rows_before_the_transaction_within_the_window_newest_first(
    api_settings: Settings, db: Engine
) -> None:
    _history(db, TENANT_A, amounts=[10.0] * 5)
    with db.begin() as connection:
        connection.execute(
            insert(transactions),
            [
                transaction_row(
                    TENANT_A, "later", occurred_at=SCORED_AT + timedelta(seconds=1), account_id="acc-shared"
                ),
                transaction_row(TENANT_A, "same-instant-after", occurred_at=SCORED_AT, account_id="acc-shared"),
                transaction_row(TENANT_A, "a-same-instant-before", occurred_at=SCORED_AT, account_id="acc-shared"),
                transaction_row(
                    TENANT_A, "too-old", occurred_at=SCORED_AT - timedelta(days=31), account_id="acc-shared"
                ),
                transaction_row(TENANT_B, "other-tenant", occurred_at=SCORED_AT, account_id="acc-shared"),
            ],
        )
    from core.db import make_engine

    engine = make_engine(api_settings, pool_size=1)
    try:
        transaction = Transaction.model_validate(_body(TENANT_A, "1.00", transaction_id="m-tx"))
        history = HistoryReader(engine=engine, rows_per_entity=100).read(transaction)
        ids = history.transaction_ids
        assert ids == [f"hist-{TENANT_A}-{i}" for i in range(4, -1, -1)] + ["a-same-instant-before"]
        # Event times exactly as the engine computes them; amounts as floats.
        assert history.batch.times[-1] == SCORED_AT.timestamp() and history.batch.amounts[0] == 10.0
        bounded = HistoryReader(engine=engine, rows_per_entity=2).read(transaction)
        # Two newest per entity: the account's are (hist-0, a-same-instant-before), the card's (hist-1, hist-0).
        assert bounded.transaction_ids == [
            f"hist-{TENANT_A}-1",
            f"hist-{TENANT_A}-0",
            "a-same-instant-before",
        ]
    finally:
        engine.dispose()


def test_the_small_engine_computes_exactly_what_the_default_engine_computes() -> None:
    rng = random.Random(7)
    batch = Batch.empty()
    for i in range(400):
        located = rng.random() < 0.5
        batch.append(
            time=1.7e9 + i * rng.uniform(1, 900),
            account=f"a{rng.randrange(40)}",
            card=f"c{rng.randrange(60)}" if rng.random() < 0.9 else None,
            merchant=f"m{rng.randrange(30)}",
            device=f"d{rng.randrange(50)}" if rng.random() < 0.7 else None,
            ip=f"10.0.0.{rng.randrange(50)}" if rng.random() < 0.7 else None,
            country=rng.choice(["DE", "FR", "US"]),
            amount=round(rng.uniform(1, 500), 2),
            lat=rng.uniform(-60, 60) if located else None,
            lon=rng.uniform(-120, 120) if located else None,
        )
    expected = FeatureEngine().compute(batch)
    assert np.array_equal(small_engine().compute(batch), expected, equal_nan=True)
    exact = {"account": 40, "card": 61, "merchant": 30, "device": 51, "ip": 51}  # never grows
    assert np.array_equal(small_engine(sizes=exact).compute(batch), expected, equal_nan=True)


def test_the_detector_stage_judges_requests_that_queue_up_together_and_answers_each_its_own() -> None:
    import threading
    import time

    from vigil.scoring import DetectorStage

    sizes: list[int] = []
    release = threading.Event()

    def judge_all(vectors: list[Any]) -> list[Any]:
        sizes.append(len(vectors))
        if len(sizes) == 1:
            release.wait(10)  # the first batch is slow: the next requests queue up meanwhile
        return [([], [f"row-{v}"]) for v in vectors]

    stage = DetectorStage(judge_all)
    answers: dict[int, Any] = {}

    def ask(i: int) -> None:
        answers[i] = stage.submit(i)  # type: ignore[arg-type]

    threads = [threading.Thread(target=ask, args=(0,))]
    threads[0].start()
    while not sizes:
        time.sleep(0.01)
    threads += [threading.Thread(target=ask, args=(i,)) for i in range(1, 6)]
    for thread in threads[1:]:
        thread.start()
    while stage._queue.qsize() < 5:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    stage.close()
    assert sizes == [1, 5]
    assert answers == {i: ([], [f"row-{i}"]) for i in range(6)}


def test_a_failing_batch_fails_its_requests_and_the_stage_keeps_serving() -> None:
    from vigil.scoring import DetectorStage

    calls = 0

    def judge_all(vectors: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return [([], []) for _ in vectors]

    stage = DetectorStage(judge_all)
    with pytest.raises(RuntimeError, match="model exploded"):
        stage.submit(1)  # type: ignore[arg-type]
    assert stage.submit(2) == ([], [])  # type: ignore[arg-type]
    stage.close()


class _LoadedRules:
    """The `RuleEngine` surface the scorer reads, holding one compiled rule set (no database)."""

    def __init__(self, ruleset: Any) -> None:
        self.ruleset = ruleset

    poll_seconds = 60.0

    def loaded(self) -> Any:
        return self.ruleset

    def refresh(self) -> bool:
        return False


class _OneModel:
    def __init__(self, model: Any) -> None:
        self.model = model

    def resolve(self, name: str, alias: str) -> str:
        return "7"

    def load(self, name: str, version: str) -> Any:
        return self.model


def _scored_stream(seed: int, size: int = 240) -> list[Any]:
    """Feature vectors of a small stream through the real engine: habits, card-testing bursts, spikes."""
    from core.contracts import FeatureVector
    from features.codec import features_dict
    from features.registry import FEATURE_SET_VERSION

    rng = random.Random(seed)
    moment = SCORED_AT - timedelta(days=3)
    transactions: list[Transaction] = []
    for i in range(size):
        moment += timedelta(seconds=rng.uniform(30, 1800))
        card = f"card-{rng.randrange(4)}"
        amount = round(rng.lognormvariate(3.5, 0.4), 2)
        if i % 40 > 33:  # a burst of tiny payments on one card
            card, amount = "card-tested", round(rng.uniform(0.5, 5), 2)
        elif i % 37 == 36:
            amount = round(amount * rng.uniform(25, 60), 2)
        transactions.append(
            Transaction.model_validate(
                _body(
                    TENANT_A,
                    f"{amount:.2f}",
                    transaction_id=f"tx-{seed}-{i}",
                    occurred_at=moment.isoformat(),
                    account_id=f"acc-{rng.randrange(3)}",
                    card_id=card,
                    merchant_id=f"m-{rng.randrange(5)}",
                )
            )
        )
    batch = Batch.empty()
    for transaction in transactions:
        batch.append_transaction(transaction)
    rows = FeatureEngine().compute(batch)
    return [
        FeatureVector.model_construct(
            transaction=t, features=features_dict(row), feature_set_version=FEATURE_SET_VERSION, late=False
        )
        for t, row in zip(transactions, rows, strict=True)
    ]


def test_the_scorers_verdicts_are_judge_on_fresh_detectors_for_every_family(api_settings: Settings) -> None:
    """Reused statistical detectors and the matching-rules shortcut report what `judge` reports."""
    from core.detection import FeatureBatch
    from detectors import statistical_detectors
    from detectors.ml import MLDetector, ModelKind, served_models
    from rules import DEFAULT_PACK, RuleSet, detectors_for, pack_rules
    from tests.ml.factories import fitted_model
    from vigil.scoring import judge

    catalogue = registry_catalogue()
    active = pack_rules(DEFAULT_PACK, catalogue=catalogue)
    ruleset, invalid = RuleSet.compile(active, catalogue=catalogue)
    assert not invalid
    model = fitted_model(ModelKind.ISOLATION_FOREST)
    served = served_models(settings=api_settings, source=_OneModel(model), names=["iforest"])
    served.poll_all()  # loads version 7 now, without the watcher thread
    reused = statistical_detectors(settings=api_settings)
    scorer = SyncScorer(
        history=None,  # type: ignore[arg-type]  # only `_judge_all` is exercised
        statistical=lambda: reused,
        rules=_LoadedRules(ruleset),  # type: ignore[arg-type]
        models=served,
    )
    flagged = {"statistical": 0, "rules": 0}
    ml_judged = 0
    for seed in (1, 2, 1):  # the same stream again after another: nothing carried over between batches
        vectors = _scored_stream(seed)
        batch = FeatureBatch(vectors)
        expected: list[list[Any]] = [[] for _ in vectors]
        fresh = [
            *statistical_detectors(settings=api_settings),
            *detectors_for(ruleset),
            MLDetector(model=model, model_name="iforest", model_version="7"),
        ]
        for detector in fresh:
            for row, verdict in enumerate(judge(detector, batch)):
                if detector.family.value != "rules" or verdict.score is not None:
                    expected[row].append(verdict)
        got = scorer._judge_all(vectors)
        assert [verdicts for verdicts, _ in got] == expected
        assert all(degraded == [] for _, degraded in got)
        for verdicts in expected:
            for verdict in verdicts:
                if verdict.family == "ml":
                    ml_judged += verdict.score is not None
                else:
                    flagged[verdict.family] += verdict.severity is not None
    assert all(count > 0 for count in flagged.values()), flagged  # reasons were compared too
    assert ml_judged == 3 * 240


def test_a_pooled_connection_the_database_dropped_is_replaced_without_failing_the_request(
    scoring_client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    from sqlalchemy import text

    token = token_for("ingest", kind="client")
    assert scoring_client.post("/v1/score", json=_body(TENANT_A, "42.00"), headers=bearer(token)).status_code == 200
    with db.connect() as connection:  # as a database restart would: every other session is gone
        ended = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS ended"
            )
        ).scalar()
    assert ended and ended >= 1  # the scorer's pooled connection was among them
    answer = scoring_client.post("/v1/score", json=_body(TENANT_A, "43.00"), headers=bearer(token))
    assert answer.status_code == 200, answer.text


def test_the_scorer_replays_history_until_the_follower_has_caught_up_then_peeks_the_streams_state(
    api_settings: Settings, db: Engine, token_for: TokenFactory
) -> None:
    import time

    from core.kafka import DeliveringProducer, ensure_topics
    from core.topics import STREAM_TOPICS, TX_VALID
    from vigil.scoring import feature_vector, vector_of

    scorer = build_scorer(api_settings, with_models=False)  # score_state=follow is the default
    app = create_app(api_settings, ports=ApiPorts(scorer=scorer), engine=db)
    token = bearer(token_for("ingest", kind="client"))
    _history(db, TENANT_A, amounts=_usual(seed=4), ip="10.0.0.1")
    try:
        with TestClient(app) as client:
            # No tx.valid yet: the follower waits for it and the stored history answers.
            early = client.post("/v1/score", json=_body(TENANT_A, "44.00"), headers=token)
            assert early.status_code == 200, early.text
            assert scorer.paths == {"follower": 0, "replay": 1}
            assert scorer.feature_path() == "replay" and FOLLOWER_DEGRADED in scorer.degraded_detectors()
            # Replaying reads the database, so the API must not score on its event loop yet.
            assert scorer.score_now(Transaction.model_validate(_body(TENANT_A, "44.00"))) is None

            # The same history on the stream: the follower reads it and takes over.
            ensure_topics(api_settings, STREAM_TOPICS)
            producer = DeliveringProducer(api_settings, service="test")
            with db.connect() as connection:
                stored = connection.execute(transactions.select().order_by(transactions.c.occurred_at)).mappings().all()
            for row in stored:
                fields = {k: v for k, v in row.items() if k in Transaction.model_fields}
                transaction = Transaction.model_validate({**fields, "amount": row["amount"].normalize()})
                producer.produce(
                    api_settings.topic(TX_VALID), transaction.model_dump_json().encode(), key=transaction.account_id
                )
            producer.flush_or_raise()
            follower = scorer._follower
            assert follower is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = follower.status()
                if status.ready and status.applied + status.unapplied == len(stored):
                    break
                time.sleep(0.05)
            assert follower.ready, follower.status()
            body = _body(TENANT_A, "4999.00")
            late = client.post("/v1/score", json=body, headers=token)
            assert late.status_code == 200, late.text
            assert scorer.paths == {"follower": 1, "replay": 1}
            assert scorer.feature_path() == "follower" and FOLLOWER_DEGRADED not in scorer.degraded_detectors()
            assert late.json()["decision"] == "decline"
            assert "30 past payments" in late.json()["reasons"][0]["text"]
            # Within 30 days and 500 rows per entity, of one tenant, both paths compute the same features.
            transaction = Transaction.model_validate(body)
            replayed = feature_vector(transaction, scorer._history.read(transaction))
            assert vector_of(transaction, follower.peek(transaction)).features == replayed.features
            # From memory now: the event loop's path answers, with what the worker-thread path answers.
            now = scorer.score_now(transaction)
            assert now is not None and now == scorer.score(transaction)
            assert scorer.paths == {"follower": 3, "replay": 1}
    finally:
        scorer.close()


class _BrokenFollower:
    """A follower that claims to be ready but fails to peek (a defect must not fail the score)."""

    ready = True

    def peek(self, transaction: Transaction) -> Any:
        raise RuntimeError("broken")

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_follower_that_fails_to_peek_hands_the_score_to_the_replay_path(
    db: Engine, scorer: SyncScorer, scoring_client: TestClient, token_for: TokenFactory
) -> None:
    _history(db, TENANT_A, amounts=_usual(seed=5))
    scorer._follower = _BrokenFollower()  # type: ignore[assignment]
    response = scoring_client.post(
        "/v1/score", json=_body(TENANT_A, "4999.00"), headers=bearer(token_for("ingest", kind="client"))
    )
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "decline"
    assert scorer.paths == {"follower": 0, "replay": 1}
