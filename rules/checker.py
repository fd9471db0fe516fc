"""Type checker: validates an AST against the field catalogue and lowers it to a typed IR.

The IR (`Node`) has no source positions, so two rules that contain the same
sub-expression produce equal, hashable nodes: the evaluator computes each one
once per batch for the whole rule set. Errors are collected (not just the first)
so an analyst sees every unknown field at once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from rules.catalogue import Catalogue, FieldSpec, ValueType, default_catalogue
from rules.currencies import in_usd
from rules.errors import RuleError, RuleSyntaxError
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
    NullLit,
    NumberLit,
    Span,
    StringLit,
    make_error,
    parse,
)

NUMBER, STRING, BOOL = ValueType.NUMBER, ValueType.STRING, ValueType.BOOL
ConstValue = float | str | bool


@dataclass(frozen=True, slots=True)
class Node:
    """One typed IR operation. `op` names it; `value` holds constants, field specs and in-lists.

    ops: const, field, neg, + - * / %, == != < <= > >=, and, or, not, in, is_null,
    and one per function (abs, min, max, coalesce, lower, upper, starts_with, ends_with, contains).
    """

    op: str
    type: ValueType
    args: tuple[Node, ...] = ()
    value: ConstValue | FieldSpec | tuple[ConstValue, ...] | None = None
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class CheckedExpression:
    """A validated rule expression: its IR root (a condition) and the fields it reads, in order."""

    source: str
    root: Node
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True, slots=True)
class _Function:
    min_args: int
    max_args: int
    # Returns the result type from argument types, or an error message.
    result: Callable[[list[ValueType]], ValueType | str]
    signature: str


def _all(expected: ValueType, result: ValueType) -> Callable[[list[ValueType]], ValueType | str]:
    def rule(types: list[ValueType]) -> ValueType | str:
        for position, type_ in enumerate(types, start=1):
            if type_ is not expected:
                return f"argument {position} must be a {expected}, but it is a {type_}"
        return result

    return rule


def _exactly(expected: tuple[ValueType, ...], result: ValueType) -> Callable[[list[ValueType]], ValueType | str]:
    def rule(types: list[ValueType]) -> ValueType | str:
        for position, (type_, wanted) in enumerate(zip(types, expected, strict=True), start=1):
            if type_ is not wanted:
                return f"argument {position} must be a {wanted}, but it is a {type_}"
        return result

    return rule


def _same(types: list[ValueType]) -> ValueType | str:
    for position, type_ in enumerate(types[1:], start=2):
        if type_ is not types[0]:
            return f"all arguments must have the same type; argument 1 is a {types[0]}, argument {position} a {type_}"
    return types[0]


FUNCTIONS: Final[dict[str, _Function]] = {
    "abs": _Function(1, 1, _all(NUMBER, NUMBER), "abs(number) -> number"),
    "min": _Function(2, 16, _all(NUMBER, NUMBER), "min(number, number, ...) -> number"),
    "max": _Function(2, 16, _all(NUMBER, NUMBER), "max(number, number, ...) -> number"),
    "coalesce": _Function(2, 16, _same, "coalesce(x, fallback, ...) -> first value that is not null"),
    "lower": _Function(1, 1, _all(STRING, STRING), "lower(string) -> string"),
    "upper": _Function(1, 1, _all(STRING, STRING), "upper(string) -> string"),
    "starts_with": _Function(2, 2, _all(STRING, BOOL), "starts_with(string, prefix) -> bool"),
    "ends_with": _Function(2, 2, _all(STRING, BOOL), "ends_with(string, suffix) -> bool"),
    "contains": _Function(2, 2, _all(STRING, BOOL), "contains(string, part) -> bool"),
    "in_usd": _Function(
        2,
        2,
        _exactly((NUMBER, STRING), NUMBER),
        "in_usd(amount, currency) -> the amount in US dollars at reference rates (null for a currency without one)",
    ),
}
# Functions whose result can be null even when no argument is (in_usd: a currency without a rate).
_NULLABLE_RESULTS: Final = frozenset({"in_usd"})
_ORDERING: Final = frozenset({"<", "<=", ">", ">="})
_NULL_HINT: Final = "use 'is null' or 'is not null' to test for a missing value"


def compile_expression(expression: str, *, catalogue: Catalogue | None = None) -> CheckedExpression:
    """Parse and type-check a rule; raises RuleSyntaxError listing every problem found."""
    tree = parse(expression)
    checker = _Checker(expression, catalogue or default_catalogue())
    root = checker.check(tree)
    if root is not None and root.type is not BOOL:
        checker.error(
            tree.span,
            f"a rule must be a condition (true or false), but this is a {root.type}; compare it, e.g. amount > 1000",
        )
    if checker.errors or root is None:
        raise RuleSyntaxError.of(checker.errors)
    return CheckedExpression(expression, root, tuple(checker.fields))


def validate(expression: str, *, catalogue: Catalogue | None = None) -> list[RuleError]:
    """Every problem in `expression` (empty when it is a valid rule); never raises on bad input."""
    try:
        compile_expression(expression, catalogue=catalogue)
    except RuleSyntaxError as exc:
        return list(exc.errors)
    return []


def suggest(name: str, candidates: list[str]) -> str:
    """A ' did you mean ...?' hint, or ''."""
    matches = difflib.get_close_matches(name.lower(), candidates, n=2, cutoff=0.75)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


@dataclass
class _Checker:
    source: str
    catalogue: Catalogue
    errors: list[RuleError] = field(default_factory=list)
    fields: list[FieldSpec] = field(default_factory=list)

    def error(self, span: Span, message: str) -> None:
        self.errors.append(make_error(self.source, span, message))

    def check(self, expr: Expr) -> Node | None:
        match expr:
            case NumberLit(value=value):
                return Node("const", NUMBER, value=value)
            case StringLit(value=value):
                return Node("const", STRING, value=value)
            case BoolLit(value=value):
                return Node("const", BOOL, value=value)
            case NullLit(span=span):
                self.error(span, f"null is not a value here; {_NULL_HINT}")
                return None
            case Name():
                return self._name(expr)
            case Negate(operand=operand, span=span):
                inner = self._typed(operand, NUMBER, "'-' negates numbers")
                if inner is None:
                    return None
                return _fold(Node("neg", NUMBER, (inner,), nullable=inner.nullable))
            case Not(operand=operand):
                inner = self._typed(operand, BOOL, "'not' needs a condition")
                return None if inner is None else _not(inner)
            case Arith():
                return self._arith(expr)
            case Compare():
                return self._compare(expr)
            case Logical(op=op, operands=operands):
                items = [self._typed(item, BOOL, f"'{op}' joins conditions") for item in operands]
                if any(item is None for item in items):
                    return None
                checked = tuple(item for item in items if item is not None)
                return Node(op, BOOL, checked, nullable=any(item.nullable for item in checked))
            case InList():
                return self._in(expr)
            case Between():
                return self._between(expr)
            case IsNull(operand=operand, negated=negated):
                inner = self.check(operand)
                if inner is None:
                    return None
                test = Node("is_null", BOOL, (inner,))
                return _not(test) if negated else test
            case Call():
                return self._call(expr)
        raise AssertionError(f"unhandled node {expr!r}")  # pragma: no cover

    def _typed(self, expr: Expr, expected: ValueType, why: str) -> Node | None:
        node = self.check(expr)
        if node is not None and node.type is not expected:
            self.error(expr.span, f"{why}, but this is a {node.type}")
            return None
        return node

    def _name(self, expr: Name) -> Node | None:
        spec = self.catalogue.get(expr.name)
        if spec is None:
            if expr.name.lower() in FUNCTIONS:
                self.error(
                    expr.span, f"{expr.name} is a function; call it like {FUNCTIONS[expr.name.lower()].signature}"
                )
            else:
                hint = suggest(expr.name, self.catalogue.names())
                self.error(expr.span, f"unknown field '{expr.name}'{hint}")
            return None
        if spec not in self.fields:
            self.fields.append(spec)
        return Node("field", spec.type, value=spec, nullable=spec.nullable)

    def _arith(self, expr: Arith) -> Node | None:
        left, right = self.check(expr.left), self.check(expr.right)
        if left is None or right is None:
            return None
        for side, node in ((expr.left, left), (expr.right, right)):
            if node.type is not NUMBER:
                self.error(side.span, f"'{expr.op}' works on numbers, but this is a {node.type}")
                return None
        # Division and modulo by zero give null rather than infinity.
        nullable = left.nullable or right.nullable or expr.op in ("/", "%")
        return _fold(Node(expr.op, NUMBER, (left, right), nullable=nullable))

    def _compare(self, expr: Compare) -> Node | None:
        for side in (expr.left, expr.right):
            if isinstance(side, NullLit):
                self.error(side.span, f"comparing with null is never true; {_NULL_HINT}")
                return None
        left, right = self.check(expr.left), self.check(expr.right)
        if left is None or right is None:
            return None
        if left.type is not right.type:
            self.error(
                expr.span,
                f"cannot compare a {left.type} with a {right.type}" + _compare_hint(left.type, right.type),
            )
            return None
        if expr.op in _ORDERING and left.type is not NUMBER:
            self.error(expr.op_span, f"'{expr.op}' compares numbers, but both sides are {left.type}s; use == or !=")
            return None
        return Node(expr.op, BOOL, (left, right), nullable=left.nullable or right.nullable)

    def _in(self, expr: InList) -> Node | None:
        operand = self.check(expr.operand)
        values: list[ConstValue] = []
        ok = operand is not None
        for item in expr.items:
            node = self.check(item) if not isinstance(item, NullLit) else None
            if isinstance(item, NullLit):
                self.error(item.span, f"null never matches an 'in' list; {_NULL_HINT}")
                ok = False
            elif node is None:
                ok = False
            elif node.op != "const":
                self.error(item.span, 'an \'in\' list holds literal values only, e.g. ("NG", "RU") or (1, 2)')
                ok = False
            elif node.type is BOOL:
                self.error(item.span, "true/false do not belong in an 'in' list; use == instead")
                ok = False
            elif operand is not None and node.type is not operand.type:
                self.error(item.span, f"this list value is a {node.type} but the tested value is a {operand.type}")
                ok = False
            else:
                assert isinstance(node.value, float | str)
                values.append(node.value)
        if not ok or operand is None:
            return None
        test = Node("in", BOOL, (operand,), value=tuple(dict.fromkeys(values)), nullable=operand.nullable)
        return _not(test) if expr.negated else test

    def _between(self, expr: Between) -> Node | None:
        why = "'between' works on numbers"
        operand = self._typed(expr.operand, NUMBER, why)
        low, high = self._typed(expr.low, NUMBER, why), self._typed(expr.high, NUMBER, why)
        if operand is None or low is None or high is None:
            return None
        # SQL semantics: x between a and b  ==  x >= a and x <= b (bounds inclusive).
        nullable = operand.nullable or low.nullable or high.nullable
        test = Node(
            "and",
            BOOL,
            (
                Node(">=", BOOL, (operand, low), nullable=operand.nullable or low.nullable),
                Node("<=", BOOL, (operand, high), nullable=operand.nullable or high.nullable),
            ),
            nullable=nullable,
        )
        return _not(test) if expr.negated else test

    def _call(self, expr: Call) -> Node | None:
        name = expr.name.lower()
        function = FUNCTIONS.get(name)
        if function is None:
            hint = suggest(name, sorted(FUNCTIONS))
            if not hint and expr.name in self.catalogue:
                hint = f"; '{expr.name}' is a field, not a function"
            self.error(expr.name_span, f"unknown function '{expr.name}'{hint}")
            for arg in expr.args:
                self.check(arg)
            return None
        count = len(expr.args)
        if not function.min_args <= count <= function.max_args:
            wanted = (
                str(function.min_args)
                if function.min_args == function.max_args
                else f"{function.min_args} to {function.max_args}"
            )
            self.error(expr.span, f"{name}() takes {wanted} argument(s), got {count}: {function.signature}")
            return None
        args = [self.check(arg) for arg in expr.args]
        if any(arg is None for arg in args):
            return None
        checked = tuple(arg for arg in args if arg is not None)
        result = function.result([arg.type for arg in checked])
        if not isinstance(result, ValueType):
            self.error(expr.span, f"{name}(): {result}; {function.signature}")
            return None
        nullable = (
            all(arg.nullable for arg in checked)
            if name == "coalesce"
            else name in _NULLABLE_RESULTS or any(arg.nullable for arg in checked)
        )
        return _fold(Node(name, result, checked, nullable=nullable))


def _compare_hint(left: ValueType, right: ValueType) -> str:
    if {left, right} == {NUMBER, STRING}:
        return " (quote numbers only when the field is text, e.g. merchant_category == '5967')"
    if BOOL in (left, right):
        return " (a true/false field is a condition on its own: write account_new_device or not account_new_device)"
    return ""


def _not(node: Node) -> Node:
    if node.op == "not":
        return node.args[0]
    if node.op == "const":
        return Node("const", BOOL, value=not node.value)
    return Node("not", BOOL, (node,), nullable=node.nullable)


_FOLDABLE: Final[dict[str, Callable[..., ConstValue]]] = {
    "neg": lambda a: -a,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b != 0 else math.nan,
    "%": lambda a, b: a % b if b != 0 else math.nan,  # floored, like numpy's mod
    "abs": abs,
    "min": min,
    "max": max,
    "lower": str.lower,
    "upper": str.upper,
    "in_usd": lambda amount, currency: _null_as_nan(in_usd(amount, currency)),
}


def _null_as_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _fold(node: Node) -> Node:
    """Evaluate operations on constants once, at compile time (e.g. 10 * 1000)."""
    if node.op not in _FOLDABLE or not node.args or any(arg.op != "const" for arg in node.args):
        return node
    value = _FOLDABLE[node.op](*(arg.value for arg in node.args))
    is_null = isinstance(value, float) and math.isnan(value)
    return Node("const", node.type, value=value, nullable=is_null)
