"""`observe_many` has exactly the effect of observing each value (it only skips the per-value lock)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from ingestion.service import observe_many

BUCKETS = (0.001, 0.01, 0.1, 1, 10, 30)


@given(st.lists(st.floats(min_value=-5, max_value=100, allow_nan=False), max_size=200))
@settings(deadline=None)
def test_bulk_observation_equals_one_by_one(values: list[float]) -> None:
    one, bulk = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("latency_seconds", "x", buckets=BUCKETS, registry=one)
    by_bulk = Histogram("latency_seconds", "x", buckets=BUCKETS, registry=bulk)
    for value in values:
        by_one.observe(value)
    observe_many(by_bulk, values)
    # Sums are compared after rounding: the bulk path adds them in another order.
    assert _rounded(generate_latest(bulk)) == _rounded(generate_latest(one))


def _rounded(exposition: bytes) -> list[str]:
    lines = []
    for line in exposition.decode().splitlines():
        if line.startswith("latency_seconds_sum"):
            name, value = line.rsplit(" ", 1)
            line = f"{name} {round(float(value), 6)}"
        if not line.startswith("latency_seconds_created"):
            lines.append(line)
    return lines
