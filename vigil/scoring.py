"""Synchronous scoring for `POST /v1/score`: the composition root's `api.ports.Scorer`.

One transaction is scored now, without waiting for the stream (docs/adr/0010):

1. features, from the stream's own state (`score_state=follow`, the default): a
   `features.FeatureFollower` keeps a copy of the features stage's state in this process
   (newest snapshot, then every partition of tx.valid) and `peek`s the transaction's row
   without changing it. Until the follower has caught up (start-up), or with
   `score_state=replay`, the replay path answers instead:
2. replay: the tenant's recent transactions of the same account, card, merchant, device
   and IP are read from the `transactions` table (one indexed query per entity, newest
   first, at most `score_history_rows` each, no older than the longest feature window)
   and go, then the transaction, through the stream's own `FeatureEngine` (same kernels,
   same order by event time and id);
3. detectors: the statistical detectors, the tenant's enabled rules (reloaded by a background
   poller every few seconds, like `detect-rules` reloads them) and the ML champions (followed
   in the background like `detect-ml`) judge the one feature vector.

Nothing is written. Detectors that cannot judge normally (no model loaded, registry
down, rules unreadable) are listed in `degraded`; the request still answers.
When the follower answers, nothing waits on I/O and the API calls `score_now` on its event
loop; only the replay path (a database read) runs on a worker thread. The detectors run in a
`DetectorStage` that judges the vectors of concurrent requests together (on the thread of
whichever request holds it, no hand-off):
at one row, a detector's cost is almost all per-call overhead (numpy dispatch, verdict
objects; ~1.3 ms for every family together), which a batch of queued requests shares.
The detector objects live as long as the scorer (their per-batch memo is keyed by the
batch object and only the stage thread touches them), so nothing is rebuilt per request
except the thin ML wrapper around whichever model version is served at that moment.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from core.contracts import FeatureVector, Transaction
from core.detection import Detector, FeatureBatch, Thresholds
from core.errors import VigilError
from core.settings import Settings

if TYPE_CHECKING:
    from api.ports import DetectorVerdict, ScoreOutcome
    from detectors.ml import ServedModels
    from features.engine import Batch, FeatureEngine
    from features.follower import FeatureFollower
    from rules import RuleDetector, RuleEngine, RuleSet

log = logging.getLogger(__name__)

# The stream's detection services decide with the default bands (warning 50, critical 80).
STREAM_THRESHOLDS: Final = Thresholds()
FOLLOWER_DEGRADED: Final = "feature-follower"  # listed in `degraded_detectors` while scoring replays history
# A request thread hands its vector to the detector thread and waits for the answer; with CPython's
# default 5 ms switch interval, a thread that wants the GIL back can wait that long behind another
# runnable thread (the follower, other requests): visible as p99 under load. 1 ms bounds that wait.
_SWITCH_INTERVAL: Final = 0.001
# Initial slots per entity kind: a scored transaction touches five entities plus their partners;
# the engine grows on demand. The default engine reserves 1024 slots per kind (~11 ms to allocate).
_ENGINE_CAPACITY: Final = 16
_ENTITY_COLUMNS: Final = ("account_id", "card_id", "merchant_id", "device_id", "ip")
# Event time as the same float the engine uses (integer microseconds / 10**6, correctly rounded:
# numeric -> float8 parses the exact decimal), amounts as float8, empty strings as NULL.
_HISTORY_COLUMNS: Final = (
    "transaction_id, extract(epoch FROM occurred_at)::float8 AS t, account_id, "
    "nullif(card_id, '') AS card_id, merchant_id, nullif(device_id, '') AS device_id, nullif(ip, '') AS ip, "
    "upper(country) AS country, amount::float8 AS amount, lat, lon"
)


def _warm_up_transaction() -> Transaction:
    """A throwaway payment that `SyncScorer.warm` runs through the features and every detector."""
    return Transaction.model_validate(
        {
            "transaction_id": "vigil-warm-up",
            "tenant_id": "vigil-warm-up",
            "occurred_at": "2026-01-01T00:00:00Z",
            "account_id": "a",
            "card_id": "c",
            "merchant_id": "m",
            "merchant_category": "5411",
            "amount": "1.00",
            "currency": "EUR",
            "channel": "ecommerce",
            "country": "DE",
            "device_id": "d",
            "ip": "10.0.0.1",
            "lat": 0.0,  # located: the geo-velocity kernels load too
            "lon": 0.0,
        }
    )


class ScoringError(VigilError):
    """The transaction could not be scored (history unreadable)."""


def small_engine(capacity: int = _ENGINE_CAPACITY, *, sizes: dict[str, int] | None = None) -> FeatureEngine:
    """A `FeatureEngine` with room for `capacity` entities per kind, or exactly `sizes[kind]`.

    Same state as `FeatureEngine()`; only the initial allocation differs, which is what a
    one-transaction scorer pays for on every call (sized to the batch, it never grows).
    """
    from features.engine import FeatureEngine
    from features.registry import ENTITY_KINDS

    sizes = sizes or {}
    return FeatureEngine(capacities={kind: sizes.get(kind, capacity) for kind in ENTITY_KINDS})


def lookback() -> timedelta:
    """The longest feature window: older history cannot change any windowed feature."""
    from features.registry import WINDOWS

    return timedelta(seconds=max(window[1] for window in WINDOWS))


def _history_sql(entities: Sequence[str]) -> Any:
    parts = [
        f"(SELECT {_HISTORY_COLUMNS} FROM transactions WHERE tenant_id = :tenant AND {column} = :{column} "
        f"AND occurred_at > :since AND (occurred_at < :at OR (occurred_at = :at AND transaction_id < :tx)) "
        f"ORDER BY occurred_at DESC LIMIT :rows)"
        for column in entities
    ]
    # Release order is (event time, id), so a same-instant row with a smaller id came first.
    # UNION (not ALL): a row reached through several entities is fed to the engine once.
    # `t` orders exactly like occurred_at (whole microseconds, correctly rounded, so monotonic).
    return text(f"SELECT * FROM ({' UNION '.join(parts)}) AS history ORDER BY t, transaction_id")


@dataclass(frozen=True, slots=True)
class History:
    """Past transactions in release order, as the engine's columns."""

    transaction_ids: list[str]
    batch: Batch

    def __len__(self) -> int:
        return len(self.transaction_ids)


class HistoryReader:
    """Recent transactions of one tenant's entities, bounded in time and rows per entity."""

    def __init__(self, *, engine: Engine, rows_per_entity: int, window: timedelta | None = None) -> None:
        # Autocommit: a read-only lookup needs no BEGIN, and returning the connection then costs no ROLLBACK.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._rows = rows_per_entity
        self._window = window or lookback()
        self._statements: dict[tuple[str, ...], Any] = {}

    def read(self, transaction: Transaction) -> History:
        """Rows before `transaction` in the stream's release order (event time, then id)."""
        from features.engine import Batch, entity_keys

        keys = {
            "account_id": transaction.account_id,
            "card_id": transaction.card_id,
            "merchant_id": transaction.merchant_id,
            "device_id": transaction.device_id,
            "ip": None if transaction.ip is None else str(transaction.ip),
        }
        entities = tuple(column for column in _ENTITY_COLUMNS if keys[column] is not None)
        statement = self._statements.get(entities)
        if statement is None:
            statement = self._statements[entities] = _history_sql(entities)
        at = transaction.occurred_at
        params: dict[str, Any] = {
            "tenant": transaction.tenant_id,
            "since": at - self._window,
            "at": at,
            "tx": transaction.transaction_id,
            "rows": self._rows,
            **{column: keys[column] for column in entities},
        }
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(statement, params).all()
        except SQLAlchemyError as exc:
            raise ScoringError(f"history could not be read: {type(exc).__name__}") from exc
        if not rows:
            return History([], Batch.empty())
        ids, times, accounts, cards, merchants, devices, ips, countries, amounts, lats, lons = map(
            list, zip(*rows, strict=True)
        )
        for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
            if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
                lats[i] = lons[i] = None
        tenants = [transaction.tenant_id] * len(ids)  # the rows are this tenant's (the query's filter)
        batch = Batch(
            times=times,
            accounts=entity_keys(tenants, accounts),
            cards=entity_keys(tenants, cards),
            merchants=entity_keys(tenants, merchants),
            devices=entity_keys(tenants, devices),
            ips=entity_keys(tenants, ips),
            countries=countries,
            amounts=amounts,
            lats=lats,
            lons=lons,
            apply=[True] * len(ids),
        )
        return History(ids, batch)


def vector_of(transaction: Transaction, row: np.ndarray) -> FeatureVector:
    """A feature row as the stream's `FeatureVector` (NaN = undefined)."""
    from features.codec import features_dict
    from features.registry import FEATURE_SET_VERSION

    return FeatureVector.model_construct(
        transaction=transaction, features=features_dict(row), feature_set_version=FEATURE_SET_VERSION, late=False
    )


def feature_vector(transaction: Transaction, history: History) -> FeatureVector:
    """The transaction's features after `history`, computed by the stream's engine."""
    batch = history.batch  # read for this one call: the transaction is appended in place
    batch.append_transaction(transaction)
    sizes = {
        "account": len(set(batch.accounts)),
        "card": len(set(batch.cards)),
        "merchant": len(set(batch.merchants)),
        "device": len(set(batch.devices)),
        "ip": len(set(batch.ips)),
    }
    rows = small_engine(sizes=sizes).compute(batch)
    return vector_of(transaction, rows[-1])


def judge(detector: Detector, batch: FeatureBatch, thresholds: Thresholds = STREAM_THRESHOLDS) -> list[DetectorVerdict]:
    """One detector's verdict on every row: score (None = not judged), reasons where the stream would flag."""
    from api.ports import DetectorVerdict

    scores = detector.score(batch)
    flagged = dict(thresholds.decide(scores))
    family, name, version = detector.family.value, detector.name, detector.version
    verdicts = []
    for index, raw in enumerate(scores.normalised.tolist()):
        if math.isnan(raw):
            verdicts.append(DetectorVerdict(family=family, name=name, version=version, score=None))
            continue
        severity = flagged.get(index)
        verdicts.append(
            DetectorVerdict(
                family=family,
                name=name,
                version=version,
                score=round(min(100.0, max(0.0, raw)), 2),
                severity=None if severity is None else severity.value,
                reasons=detector.explain(batch, index) if severity is not None else [],
            )
        )
    return verdicts


Judged = tuple[list["DetectorVerdict"], list[str]]  # one request's verdicts and degraded detectors


class _Pending:
    """One request's vector and, once judged, its answer (or the batch's failure)."""

    __slots__ = ("done", "error", "result", "vector")

    def __init__(self, vector: FeatureVector) -> None:
        self.vector = vector
        self.result: Judged | None = None
        self.error: BaseException | None = None
        self.done = False


class DetectorStage:
    """Judges the feature vectors of concurrent requests together: one vectorised call per detector.

    A detector call costs about the same for one row as for ten (per-call overhead dominates), so
    requests that arrive while a batch is being judged wait and go together into the next one.
    No thread of its own (combining): a request queues its vector and takes the stage's lock; the
    holder judges everything queued, its own vector included, so a lone request is judged on its
    own thread at once, with no hand-off to another thread and back (each hand-off can wait for the
    GIL behind other runnable threads). Requests that queued while a batch ran find their answer
    when they get the lock, or judge the next batch. One thread at a time runs the detectors, so
    their per-batch memos are never shared.
    """

    def __init__(self, judge_all: Callable[[list[FeatureVector]], list[Judged]], *, max_rows: int = 64) -> None:
        self._judge_all = judge_all
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.batches = 0
        self.rows = 0

    def submit(self, vector: FeatureVector) -> Judged:
        mine = _Pending(vector)
        self._queue.put(mine)
        while not mine.done:
            with self._lock:
                if not mine.done:
                    self._judge_queued()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _judge_queued(self) -> None:
        """Judge up to `max_rows` queued vectors (the caller's among them: it queued before locking)."""
        pending: list[_Pending] = []
        while len(pending) < self._max_rows:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not pending:
            return
        try:
            results = self._judge_all([item.vector for item in pending])
        except Exception as exc:  # every request of the batch gets the failure; the stage keeps serving
            for item in pending:
                item.error, item.done = exc, True
            return
        self.batches += 1
        self.rows += len(pending)
        for item, result in zip(pending, results, strict=True):
            item.result, item.done = result, True

    def close(self) -> None:
        """Nothing to stop: the stage runs on its callers' threads."""


class SyncScorer:
    """`api.ports.Scorer`: features from the stream's state (or stored history), then every detector family."""

    def __init__(
        self,
        *,
        history: HistoryReader,
        statistical: Callable[[], Sequence[Detector]],
        rules: RuleEngine | None,
        models: ServedModels | None,
        follower: FeatureFollower | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._history = history
        self._follower = follower
        self.paths = {"follower": 0, "replay": 0}  # requests answered by each feature path
        self._path_counters = {path: metrics.SCORE_FEATURES.labels(path) for path in self.paths}
        self._statistical = statistical
        self._rules = rules
        self._models = models
        self._on_close = on_close
        self._started = threading.Event()
        self._stage = DetectorStage(self._judge_all)
        self._ruleset: RuleSet | None = None  # the rule set `_rule_detectors` were built for
        self._rule_detectors: list[RuleDetector] = []
        self._rule_poller: threading.Thread | None = None
        self._closed = threading.Event()

    def warm(self) -> None:
        """Before serving: load the feature kernels, start following the model registry and load the rules.

        Never blocks on MLflow: until a model has loaded, its verdict is listed in `degraded`.
        """
        from features.engine import Batch

        transaction = _warm_up_transaction()
        warmup = Batch.empty()
        warmup.append_transaction(transaction)
        row = small_engine().compute(warmup)[-1]  # numba loads (or compiles) the kernels on first use
        sys.setswitchinterval(_SWITCH_INTERVAL)
        if self._follower is not None:
            self._follower.start()  # restores and catches up in the background; replay answers meanwhile
        if self._models is not None and not self._started.is_set():
            from detectors.ml.trees import warm_up

            warm_up()  # the tree walk too, before a model load compiles it while requests wait on the GIL
            self._started.set()
            self._models.start(wait_seconds=0.0)
        if self._rules is not None:
            self._poll_rules_once(self._rules)  # now: the first requests judge with the rules
            if self._rule_poller is None:
                self._rule_poller = threading.Thread(
                    target=self._poll_rules, args=(self._rules,), name="score-rules", daemon=True
                )
                self._rule_poller.start()
        # Every detector once on a throwaway row: first calls load compiled kernels and build lazy
        # objects (tens of thousands), which should happen before serving and be frozen with the rest
        # of start-up (`create_app(freeze_gc=True)`), not be rescanned by the collector mid-request.
        self._judge_all([vector_of(transaction, row)])

    def _poll_rules(self, rules: RuleEngine) -> None:
        """Reload the rules in the background: no request waits on the rules table (docs/adr/0010)."""
        while not self._closed.wait(rules.poll_seconds):
            self._poll_rules_once(rules)

    @staticmethod
    def _poll_rules_once(rules: RuleEngine) -> None:
        try:
            rules.refresh()
        except SQLAlchemyError as exc:  # only before the first load: later failures keep the loaded rules
            log.warning("rules not loaded yet; scoring lists them as degraded and retries", extra={"error": str(exc)})

    def score_now(self, transaction: Transaction) -> ScoreOutcome | None:
        """The score if it needs no I/O (the follower answers), else None: call `score` on a worker thread.

        CPU only (a peek, then the detectors, with the rules the background poller loaded), so the
        API runs it on its event loop: a hop to a worker thread and back costs more CPU than the
        scoring itself and, under load, waits for the GIL twice.
        """
        vector = self._peeked(transaction)
        return None if vector is None else self._judged(vector, "follower")

    def score(self, transaction: Transaction) -> ScoreOutcome:
        """The score, replaying stored history (a database read) when the follower cannot answer."""
        vector = self._peeked(transaction)
        if vector is not None:
            return self._judged(vector, "follower")
        return self._judged(feature_vector(transaction, self._history.read(transaction)), "replay")

    def _peeked(self, transaction: Transaction) -> FeatureVector | None:
        follower = self._follower
        if follower is None or not follower.ready:
            return None
        try:
            return vector_of(transaction, follower.peek(transaction))
        except Exception:  # a defect in the follower must not fail the score: the replay path answers
            log.exception("feature follower could not peek; replaying history for this score")
            return None

    def _judged(self, vector: FeatureVector, path: str) -> ScoreOutcome:
        from api.ports import ScoreOutcome

        self.paths[path] += 1
        self._path_counters[path].inc()
        verdicts, degraded = self._stage.submit(vector)
        scored = [v.score for v in verdicts if v.score is not None]
        # The stream's decision for a transaction is its highest anomaly score; the same here.
        return ScoreOutcome(score=max(scored, default=0.0), verdicts=verdicts, degraded=degraded)

    def _judge_all(self, vectors: list[FeatureVector]) -> list[Judged]:
        """Every detector family over the batch, split back into one (verdicts, degraded) per request."""
        batch = FeatureBatch(vectors)
        rows: list[Judged] = [([], []) for _ in vectors]

        def add(per_row: list[DetectorVerdict]) -> None:
            for (verdicts, _), verdict in zip(rows, per_row, strict=True):
                verdicts.append(verdict)

        for detector in self._statistical():
            add(judge(detector, batch))
        self._rule_verdicts(batch, rows)
        self._model_verdicts(batch, rows, add)
        return rows

    def _rule_verdicts(self, batch: FeatureBatch, rows: list[Judged]) -> None:
        from api.ports import DetectorVerdict
        from rules import detectors_for

        ruleset = None if self._rules is None else self._rules.loaded()
        if ruleset is None:
            for _, degraded in rows:
                degraded.append("rules")
            return
        if ruleset is not self._ruleset:  # rebuilt only when the engine reloaded the rules
            self._ruleset, self._rule_detectors = ruleset, detectors_for(ruleset)
        # Only matching rules are listed: other tenants' rules must not show up in a verdict. A match is
        # what `judge` would report (score 100, the rule's severity, its reasons) without building per-rule
        # score arrays for the rules that did not fire (most of them, on most rows).
        for detector in self._rule_detectors:
            for index in np.flatnonzero(detector.matched(batch)).tolist():
                rows[index][0].append(
                    DetectorVerdict(
                        family=detector.family.value,
                        name=detector.name,
                        version=detector.version,
                        score=100.0,
                        severity=detector.severity.value,
                        reasons=detector.explain(batch, index),
                    )
                )

    def _model_verdicts(self, batch: FeatureBatch, rows: list[Judged], add: Callable[..., None]) -> None:
        from api.ports import DetectorVerdict
        from detectors.ml import MLDetector

        if self._models is None:
            return
        for watcher in self._models.watchers:
            served = watcher.detector
            if served is None:
                add([DetectorVerdict(family="ml", name=watcher.name, version="unavailable", score=None)] * len(rows))
                for _, degraded in rows:
                    degraded.append(watcher.name)
                continue
            # A fresh wrapper per batch (its memo is per batch); health is the shared one.
            detector = MLDetector(
                model=served.model,
                model_name=served.model_name,
                model_version=served.model_version,
                health=served.health,
            )
            per_row = judge(detector, batch)
            add(per_row)
            for (_, degraded), verdict in zip(rows, per_row, strict=True):
                if watcher.degraded or verdict.score is None:
                    degraded.append(watcher.name)

    def degraded_detectors(self) -> list[str]:
        """Models this scorer cannot judge with right now, and the follower while history is replayed instead.

        For `GET /v1/system/status`: the replay path's features deviate from the stream's (docs/api.md).
        """
        degraded = [] if self._models is None else [w.name for w in self._models.watchers if w.degraded]
        follower = self._follower
        if follower is not None and not follower.ready:
            degraded.append(FOLLOWER_DEGRADED)
        return degraded

    def feature_path(self) -> str:
        """Which path answers now: "follower" (the stream's state) or "replay" (stored history)."""
        return "follower" if self._follower is not None and self._follower.ready else "replay"

    def close(self) -> None:
        self._closed.set()
        if self._rule_poller is not None:
            self._rule_poller.join(timeout=5)
        if self._follower is not None:
            self._follower.close()
        self._stage.close()
        if self._models is not None and self._started.is_set():
            self._models.stop()
        if self._on_close is not None:
            self._on_close()


def build_scorer(settings: Settings, *, with_models: bool = True) -> SyncScorer:
    """The scorer `vigil run api` wires: its own small connection pool, rules and model watchers."""
    from core.db import make_engine
    from detectors import load_statistical_config, statistical_detectors
    from rules import RuleEngine
    from vigil.commands.rules import registry_catalogue

    engine = make_engine(settings, pool_size=settings.database_pool_size)
    timeout = int(settings.api_statement_timeout_ms)

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
        # A decision must not wait on a runaway query: bounded like every API query.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {timeout}")
        dbapi_connection.commit()

    config = load_statistical_config(settings.statistical_config_file)
    # Built once: their per-batch memo is keyed by the batch object, and one stage thread runs them;
    # their per-tenant bands then stay resolved between requests.
    detectors = statistical_detectors(settings=settings, config=config)

    def statistical() -> Sequence[Detector]:
        return detectors

    models = None
    if with_models and settings.ml_model_names:
        from detectors.ml import ModelRegistry, fail_fast_http, served_models

        fail_fast_http()
        models = served_models(settings=settings, source=ModelRegistry(settings.mlflow_tracking_uri))
    follower = None
    closers = [engine.dispose]
    if settings.score_state == "follow":
        from features.follower import FeatureFollower

        # Its own connection, without the API's statement timeout: a large snapshot takes a while to read.
        snapshots = make_engine(settings, pool_size=1)
        follower = FeatureFollower(settings=settings, database=snapshots)
        closers.append(snapshots.dispose)

    def close() -> None:
        for dispose in closers:
            dispose()

    return SyncScorer(
        history=HistoryReader(engine=engine, rows_per_entity=settings.score_history_rows),
        statistical=statistical,
        rules=RuleEngine(engine=engine, catalogue=registry_catalogue()),
        models=models,
        follower=follower,
        on_close=close,
    )
