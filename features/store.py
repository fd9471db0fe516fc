"""Feature state snapshots in PostgreSQL, stored with the offsets they correspond to.

A snapshot is written only after the producer has flushed, so everything it
says was emitted is on the broker. Restoring one and re-reading the input from
its offsets reproduces exactly the state and the output that followed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine, delete, func, insert, select

from core.schema import feature_snapshots
from features.errors import FeaturesError, IncompatibleStateError
from features.registry import FEATURE_SET_VERSION

KEEP_PER_OWNER: Final = 3
# A stored state: magic, base snapshot id (0 = a full state; else a delta against that snapshot),
# engine part length, engine part, ordering part. Pruning reads only the first 12 bytes.
_MAGIC: Final = b"VFP2"
_PREFIX: Final = 12


def pack_snapshot(*, base_id: int | None, engine: bytes, ordering: bytes) -> bytes:
    return b"".join([_MAGIC, (base_id or 0).to_bytes(8, "big"), len(engine).to_bytes(8, "big"), engine, ordering])


def unpack_snapshot(blob: bytes) -> tuple[int | None, bytes, bytes]:
    """(base snapshot id or None for a full state, engine part, ordering part)."""
    base_id = _base_of(blob)
    size = int.from_bytes(blob[_PREFIX : _PREFIX + 8], "big")
    start = _PREFIX + 8
    return base_id, blob[start : start + size], blob[start + size :]


def _base_of(prefix: bytes) -> int | None:
    if prefix[:4] != _MAGIC:
        raise IncompatibleStateError("feature snapshot was written by an incompatible version")
    return int.from_bytes(prefix[4:_PREFIX], "big") or None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot's metadata (the state blob is fetched separately: it can be large)."""

    snapshot_id: int
    owner: str
    owned: tuple[int, ...]
    processed: int
    output_offsets: dict[int, int]


class SnapshotStore:
    """Save, list and load snapshots of one input topic's feature state."""

    def __init__(self, engine: Engine, *, source_topic: str) -> None:
        self._engine = engine
        self._topic = source_topic

    def save(
        self, *, owner: str, owned: tuple[int, ...], processed: int, output_offsets: dict[int, int], state: bytes
    ) -> int:
        """Store a snapshot and prune this owner's older ones in the same transaction.

        Kept: the newest `KEEP_PER_OWNER` snapshots and the full snapshots their deltas need.
        """
        mine = (feature_snapshots.c.source_topic == self._topic) & (feature_snapshots.c.owner == owner)
        with self._engine.begin() as connection:
            snapshot_id = connection.execute(
                insert(feature_snapshots)
                .values(
                    source_topic=self._topic,
                    owner=owner,
                    owned=list(owned),
                    processed=processed,
                    output_offsets={str(k): v for k, v in output_offsets.items()},
                    feature_set_version=FEATURE_SET_VERSION,
                    state=state,
                )
                .returning(feature_snapshots.c.snapshot_id)
            ).scalar_one()
            newest = connection.execute(
                select(feature_snapshots.c.snapshot_id, func.substring(feature_snapshots.c.state, 1, _PREFIX))
                .where(mine)
                .order_by(feature_snapshots.c.snapshot_id.desc())
                .limit(KEEP_PER_OWNER)
            ).all()
            keep = {int(row[0]) for row in newest}
            keep |= {base for row in newest if (base := _base_of(bytes(row[1]))) is not None}
            connection.execute(delete(feature_snapshots).where(mine, feature_snapshots.c.snapshot_id.not_in(keep)))
        return int(snapshot_id)

    def list(self) -> list[SnapshotInfo]:
        """Every stored snapshot of this topic and feature set, newest first."""
        query = (
            select(
                feature_snapshots.c.snapshot_id,
                feature_snapshots.c.owner,
                feature_snapshots.c.owned,
                feature_snapshots.c.processed,
                feature_snapshots.c.output_offsets,
            )
            .where(
                feature_snapshots.c.source_topic == self._topic,
                feature_snapshots.c.feature_set_version == FEATURE_SET_VERSION,
            )
            .order_by(feature_snapshots.c.snapshot_id.desc())
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            SnapshotInfo(
                snapshot_id=int(row.snapshot_id),
                owner=str(row.owner),
                owned=tuple(int(p) for p in row.owned),
                processed=int(row.processed),
                output_offsets={int(k): int(v) for k, v in row.output_offsets.items()},
            )
            for row in rows
        ]

    def load_state(self, snapshot_id: int) -> bytes:
        query = select(feature_snapshots.c.state).where(feature_snapshots.c.snapshot_id == snapshot_id)
        with self._engine.connect() as connection:
            state = connection.execute(query).scalar_one_or_none()
        if state is None:
            raise FeaturesError(f"feature snapshot {snapshot_id} is missing")
        return bytes(state)


def choose_snapshot(snapshots: list[SnapshotInfo], *, owner: str, owned: tuple[int, ...]) -> SnapshotInfo | None:
    """The snapshot to resume from (None = start from the beginning of the input).

    Normally this replica's own newest snapshot. After a change of replica count,
    the least advanced of the newest snapshots of the previous owners of our
    partitions: every event before it was emitted by its owner, and what they
    emitted after it is suppressed by reading the output topic (see the ADR).
    """
    if not snapshots:
        return None
    for info in snapshots:  # newest first
        if info.owner == owner and set(owned) <= set(info.owned):
            return info
    previous_owner: dict[int, SnapshotInfo] = {}
    for info in snapshots:
        for partition in info.owned:
            previous_owner.setdefault(partition, info)
    if any(partition not in previous_owner for partition in owned):
        return None
    return min((previous_owner[p] for p in owned), key=lambda info: info.processed)
