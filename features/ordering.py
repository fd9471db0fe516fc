"""Deterministic event-time ordering of a multi-partition stream.

Every partition keeps its own frontier: the largest event time seen on it minus
the allowed lateness. An event at or behind its own partition's frontier is
*late*; that verdict depends only on the partition's own prefix, so it is the
same in every run. Other events wait in a heap and are released in
(event_time, transaction_id) order once the watermark (the smallest frontier of
the partitions that are not idle) passes them. Released order is therefore a
pure function of the input, whatever the interleaving of partitions was.

An idle partition (caught up with its log end and silent for a while) leaves
the minimum so one quiet partition cannot stall the rest; when every partition
is idle everything buffered is released. Idle decisions depend on wall-clock
timing, which is the one documented exception to determinism (see the ADR).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_NEG_INF = float("-inf")


@dataclass(slots=True)
class PartitionProgress:
    """What the sequencer knows about one input partition."""

    max_time: float = _NEG_INF
    next_offset: int = -1  # -1: nothing consumed yet (start from the log beginning)


@dataclass(order=True, slots=True)
class Pending(Generic[T]):
    """A buffered event; ordered by (time, transaction_id), the release order."""

    time: float
    transaction_id: str
    partition: int = field(compare=False)
    offset: int = field(compare=False)
    item: T = field(compare=False)


class Sequencer(Generic[T]):
    """Buffers events per partition and releases them in deterministic event-time order."""

    def __init__(self, *, partitions: Iterable[int], allowed_lateness: float) -> None:
        if allowed_lateness < 0:
            raise ValueError("allowed lateness must be >= 0")
        self.allowed_lateness = allowed_lateness
        self.partitions: dict[int, PartitionProgress] = {p: PartitionProgress() for p in partitions}
        # Plain tuples: their comparison runs in C (a dataclass __lt__ costs ~0.5 us per call).
        self._heap: list[tuple[float, str, int, int, T]] = []
        self.last_released: tuple[float, str] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, *, partition: int, offset: int, time: float, transaction_id: str, item: T) -> bool:
        """Take an event; True when it is late (the caller handles it now, outside the order)."""
        progress = self.partitions[partition]
        late = time <= progress.max_time - self.allowed_lateness or (
            self.last_released is not None and (time, transaction_id) <= self.last_released
        )
        if time > progress.max_time:
            progress.max_time = time
        progress.next_offset = offset + 1
        if not late:
            heapq.heappush(self._heap, (time, transaction_id, partition, offset, item))
        return late

    def skip(self, *, partition: int, offset: int) -> None:
        """Record a consumed message that carries no event (malformed, dead-lettered)."""
        self.partitions[partition].next_offset = offset + 1

    def watermark(self, idle: Iterable[int] = ()) -> float:
        """Events at or before this time are final: nothing earlier can still arrive on time."""
        idle_set = set(idle)
        frontiers = [
            progress.max_time - self.allowed_lateness
            for partition, progress in self.partitions.items()
            if partition not in idle_set
        ]
        return min(frontiers) if frontiers else float("inf")

    def release(self, idle: Iterable[int] = ()) -> list[Pending[T]]:
        """Pop every buffered event the watermark has passed, in (time, transaction_id) order."""
        limit = self.watermark(idle)
        heap = self._heap
        released = []
        pop = heapq.heappop
        while heap and heap[0][0] <= limit:
            time, transaction_id, partition, offset, item = pop(heap)
            released.append(Pending(time, transaction_id, partition, offset, item))
        if released:
            last = released[-1]
            self.last_released = (last.time, last.transaction_id)
        return released

    def pending(self) -> list[Pending[T]]:
        """Buffered events in release order (for snapshots)."""
        return [Pending(t, txid, p, o, item) for t, txid, p, o, item in sorted(self._heap, key=lambda e: e[:2])]

    def state(self, encode: Any) -> dict[str, Any]:
        """JSON-ready state; `encode(item)` turns a buffered item into JSON-ready data."""
        return {
            "allowed_lateness": self.allowed_lateness,
            "partitions": {
                str(p): [progress.max_time if progress.max_time != _NEG_INF else None, progress.next_offset]
                for p, progress in self.partitions.items()
            },
            "pending": [[e.time, e.transaction_id, e.partition, e.offset, encode(e.item)] for e in self.pending()],
            "last_released": list(self.last_released) if self.last_released else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], decode: Any, *, partitions: Iterable[int]) -> Sequencer[T]:
        """Rebuild from `state()`; partitions not in the state start empty."""
        sequencer: Sequencer[T] = cls(partitions=partitions, allowed_lateness=float(state["allowed_lateness"]))
        for key, (max_time, next_offset) in state["partitions"].items():
            progress = sequencer.partitions.setdefault(int(key), PartitionProgress())
            progress.max_time = _NEG_INF if max_time is None else float(max_time)
            progress.next_offset = int(next_offset)
        sequencer._heap = [
            (float(t), str(txid), int(p), int(o), decode(item)) for t, txid, p, o, item in state["pending"]
        ]
        heapq.heapify(sequencer._heap)
        last = state.get("last_released")
        sequencer.last_released = (float(last[0]), str(last[1])) if last else None
        return sequencer
