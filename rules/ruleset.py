"""A compiled set of rules: one vectorised program for all of them, plus readable reasons."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.contracts import Reason
from rules.catalogue import TRANSACTION_FIELDS, Catalogue, FieldSpec, ValueType, default_catalogue
from rules.checker import CheckedExpression, Node, compile_expression
from rules.errors import RuleSyntaxError
from rules.evaluator import Columns, Program
from rules.model import ActiveRule

log = logging.getLogger(__name__)

_TENANT = next(spec for spec in TRANSACTION_FIELDS if spec.name == "tenant_id")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An active rule and its checked expression."""

    rule: ActiveRule
    checked: CheckedExpression

    @property
    def detector_name(self) -> str:
        return f"rule:{self.rule.rule_id}"


def _scoped(rule: CompiledRule) -> Node:
    root = rule.checked.root
    if rule.rule.tenant_id is None:
        return root
    # Tenant scope is just one more condition; rules of one tenant share the comparison.
    same_tenant = Node(
        "==",
        ValueType.BOOL,
        (Node("field", ValueType.STRING, value=_TENANT), Node("const", ValueType.STRING, value=rule.rule.tenant_id)),
    )
    return Node("and", ValueType.BOOL, (same_tenant, root), nullable=root.nullable)


class RuleSet:
    """Rules compiled together; `evaluate` returns which rule matched which transaction."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._program = Program([_scoped(rule) for rule in self.rules])
        self._last: tuple[Columns, NDArray[np.bool_]] | None = None

    def __reduce__(self) -> tuple[type[RuleSet], tuple[tuple[CompiledRule, ...]]]:
        return (RuleSet, (self.rules,))

    @classmethod
    def compile(
        cls, rules: Sequence[ActiveRule], *, catalogue: Catalogue | None = None
    ) -> tuple[RuleSet, dict[str, RuleSyntaxError]]:
        """Compile every rule that is valid against `catalogue`; invalid ones are returned, not raised.

        A stored rule can become invalid when the feature catalogue changes; one
        such rule must not take the others down.
        """
        catalogue = catalogue or default_catalogue()
        compiled: list[CompiledRule] = []
        invalid: dict[str, RuleSyntaxError] = {}
        for rule in rules:
            try:
                compiled.append(CompiledRule(rule, compile_expression(rule.expression, catalogue=catalogue)))
            except RuleSyntaxError as exc:
                invalid[rule.rule_id] = exc
        return cls(compiled), invalid

    @property
    def instruction_count(self) -> int:
        return self._program.instruction_count

    def evaluate(self, columns: Columns) -> NDArray[np.bool_]:
        """matches[i, j]: rule i fired on transaction j. Cached for the last batch seen."""
        if self._last is not None and self._last[0] is columns:
            return self._last[1]
        matches = self._program.run(columns)
        self._last = (columns, matches)
        return matches

    def reasons(self, index: int, columns: Columns, row: int) -> list[Reason]:
        """Why rule `index` fired on transaction `row`: the rule, then each field it read."""
        compiled = self.rules[index]
        rule = compiled.rule
        values = [(spec, columns.value(spec, row)) for spec in compiled.checked.fields]
        shown = ", ".join(f"{spec.name} = {_format(value)}" for spec, value in values)
        summary = f"Rule '{rule.name}' (version {rule.version}) matched"
        summary += f": {shown}." if shown else "."
        reasons = [Reason(feature=compiled.detector_name, value=None, text=summary)]
        reasons.extend(_field_reason(spec, value) for spec, value in values)
        return reasons


def _field_reason(spec: FieldSpec, value: float | str | bool | None) -> Reason:
    if value is None:
        return Reason(feature=spec.name, value=None, text=f"{spec.name} was missing for this transaction.")
    if isinstance(value, bool):
        text_value = "true" if value else "false"
        return Reason(feature=spec.name, value=text_value, text=f"{spec.name} was {text_value} for this transaction.")
    return Reason(feature=spec.name, value=value, text=f"{spec.name} was {_format(value)} for this transaction.")


def _format(value: float | str | bool | None) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")
