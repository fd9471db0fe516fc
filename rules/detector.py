"""Rules as detectors of the shared framework (core.detection): one Detector per active rule.

All rule detectors of one rule set share a `_BatchRun`, so the first `score()`
call of a batch evaluates every rule at once (one vectorised program) and the
others just read their row of the match matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from core.contracts import DetectorFamily, Reason
from core.detection import Detector, FeatureBatch, Scores
from rules.catalogue import Catalogue
from rules.engine import RuleEngine
from rules.evaluator import Columns
from rules.pack import DEFAULT_PACK, pack_rules
from rules.ruleset import RuleSet


class _BatchRun:
    """Columns and matches of the last batch, shared by the detectors of one rule set."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._batch: FeatureBatch | None = None
        self._columns: Columns | None = None
        self._matches: NDArray[np.bool_] | None = None

    def _ensure(self, batch: FeatureBatch) -> tuple[Columns, NDArray[np.bool_]]:
        if self._batch is not batch or self._columns is None or self._matches is None:
            self._columns = Columns(batch.vectors)
            self._matches = self.ruleset.evaluate(self._columns)
            self._batch = batch
        return self._columns, self._matches

    def __reduce__(self) -> tuple[type[_BatchRun], tuple[RuleSet]]:
        return (_BatchRun, (self.ruleset,))  # the per-batch cache is not worth shipping

    def matches(self, batch: FeatureBatch, index: int) -> NDArray[np.bool_]:
        row: NDArray[np.bool_] = self._ensure(batch)[1][index]
        return row

    def columns(self, batch: FeatureBatch) -> Columns:
        return self._ensure(batch)[0]


class RuleDetector:
    """One rule: score 100 where it matched, not judged (NaN) elsewhere; severity from the rule."""

    family = DetectorFamily.RULES

    def __init__(self, run: _BatchRun, index: int) -> None:
        self._run = run
        self._index = index
        rule = run.ruleset.rules[index].rule
        self.rule_id = rule.rule_id
        self.name = f"rule:{rule.rule_id}"
        self.version = str(rule.version)
        self.severity = rule.severity
        self._severity: NDArray[np.object_] | None = None

    def matched(self, batch: FeatureBatch) -> NDArray[np.bool_]:
        """Rows of the batch this rule fired on (read-only; the rule set is evaluated once per batch).

        What `score` reports, without building scores: a caller that only needs the matching
        rows (`POST /v1/score` lists matching rules only) skips the per-rule arrays.
        """
        return self._run.matches(batch, self._index)

    def score(self, batch: FeatureBatch) -> Scores:
        matched = self._run.matches(batch, self._index)
        severity = self._severity
        if severity is None or len(severity) != len(batch):
            # One read-only array per batch size: the same severity on every row, built once.
            severity = np.full(len(batch), self.severity.value, dtype=object)
            severity.flags.writeable = False
            self._severity = severity
        return Scores(
            raw=matched.astype(np.float64),
            normalised=np.where(matched, 100.0, np.nan),
            severity=severity,
        )

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        return self._run.ruleset.reasons(self._index, self._run.columns(batch), index)


def detectors_for(ruleset: RuleSet) -> list[RuleDetector]:
    """One detector per rule of the set, sharing one evaluation per batch."""
    run = _BatchRun(ruleset)
    return [RuleDetector(run, index) for index in range(len(ruleset.rules))]


def pack_detectors(path: Path = DEFAULT_PACK, *, catalogue: Catalogue | None = None) -> list[Detector]:
    """Detectors for a rule pack file as version 1, without a database (tests, offline evaluation)."""
    rules = pack_rules(path, catalogue=catalogue)
    ruleset, _invalid = RuleSet.compile(rules, catalogue=catalogue)  # load_pack validated them all
    return list(detectors_for(ruleset))


class LiveRuleDetectors:
    """`detectors=` callable for run_detection_service: the current rules, hot-reloaded."""

    def __init__(self, engine: RuleEngine) -> None:
        self._engine = engine
        self._ruleset: RuleSet | None = None
        self._detectors: Sequence[Detector] = ()

    def __call__(self) -> Sequence[Detector]:
        ruleset = self._engine.current()
        if ruleset is not self._ruleset:
            self._ruleset = ruleset
            self._detectors = detectors_for(ruleset)
        return self._detectors
