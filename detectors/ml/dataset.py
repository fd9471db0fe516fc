"""Training data: the offline feature parquet as a matrix, and the label join that respects label delay.

Label delay, precisely (docs/ml.md): with training cutoff `T` and delay `d`,

- a transaction is a supervised training row only if it happened before `T - d`:
  younger ones may still turn out fraudulent (chargebacks take weeks), so calling
  them legitimate would teach the model wrong answers;
- a label is used only if it was recorded at or before `T` (`labelled_at`): nothing
  known after the cutoff leaks into the model, so a backtest trains exactly what
  would have been trained on that day;
- the newest label per transaction known by `T` wins; confirmed fraud is positive,
  false positives, expected behaviour and unlabeled rows are legitimate.

Unsupervised models need no labels and train on every row of the window except
known confirmed fraud.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from core.detection import FloatArray
from detectors.ml.columns import IDENTITY_COLUMNS
from detectors.ml.errors import TrainingDataError
from detectors.ml.scorers import BoolArray

if TYPE_CHECKING:
    import pyarrow as pa

CONFIRMED_FRAUD: Final = "confirmed_fraud"
FALSE_POSITIVE: Final = "false_positive"
EXPECTED: Final = "expected"
LABEL_VALUES: Final = (CONFIRMED_FRAUD, FALSE_POSITIVE, EXPECTED)
_SOURCE_RANK: Final = {"analyst": 2}  # an analyst's verdict beats an import recorded at the same instant


@dataclass(frozen=True, slots=True)
class KnownLabel:
    """A label as training sees it. `labelled_at` None = ground truth of a file (known once mature)."""

    tenant_id: str
    transaction_id: str
    label: str
    labelled_at: datetime | None = None
    source: str = "import"


@dataclass(frozen=True)
class FeatureFrame:
    """Rows of the offline feature file: identities, event time (epoch seconds) and the feature matrix."""

    transaction_ids: list[str]
    tenant_ids: list[str]
    event_time: FloatArray
    feature_names: tuple[str, ...]
    matrix: FloatArray

    def __len__(self) -> int:
        return len(self.transaction_ids)

    def select(self, rows: BoolArray) -> FeatureFrame:
        index = np.flatnonzero(rows)
        return FeatureFrame(
            transaction_ids=[self.transaction_ids[i] for i in index],
            tenant_ids=[self.tenant_ids[i] for i in index],
            event_time=self.event_time[index],
            feature_names=self.feature_names,
            matrix=self.matrix[index],
        )

    def columns(self, names: Sequence[str]) -> FloatArray:
        """The matrix restricted to `names`, in that order."""
        positions = {name: i for i, name in enumerate(self.feature_names)}
        missing = [name for name in names if name not in positions]
        if missing:
            raise TrainingDataError(f"features missing from the data: {', '.join(missing[:5])}")
        return self.matrix[:, [positions[name] for name in names]]


def tenant_column(table: pa.Table) -> list[str]:
    """A table's tenant ids as frames spell them: "" for every row of a file without tenants.

    Transaction ids are unique per tenant only, so whatever matches rows to a frame (labels,
    `vigil ml evaluate`'s transactions) must key them the same way.
    """
    if "tenant_id" not in table.column_names:
        return [""] * table.num_rows
    return [str(v) for v in table.column("tenant_id").to_pylist()]


def read_feature_frame(path: Path, *, start: datetime | None = None, end: datetime | None = None) -> FeatureFrame:
    """Read a `vigil replay` parquet, keeping rows with start <= event time < end."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "transaction_id" not in table.column_names or "event_time" not in table.column_names:
        raise TrainingDataError(f"{path}: not a feature file (needs transaction_id and event_time)")
    event_time = table.column("event_time")
    keep = pc.is_valid(event_time)
    if start is not None:
        keep = pc.and_(keep, pc.greater_equal(event_time, start.timestamp()))
    if end is not None:
        keep = pc.and_(keep, pc.less(event_time, end.timestamp()))
    table = table.filter(keep)
    names = tuple(
        field.name
        for field in table.schema
        if field.name not in IDENTITY_COLUMNS and (pa.types.is_floating(field.type) or pa.types.is_integer(field.type))
    )
    if not names:
        raise TrainingDataError(f"{path}: no numeric feature columns")
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        matrix[:, j] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return FeatureFrame(
        transaction_ids=[str(v) for v in table.column("transaction_id").to_pylist()],
        tenant_ids=tenant_column(table),
        event_time=table.column("event_time").to_numpy(zero_copy_only=False).astype(np.float64),
        feature_names=names,
        matrix=matrix,
    )


@dataclass(frozen=True, slots=True)
class Targets:
    """Per-row outcome of the label join."""

    eligible: BoolArray  # old enough for its label to be trusted
    fraud: BoolArray  # confirmed fraud known by the cutoff
    labelled: BoolArray  # carries any label known by the cutoff
    labels_ignored_late: int  # labels recorded after the cutoff (not used)


def resolve_targets(
    frame: FeatureFrame, labels: Iterable[KnownLabel], *, cutoff: datetime, delay: timedelta
) -> Targets:
    """Join labels onto rows under the label-delay rules in the module docstring."""
    by_key: dict[tuple[str, str], KnownLabel] = {}
    late = 0
    for label in labels:
        if label.labelled_at is not None and label.labelled_at > cutoff:
            late += 1
            continue
        key = (label.tenant_id, label.transaction_id)
        current = by_key.get(key)
        if current is None or _newer(label, current):
            by_key[key] = label
    tenantless = {tx: label for (tenant, tx), label in by_key.items() if tenant == ""}
    fraud = np.zeros(len(frame), dtype=bool)
    labelled = np.zeros(len(frame), dtype=bool)
    for i, (tenant, tx) in enumerate(zip(frame.tenant_ids, frame.transaction_ids, strict=True)):
        found = by_key.get((tenant, tx)) or tenantless.get(tx)
        if found is not None:
            labelled[i] = True
            fraud[i] = found.label == CONFIRMED_FRAUD
    eligible = frame.event_time < (cutoff - delay).timestamp()
    return Targets(eligible=eligible, fraud=fraud, labelled=labelled, labels_ignored_late=late)


def _newer(candidate: KnownLabel, current: KnownLabel) -> bool:
    def stamp(label: KnownLabel) -> tuple[float, int]:
        at = label.labelled_at.timestamp() if label.labelled_at is not None else -math.inf
        return at, _SOURCE_RANK.get(label.source, 1)

    return stamp(candidate) >= stamp(current)
