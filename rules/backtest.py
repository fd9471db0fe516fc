"""Backtest: run a draft rule over history with the detector's own evaluator and score it.

The input is any iterable of FeatureVector batches, so the same function serves
stored transactions (`rules.history`), a replay file, or a test's list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import numpy as np

from core.contracts import FeatureVector, Severity
from rules.catalogue import Catalogue
from rules.checker import compile_expression
from rules.evaluator import Columns
from rules.model import ActiveRule
from rules.ruleset import CompiledRule, RuleSet

DRAFT_ID: Final = "draft"


@dataclass(frozen=True, slots=True)
class DayStat:
    """Hits of one UTC day."""

    day: date
    evaluated: int
    hits: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.evaluated if self.evaluated else 0.0


@dataclass(frozen=True, slots=True)
class Example:
    """One transaction the rule flagged, with the reasons the detector would give."""

    transaction_id: str
    tenant_id: str
    occurred_at: datetime
    label: bool | None  # True = labelled fraud, False = labelled not fraud, None = unlabelled
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class BacktestReport:
    """Outcome of a backtest. Precision and recall count labelled transactions only."""

    expression: str
    evaluated: int
    hits: int
    days: tuple[DayStat, ...]
    labelled: int
    positives: int  # labelled fraud among the evaluated transactions
    labelled_hits: int
    true_positives: int
    false_positives: int
    false_negatives: int
    examples: tuple[Example, ...] = field(default=())

    @property
    def hit_rate(self) -> float:
        return self.hits / self.evaluated if self.evaluated else 0.0

    @property
    def precision(self) -> float | None:
        """Share of labelled hits that are fraud; None without labelled hits."""
        judged = self.true_positives + self.false_positives
        return self.true_positives / judged if judged else None

    @property
    def recall(self) -> float | None:
        """Share of labelled fraud the rule caught; None without labelled fraud."""
        return self.true_positives / self.positives if self.positives else None

    @property
    def hits_per_day(self) -> dict[str, int]:
        return {stat.day.isoformat(): stat.hits for stat in self.days}

    @property
    def sample_transaction_ids(self) -> list[str]:
        return [example.transaction_id for example in self.examples]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what `vigil rules backtest --json` prints)."""
        return {
            "expression": self.expression,
            "evaluated": self.evaluated,
            "hits": self.hits,
            "hit_rate": self.hit_rate,
            "days": [
                {"day": s.day.isoformat(), "evaluated": s.evaluated, "hits": s.hits, "hit_rate": s.hit_rate}
                for s in self.days
            ],
            "labelled": self.labelled,
            "positives": self.positives,
            "labelled_hits": self.labelled_hits,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": self.precision,
            "recall": self.recall,
            "examples": [
                {
                    "transaction_id": e.transaction_id,
                    "tenant_id": e.tenant_id,
                    "occurred_at": e.occurred_at.isoformat(),
                    "label": e.label,
                    "reasons": list(e.reasons),
                }
                for e in self.examples
            ],
        }


def backtest(
    *,
    expression: str,
    batches: Iterable[Sequence[FeatureVector]],
    labels: Mapping[tuple[str, str], bool] | None = None,
    tenant_id: str | None = None,
    catalogue: Catalogue | None = None,
    max_examples: int = 20,
    on_batch: Callable[[int], None] | None = None,
) -> BacktestReport:
    """Evaluate `expression` over every batch; raises RuleSyntaxError before reading anything if invalid.

    `labels` maps (tenant, transaction id) to True (fraud) or False (not fraud); `on_batch`
    is called with each batch's size (progress bars).
    """
    labels = labels or {}
    draft = ActiveRule(
        rule_id=DRAFT_ID,
        version=0,
        name="draft rule",
        description="",
        expression=expression,
        severity=Severity.INFO,
        tenant_id=tenant_id,
    )
    ruleset = RuleSet([CompiledRule(draft, compile_expression(expression, catalogue=catalogue))])
    evaluated_per_day: Counter[date] = Counter()
    hits_per_day: Counter[date] = Counter()
    evaluated = labelled = positives = labelled_hits = true_positives = 0
    examples: list[Example] = []
    for batch in batches:
        if not batch:
            continue
        columns = Columns(batch)
        matched = ruleset.evaluate(columns)[0]
        if tenant_id is not None:
            in_scope = np.fromiter((v.transaction.tenant_id == tenant_id for v in batch), np.bool_, len(batch))
        else:
            in_scope = np.ones(len(batch), dtype=np.bool_)
        for row, vector in enumerate(batch):
            if not in_scope[row]:
                continue
            transaction = vector.transaction
            day = transaction.occurred_at.astimezone(UTC).date()
            evaluated_per_day[day] += 1
            label = labels.get((transaction.tenant_id, transaction.transaction_id))
            hit = bool(matched[row])
            if label is not None:
                labelled += 1
                positives += label
                labelled_hits += hit
                true_positives += hit and label
            if hit:
                hits_per_day[day] += 1
                if len(examples) < max_examples:
                    reasons = tuple(reason.text for reason in ruleset.reasons(0, columns, row))
                    examples.append(
                        Example(
                            transaction.transaction_id, transaction.tenant_id, transaction.occurred_at, label, reasons
                        )
                    )
        evaluated += int(in_scope.sum())
        if on_batch is not None:
            on_batch(len(batch))
    days = tuple(DayStat(day, evaluated_per_day[day], hits_per_day[day]) for day in sorted(evaluated_per_day))
    return BacktestReport(
        expression=expression,
        evaluated=evaluated,
        hits=sum(hits_per_day.values()),
        days=days,
        labelled=labelled,
        positives=positives,
        labelled_hits=labelled_hits,
        true_positives=true_positives,
        false_positives=labelled_hits - true_positives,
        false_negatives=positives - true_positives,
        examples=tuple(examples),
    )
