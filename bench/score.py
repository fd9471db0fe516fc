"""Latency of `POST /v1/score` under an open-loop load of 200 requests/s.

Starts the API in its own process (uvicorn, one worker) with the ports `vigil run api`
wires (the real synchronous scorer: the feature follower or history replay, the statistical
detectors, the default rule pack and the ML champions), sends requests on a fixed schedule
(latency counts from the scheduled send time, so a slow server cannot hide queueing: no
coordinated omission), and prints p50/p95/p99. Target: p99 <= 20 ms at 200 req/s.

`--history` transactions over the 30 days before the scored ones, on the same accounts,
cards, merchants and IPs, go both into a scratch database (the replay path reads them:
about 30 rows per account, 20 per card, 190 per merchant, 150 per IP with the defaults)
and onto a scratch `tx.valid` topic, which the API's feature follower reads from the
beginning (no features snapshot); the load starts once the follower answers. `--state
replay` measures the replay path instead (VIGIL_SCORE_STATE=replay). The path that
answered the measured requests is printed (from the API's `vigil_score_features_total`).
`--model NAME` serves that registered model's @champion (default: VIGIL_ML_MODEL_NAMES;
`--no-models` serves none; `--train-models` first trains an IsolationForest and a supervised
model on generated traffic and serves them as `bench-score-unsupervised` / `-supervised`);
a model that cannot load is reported as degraded.

Besides latency it prints the API process's CPU time per request (user + system, read from
/proc over the whole run): the load-independent cost, i.e. how many requests one core could
serve. PostgreSQL's share for the replay path's history query is not in it; the follower's
share of following the stream is (nothing is produced to tx.valid during the run).

`--workers N` runs N uvicorn worker processes (`vigil run api --workers N`; in Kubernetes, N API
pods), each with its own follower; the CPU figure then sums every worker.

    .venv/bin/python -m bench.score [--rate 200] [--seconds 30] [--history 150000] [--state follow|replay]
        [--model NAME | --no-models | --train-models] [--workers 1] [--stream 0]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import orjson
from fastapi import FastAPI
from sqlalchemy import create_engine, insert

from api import Principal, Role, create_app
from api.auth.keys import VigilKeys
from api.auth.tokens import TokenIssuer
from bench._common import scratch_database
from core.contracts import Transaction
from core.kafka import DeliveringProducer, client_config, ensure_topics
from core.schema import principals, transactions
from core.settings import Settings, load_settings
from core.topics import TX_VALID, TopicSpec
from rules import DEFAULT_PACK, load_pack, seed_pack
from vigil.commands.api import build_ports
from vigil.commands.rules import registry_catalogue

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bank-0"
SCORED_AT = datetime(2026, 11, 24, 10, 15, 2, tzinfo=UTC)


def app_factory() -> FastAPI:
    """The API exactly as `vigil run api` builds it."""
    settings = load_settings()
    return create_app(settings, ports=build_ports(settings), freeze_gc=True)


def seed_history(settings: Settings, rows: int) -> None:
    """`rows` past payments over the 30 days before SCORED_AT, on the entities the load uses.

    Stored (the replay path's history) and produced to tx.valid in event-time order, as ingestion
    would have (the follower's stream).
    """
    engine = create_engine(settings.database_url)
    producer = DeliveringProducer(settings, service="bench")
    topic = settings.topic(TX_VALID)
    span = 30 * 86_400 - 3_600
    history = []
    for i in range(rows):
        body = _body(i)
        history.append(
            {
                **{k: v for k, v in body.items() if k not in ("occurred_at", "amount")},
                "transaction_id": f"hist-{i}",
                "tenant_id": TENANT,
                "occurred_at": SCORED_AT - timedelta(seconds=3_600 + (i * 7_919) % span),
                "amount": Decimal(f"{20 + (i * 37) % 80}.{i % 100:02d}"),
            }
        )
    history.sort(key=lambda row: (row["occurred_at"], row["transaction_id"]))
    with engine.begin() as connection:
        for start in range(0, rows, 10_000):
            chunk = history[start : start + 10_000]
            connection.execute(insert(transactions), chunk)
            for row in chunk:
                transaction = Transaction.model_validate(row)
                producer.produce(topic, transaction.model_dump_json().encode(), key=transaction.account_id)
            producer.poll(0)
    producer.flush_or_raise()
    engine.dispose()


BENCH_MODELS: Final = {"bench-score-unsupervised": "isolation_forest", "bench-score-supervised": "supervised"}


def train_bench_models(settings: Settings) -> list[str]:
    """An IsolationForest and a supervised model trained on generated traffic, champions of the bench's names.

    The same generator and features as `bench.ml` (60,000 payments over 10 days); registering is
    idempotent (a version trained from the same data is reused), so a second run only re-points
    the aliases. Returns the model names to serve.
    """
    import tempfile

    from bench.ml import _generate
    from detectors.ml import ModelKind, ModelRegistry, TrainingOptions, train_model

    registry = ModelRegistry(settings.mlflow_tracking_uri)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-score-") as scratch:
        frame, _, labels = _generate(Path(scratch), 60_000, 10.0)
    cutoff = datetime.fromtimestamp(float(frame.event_time.max()), UTC)
    options = TrainingOptions(label_delay=timedelta(hours=12))
    for name, kind in BENCH_MODELS.items():
        outcome = train_model(frame=frame, labels=labels, kind=ModelKind(kind), cutoff=cutoff, options=options)
        version = registry.register(name=name, outcome=outcome, experiment="vigil-bench")
        registry.promote(name=name, version=version.version)
        print(f"  {name}: {kind} version {version.version} is the champion")
    return list(BENCH_MODELS)


def drop_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    topic = settings.topic(TX_VALID)
    admin = AdminClient(client_config(settings))  # kept alive until the deletion is acknowledged
    admin.delete_topics([topic], operation_timeout=30)[topic].result()


class Stream:
    """Fresh payments produced to tx.valid at a steady rate while the load runs (the follower applies them).

    Event times run up to just before SCORED_AT, so the scored transactions stay in order. The producer
    runs in a process of its own: as a thread of this one it would take the GIL from the load generator's
    event loop hundreds of times a second, which the latencies would then show as the server's.
    """

    def __init__(self, settings: Settings, rate: float, seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._count = int(rate * seconds)
        self._produced = context.Value("q", 0)
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_produce_stream,
            args=(settings, rate, self._count, self._ready, self._stop, self._produced),
            daemon=True,
        )

    @property
    def produced(self) -> int:
        return int(self._produced.value)

    def __enter__(self) -> Stream:
        if self._count:
            self._process.start()
            if not self._ready.wait(120):
                raise SystemExit("the stream producer did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._count:
            self._process.join(30)


def _produce_stream(settings: Settings, rate: float, count: int, ready: Any, stop: Any, produced: Any) -> None:
    producer = DeliveringProducer(settings, service="bench")
    topic = settings.topic(TX_VALID)
    first = SCORED_AT - timedelta(seconds=1) - timedelta(seconds=count / rate)
    messages = []
    for i in range(count):
        at = first + timedelta(seconds=i / rate)
        row = {**_body(i * 13 + 7), "transaction_id": f"live-{i}", "tenant_id": TENANT, "occurred_at": at}
        transaction = Transaction.model_validate(row)
        messages.append((transaction.model_dump_json().encode(), transaction.account_id))
    ready.set()
    start = time.perf_counter()
    for i, (value, key) in enumerate(messages):
        if stop.is_set():
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, value, key=key)
        producer.poll(0)
        produced.value += 1
    producer.flush_or_raise()


def peek_waits(base: str) -> tuple[float, float]:
    """(peeks so far, of which waited over 1 ms for the follower's lock), from the API's histogram."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    count = re.search(r"^vigil_score_peek_wait_seconds_count (\S+)$", text, re.M)
    within = re.search(r'^vigil_score_peek_wait_seconds_bucket\{le="0.001"\} (\S+)$', text, re.M)
    if count is None or within is None:
        return 0.0, 0.0
    return float(count[1]), float(count[1]) - float(within[1])


def score_paths(base: str) -> dict[str, float]:
    """Requests answered by each feature path so far (the API's `vigil_score_features_total`)."""
    return _score_paths(httpx.get(f"{base}/metrics", timeout=5).text)


def _score_paths(text: str) -> dict[str, float]:
    return {
        match[1]: float(match[2])
        for match in re.finditer(r'^vigil_score_features_total\{path="(\w+)"\} (\S+)$', text, re.M)
    }


def all_caught_up(base: str, *, probes: int) -> bool:
    """Whether `probes` fresh connections in a row reach a worker whose follower has read everything.

    Each worker has its own registry and a fresh connection reaches any of them, so a worker still
    catching up (lag > 0, or -1 before its follower started) fails the check sooner or later.
    """
    for _ in range(probes):
        with httpx.Client() as client:  # one connection per probe: the kernel spreads them over workers
            text = client.get(f"{base}/metrics", timeout=5).text
        lag = re.search(r"^vigil_score_follower_lag (\S+)$", text, re.M)
        if lag is None or float(lag[1]) != 0:
            return False
    return True


def _body(i: int) -> dict[str, object]:
    return {
        "transaction_id": f"tx-bench-{i}",
        "occurred_at": "2026-11-24T10:15:02Z",
        "account_id": f"acc-{i % 5000}",
        "card_id": f"card-{i % 7000}",
        "merchant_id": f"m-{i % 800}",
        "merchant_category": "5411",
        "amount": f"{(i % 9000) / 7 + 1:.2f}",
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
        "ip": f"10.0.{i % 250}.{i % 200}",
        "attributes": {"mcc_group": "grocery"},
    }


async def load(
    port: int, token: str, *, rate: float, seconds: float, warmup: float, connections: int = 32
) -> tuple[list[float], list[int], int, float]:
    """Open-loop load over keep-alive HTTP/1.1 connections with a minimal asyncio client.

    A general-purpose async client (httpx) queues requests in its pool with enough overhead to
    become the bottleneck below 100 req/s on this machine; raw streams keep the generator cheap.
    """
    queue: asyncio.Queue[tuple[int, float, bool] | None] = asyncio.Queue()
    latencies: list[float] = []
    second_of: list[int] = []  # the second of the run each measured request was scheduled in
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                i, scheduled, record = item
                body = orjson.dumps(_body(i))
                head = (
                    f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if record:
                    if status == 200:
                        latencies.append((time.perf_counter() - scheduled) * 1000)
                        second_of.append(int(i / rate))
                    else:
                        errors += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    total = int((seconds + warmup) * rate)
    start = time.perf_counter() + 0.2
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # Latency counts from `scheduled`: time spent queued behind a slow server is included.
        queue.put_nowait((i, scheduled, i >= warmup * rate))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    achieved = (total - warmup * rate) / max(1e-9, time.perf_counter() - (start + warmup))
    return latencies, second_of, errors, achieved


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its worker processes so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(process_cpu_seconds(int(child)) for child in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="Requests per second (open loop).")
    parser.add_argument("--seconds", type=float, default=30.0, help="Measured duration.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Unmeasured seconds first.")
    parser.add_argument("--history", type=int, default=150_000, help="Stored transactions seeded first.")
    parser.add_argument("--model", action="append", default=[], help="Registered model to serve (repeatable).")
    parser.add_argument("--no-models", action="store_true", help="Serve no ML model (VIGIL_ML_MODEL_NAMES=[]).")
    parser.add_argument(
        "--train-models",
        action="store_true",
        help=f"Train and serve the bench's champions ({', '.join(BENCH_MODELS)}) first.",
    )
    parser.add_argument(
        "--state", choices=("follow", "replay"), default="follow", help="VIGIL_SCORE_STATE of the API (features path)."
    )
    parser.add_argument(
        "--stream", type=float, default=0.0, help="Fresh transactions/s produced to tx.valid during the load."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API worker processes (`vigil run api --workers`), each its own follower.",
    )
    args = parser.parse_args()
    if args.no_models + bool(args.model) + args.train_models > 1:
        parser.error("--no-models, --model and --train-models exclude each other")
    names = [] if args.no_models else args.model
    if args.train_models:
        names = train_bench_models(load_settings())
    with scratch_database() as settings:
        ensure_topics(settings, [TopicSpec(TX_VALID)])
        seed_history(settings, args.history)
        engine = create_engine(settings.database_url)
        catalogue = registry_catalogue()
        seed_pack(
            engine=engine, drafts=load_pack(DEFAULT_PACK, catalogue=catalogue), catalogue=catalogue, author="bench"
        )
        with engine.begin() as connection:
            connection.execute(
                insert(principals).values(
                    principal_id="pos-bench", kind="client", secret_hash="unused", roles=["ingest"], tenants=[TENANT]
                )
            )
        engine.dispose()
        token = TokenIssuer(settings, VigilKeys(settings)).issue(
            Principal(
                principal_id="pos-bench", kind="client", roles=frozenset({Role.INGEST}), tenants=frozenset({TENANT})
            ),
            ttl_seconds=3600,
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {
            **os.environ,
            "VIGIL_DATABASE_URL": settings.database_url,
            "VIGIL_API_RATE_LIMIT_PER_SECOND": "100000",
            "VIGIL_API_RATE_LIMIT_BURST": "100000",
            "VIGIL_LOG_LEVEL": "WARNING",
            "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "VIGIL_SCORE_STATE": args.state,
            **({"VIGIL_ML_MODEL_NAMES": orjson.dumps(names).decode()} if names or args.no_models else {}),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.score:app_factory", "--factory", "--port", str(port),
             "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
                if time.monotonic() > deadline:
                    raise SystemExit("the API did not start")
            if args.state == "follow":
                # Probe until the follower answers (it reads the whole history first), then let it
                # release what it buffered (the stream's idle rule: 2 s).
                started = time.monotonic()
                while not (score_paths(base).get("follower") and all_caught_up(base, probes=10 * args.workers)):
                    httpx.post(
                        f"{base}/v1/score", json=_body(0), headers={"Authorization": f"Bearer {token}"}, timeout=5
                    )
                    if time.monotonic() - started > 600:
                        raise SystemExit("the feature follower did not catch up")
                    time.sleep(0.5)
                print(
                    f"  feature followers of {args.workers} worker(s) caught up after "
                    f"{time.monotonic() - started:.1f} s"
                )
                time.sleep(3)
            paths_before = score_paths(base)
            waits_before = peek_waits(base)
            load_start = os.getloadavg()[0]
            cpu_before = process_cpu_seconds(server.pid)
            with Stream(settings, args.stream, args.seconds + args.warmup) as stream:
                latencies, second_of, errors, achieved = asyncio.run(
                    load(port, token, rate=args.rate, seconds=args.seconds, warmup=args.warmup)
                )
            cpu_per_request = (process_cpu_seconds(server.pid) - cpu_before) / int(
                (args.seconds + args.warmup) * args.rate
            )
            last = httpx.post(
                f"{base}/v1/score", json=_body(1), headers={"Authorization": f"Bearer {token}"}, timeout=5
            ).json()
            degraded = last.get("degraded")
            paths_after = score_paths(base)
            waits_after = peek_waits(base)
        finally:
            server.terminate()
            server.wait(timeout=15)
            drop_topics(settings)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    models = "none" if args.no_models else ", ".join(names) or "VIGIL_ML_MODEL_NAMES"
    print(
        f"POST /v1/score, open loop at {args.rate:.0f} req/s for {args.seconds:.0f} s, {args.workers} API worker(s): "
        "real scorer, "
        f"{args.history:,} stored transactions, default rule pack, models: {models}"
    )
    answered = {path: int(count - paths_before.get(path, 0)) for path, count in paths_after.items()}
    print(f"  degraded in the last answer: {degraded or 'none'}")
    if args.workers == 1:
        print(f"  features answered by (VIGIL_SCORE_STATE={args.state}): {answered}")
    else:  # /metrics is one worker's registry: per-run counts would mix two workers' counters
        print(f"  features answered by (VIGIL_SCORE_STATE={args.state}): every worker's follower before the load")
    if args.state == "follow" and args.workers == 1:
        peeks, slow = (after - before for after, before in zip(waits_after, waits_before, strict=True))
        print(
            f"  stream during the load: {stream.produced:,} transactions to tx.valid ({args.stream:.0f}/s); "
            f"peeks that waited over 1 ms for the follower's lock: {slow:.0f} of {peeks:.0f}"
        )
    print(f"  requests measured: {len(latencies):,}  errors: {errors}  achieved rate: {achieved:.1f} req/s")
    print(f"  latency ms: p50 {p50:.2f}  p95 {p95:.2f}  p99 {p99:.2f}  max {max(latencies):.2f}")
    # Whether the tail is spread evenly or comes from a few bad seconds (e.g. other work on the machine).
    by_second: dict[int, list[float]] = {}
    for second, latency in zip(second_of, latencies, strict=True):
        by_second.setdefault(second, []).append(latency)
    tails = {k: float(np.percentile(v, 99)) for k, v in by_second.items()}
    bad_seconds = sorted((tail, k) for k, tail in tails.items() if tail > 20)
    worst = ", ".join(f"s{k}: {v:.0f}" for v, k in bad_seconds[-5:][::-1])
    print(
        f"  seconds whose own p99 exceeds 20 ms: {len(bad_seconds)} of {len(by_second)}"
        + (f" (worst ms: {worst})" if worst else "")
    )
    print(
        f"  API CPU per request: {cpu_per_request * 1000:.2f} ms (all threads of every worker; one core would serve "
        f"~{1 / cpu_per_request:.0f} req/s at this cost)"
    )
    print(
        f"  target p99 <= 20 ms: {'met' if p99 <= 20 else 'NOT met'} (the load generator shares the machine's "
        f"{os.cpu_count()} cores; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )


if __name__ == "__main__":
    main()
