"""A deliberately naive row-at-a-time interpreter of the rule AST: the semantics, spelled out.

None is null for every type (for conditions, None is "unknown"). SQL three-valued
logic: comparisons with null are unknown; `and` is false if any side is false;
`or` is true if any side is true; `not unknown` is unknown. A rule fires only
when its condition is true. The vectorised evaluator must agree row for row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from core.contracts import FeatureVector
from rules.catalogue import Catalogue, FieldSource, ValueType, default_catalogue
from rules.currencies import UNITS_PER_USD
from rules.evaluator import _TX_VALUES
from rules.syntax import (
    Arith,
    Between,
    BoolLit,
    Call,
    Compare,
    Expr,
    InList,
    IsNull,
    Logical,
    Name,
    Negate,
    Not,
    NumberLit,
    StringLit,
    parse,
)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def field_value(name: str, vector: FeatureVector, catalogue: Catalogue) -> Any:
    spec = catalogue.get(name)
    assert spec is not None
    if spec.source is FieldSource.TRANSACTION:
        return _TX_VALUES[name](vector.transaction)
    raw = vector.features.get(name)
    if raw is None:
        return None
    return raw != 0 if spec.type is ValueType.BOOL else float(raw)


def evaluate(expr: Expr, vector: FeatureVector, catalogue: Catalogue) -> Any:
    def ev(node: Expr) -> Any:
        return evaluate(node, vector, catalogue)

    match expr:
        case NumberLit(value=value) | StringLit(value=value) | BoolLit(value=value):
            return value
        case Name(name=name):
            return field_value(name, vector, catalogue)
        case Negate(operand=operand):
            value = ev(operand)
            return None if value is None else -value
        case Not(operand=operand):
            return _not(ev(operand))
        case Arith(op=op, left=left, right=right):
            a, b = ev(left), ev(right)
            if a is None or b is None:
                return None
            if op in ("/", "%") and b == 0:
                return None
            return {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod}[
                op
            ](a, b)
        case Compare(op=op, left=left, right=right):
            a, b = ev(left), ev(right)
            return None if a is None or b is None else _COMPARE[op](a, b)
        case Logical(op=op, operands=operands):
            values = [ev(o) for o in operands]
            return _and(values) if op == "and" else _or(values)
        case InList(operand=operand, items=items, negated=negated):
            value = ev(operand)
            result = None if value is None else value in [ev(i) for i in items]
            return _not(result) if negated else result
        case Between(operand=operand, low=low, high=high, negated=negated):
            x, lo, hi = ev(operand), ev(low), ev(high)
            result = _and([None if x is None or lo is None else x >= lo, None if x is None or hi is None else x <= hi])
            return _not(result) if negated else result
        case IsNull(operand=operand, negated=negated):
            return (ev(operand) is not None) if negated else (ev(operand) is None)
        case Call(name=name, args=args):
            values = [ev(a) for a in args]
            if name == "coalesce":
                return next((v for v in values if v is not None), None)
            if any(v is None for v in values):
                return None
            functions: dict[str, Callable[..., Any]] = {
                "abs": abs,
                "min": min,
                "max": max,
                "lower": str.lower,
                "upper": str.upper,
                "starts_with": str.startswith,
                "ends_with": str.endswith,
                "contains": operator.contains,
                "in_usd": lambda amount, code: (
                    amount / UNITS_PER_USD[code.upper()] if code.upper() in UNITS_PER_USD else None
                ),
            }
            return functions[name](*values)
    raise AssertionError(f"unexpected node {expr!r}")


def fires(expression: str, vector: FeatureVector, catalogue: Catalogue | None = None) -> bool:
    """True when the rule's condition is true for this transaction (unknown does not fire)."""
    return evaluate(parse(expression), vector, catalogue or default_catalogue()) is True
