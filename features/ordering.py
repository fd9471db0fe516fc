"""Deterministic event-time ordering of a multi-partition stream.

Every partition keeps its own frontier: the largest event time seen on it minus
the allowed lateness. An event at or behind its own partition's frontier is
*late*; that verdict depends only on the partition's own prefix, so it is the
same in every run. Other events wait in a sorted buffer and are released in
(event_time, transaction_id) order once the watermark (the smallest frontier of
the partitions that are not idle) passes them. Released order is therefore a
pure function of the input, whatever the interleaving of partitions was.

An idle partition (caught up with its log end and silent for a while) leaves
the minimum so one quiet partition cannot stall the rest; when every partition
is idle everything buffered is released. Idle decisions depend on wall-clock
timing, which is the one documented exception to determinism (see the ADR).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Generic, TypeAlias, TypeVar

T = TypeVar("T")
_NEG_INF = float("-inf")
_TIME = itemgetter(0)
# (time, transaction_id, partition, offset, item): plain tuples compare in C, in release order.
Entry: TypeAlias = tuple[float, str, int, int, T]


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
        # Buffered entries kept sorted: a micro-batch is appended and re-sorted (timsort merges
        # the two sorted runs in linear time) and released by one bisection, which costs less
        # than a heap push and pop per event.
        self._buffer: list[Entry[T]] = []
        self.last_released: tuple[float, str] | None = None

    def __len__(self) -> int:
        return len(self._buffer)

    def offer(self, *, partition: int, offset: int, time: float, transaction_id: str, item: T) -> bool:
        """Take an event; True when it is late (the caller handles it now, outside the order)."""
        return bool(self.offer_entries([(time, transaction_id, partition, offset, item)]))

    def offer_entries(self, entries: list[Entry[T]]) -> list[Entry[T]]:
        """Take events in consumption order; return the late ones (handled now, outside the order)."""
        partitions = self.partitions
        lateness = self.allowed_lateness
        last = self.last_released
        late: list[Entry[T]] = []
        fresh: list[Entry[T]] = []
        for entry in entries:
            time, transaction_id, partition, offset, _ = entry
            progress = partitions[partition]
            if time <= progress.max_time - lateness or (last is not None and (time, transaction_id) <= last):
                late.append(entry)
            else:
                fresh.append(entry)
            if time > progress.max_time:
                progress.max_time = time
            if offset >= progress.next_offset:
                progress.next_offset = offset + 1
        if fresh:
            self._buffer += fresh
            self._buffer.sort()
        return late

    def skip(self, *, partition: int, offset: int) -> None:
        """Record a consumed message that carries no event (malformed, dead-lettered)."""
        progress = self.partitions[partition]
        progress.next_offset = max(progress.next_offset, offset + 1)

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
        return [Pending(*entry) for entry in self.release_entries(idle)]

    def release_entries(self, idle: Iterable[int] = ()) -> list[Entry[T]]:
        """`release()` as plain entry tuples (the stage's hot path)."""
        buffer = self._buffer
        if not buffer:
            return []
        limit = self.watermark(idle)
        if buffer[0][0] > limit:
            return []
        cut = bisect_right(buffer, limit, key=_TIME)
        released = buffer[:cut]
        del buffer[:cut]
        last = released[-1]
        self.last_released = (last[0], last[1])
        return released

    def pending(self) -> list[Pending[T]]:
        """Buffered events in release order (for snapshots)."""
        return [Pending(*entry) for entry in self._buffer]

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
        sequencer._buffer = sorted(
            (float(t), str(txid), int(p), int(o), decode(item)) for t, txid, p, o, item in state["pending"]
        )
        last = state.get("last_released")
        sequencer.last_released = (float(last[0]), str(last[1])) if last else None
        return sequencer
