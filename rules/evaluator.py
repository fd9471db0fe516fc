"""Vectorised evaluation of many rules over one micro-batch.

Representation (per batch of n transactions):
- numbers: float64 arrays, NaN = null (missing feature, division by zero);
- strings: a fixed-width unicode array plus a null mask (None when the column cannot be null);
- conditions: *two* boolean arrays, "is true" and "is false"; a row in neither is unknown.
  This is SQL's three-valued logic with no extra masks: numpy comparisons with NaN
  are False both ways, so a null comparison is automatically unknown, `not` swaps
  the two arrays, and a rule fires only where its condition is true.

All rules of a rule set are compiled into one straight-line program over the
distinct sub-expressions of every rule (equal IR nodes are computed once), and
only the sides a rule actually needs are computed ("is false" mostly only under `not`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from functools import reduce
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from core.contracts import FeatureVector, Transaction
from rules.catalogue import FieldSource, FieldSpec, ValueType
from rules.checker import Node
from rules.currencies import UNITS_PER_USD

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
StrColumn = tuple[Any, BoolArray | None]  # (ndarray of str_ or a str, null mask or None)
Slots = list[Any]
Instruction = Callable[[Slots, "Columns"], Any]


def _hour(tx: Transaction) -> float:
    return float(tx.occurred_at.astimezone(UTC).hour)


def _weekday(tx: Transaction) -> float:
    return float(tx.occurred_at.astimezone(UTC).weekday())


_TX_VALUES: Final[dict[str, Callable[[Transaction], float | str | None]]] = {
    "amount": lambda tx: float(tx.amount),
    "currency": lambda tx: tx.currency,
    "channel": lambda tx: str(tx.channel.value),
    "country": lambda tx: tx.country,
    "merchant_category": lambda tx: tx.merchant_category,
    "merchant_id": lambda tx: tx.merchant_id,
    "account_id": lambda tx: tx.account_id,
    "tenant_id": lambda tx: tx.tenant_id,
    "card_id": lambda tx: tx.card_id,
    "device_id": lambda tx: tx.device_id,
    "ip": lambda tx: None if tx.ip is None else str(tx.ip),
    "lat": lambda tx: tx.lat,
    "lon": lambda tx: tx.lon,
    "hour": _hour,
    "weekday": _weekday,
}


# Transaction attributes that are read as they are (no derivation): fetched together in prefetch.
_ATTRIBUTES: Final = frozenset(
    {
        "amount",
        "currency",
        "channel",
        "country",
        "merchant_category",
        "merchant_id",
        "account_id",
        "tenant_id",
        "card_id",
        "device_id",
        "lat",
        "lon",
    }
)


class Columns:
    """Typed columns of one micro-batch; each column is extracted once and cached."""

    def __init__(self, vectors: Sequence[FeatureVector]) -> None:
        self.vectors = vectors
        self.size = len(vectors)
        self._numbers: dict[str, FloatArray] = {}
        self._strings: dict[str, StrColumn] = {}
        self._truthy: dict[str, tuple[BoolArray, BoolArray]] = {}

    def prefetch(self, specs: Iterable[FieldSpec]) -> None:
        """Extract every column a program needs in two passes over the batch, not one pass per column.

        Features come from each vector's dict with one itemgetter call; plain transaction
        attributes with one attrgetter call. Derived fields (hour, weekday, ip) stay per column.
        """
        if not self.size:
            return
        wanted = [spec for spec in specs if spec.name not in self._numbers and spec.name not in self._strings]
        features = [s for s in wanted if s.source is FieldSource.FEATURE and s.type is not ValueType.STRING]
        attributes = [s for s in wanted if s.source is FieldSource.TRANSACTION and s.name in _ATTRIBUTES]
        if len(features) > 1:
            names = [spec.name for spec in features]
            getter = operator.itemgetter(*names)
            rows = []
            for vector in self.vectors:
                values = vector.features
                try:
                    rows.append(getter(values))
                except KeyError:  # a vector without some features: those are missing (null)
                    rows.append(tuple(values.get(name) for name in names))
            # numpy turns None into NaN for a float dtype; the transpose makes each column contiguous.
            matrix = np.ascontiguousarray(np.array(rows, dtype=np.float64).reshape(self.size, len(names)).T)
            for index, name in enumerate(names):
                self._numbers[name] = matrix[index]
        if len(attributes) > 1:
            fetch = operator.attrgetter(*(spec.name for spec in attributes))
            columns = zip(*(fetch(vector.transaction) for vector in self.vectors), strict=True)
            for spec, raw in zip(attributes, columns, strict=True):
                if spec.type is ValueType.STRING:
                    self._strings[spec.name] = self._string_column(list(raw), spec.nullable)
                else:  # amount (Decimal) and lat/lon (None -> NaN) convert in numpy's C loop
                    self._numbers[spec.name] = np.array(raw, dtype=np.float64).reshape(self.size)

    def number(self, spec: FieldSpec) -> FloatArray:
        column = self._numbers.get(spec.name)
        if column is None:
            if spec.source is FieldSource.FEATURE:
                # numpy turns None into NaN for a float dtype: missing features become null.
                values: list[Any] = [v.features.get(spec.name) for v in self.vectors]
            else:
                extract = _TX_VALUES[spec.name]
                values = [extract(v.transaction) for v in self.vectors]
            column = np.array(values, dtype=np.float64).reshape(self.size)
            self._numbers[spec.name] = column
        return column

    def string(self, spec: FieldSpec) -> StrColumn:
        column = self._strings.get(spec.name)
        if column is None:
            raw: list[Any]
            if spec.source is FieldSource.FEATURE:
                raw = [self.value(spec, row) for row in range(self.size)]
                raw = [None if item is None else str(item) for item in raw]
            else:
                extract = _TX_VALUES[spec.name]
                raw = [extract(v.transaction) for v in self.vectors]
            column = self._string_column(raw, spec.nullable)
            self._strings[spec.name] = column
        return column

    def _string_column(self, raw: list[Any], nullable: bool) -> StrColumn:
        null: BoolArray | None = None
        if nullable:
            null = np.array([item is None for item in raw], dtype=np.bool_).reshape(self.size)
            if null.any():
                raw = ["" if item is None else item for item in raw]
            else:
                null = None  # no nulls in this batch: skip masking in every comparison
        # StrEnum members (channel) are str instances holding their value, so they convert as text.
        return np.array(raw, dtype=np.str_).reshape(self.size), null

    def truth(self, spec: FieldSpec) -> tuple[BoolArray, BoolArray]:
        """(is true, is false) of a boolean feature stored as a number: non-zero is true."""
        pair = self._truthy.get(spec.name)
        if pair is None:
            values = self.number(spec)
            pair = ((values != 0) & ~np.isnan(values), values == 0)
            self._truthy[spec.name] = pair
        return pair

    def value(self, spec: FieldSpec, row: int) -> float | str | bool | None:
        """One field of one transaction, as an analyst would read it (for reasons)."""
        vector = self.vectors[row]
        if spec.source is FieldSource.TRANSACTION:
            return _TX_VALUES[spec.name](vector.transaction)
        raw = vector.features.get(spec.name)
        if raw is None or (isinstance(raw, float) and np.isnan(raw)):
            return None
        if spec.type is ValueType.BOOL:
            return bool(raw)
        return raw


# --- compilation to a straight-line program --------------------------------------------------

Side = str  # "v" value (numbers, strings), "t" is-true, "f" is-false (conditions)
_NOT_EQUAL: Final = np.not_equal
_TRUE_FALSE: Final[dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]]] = {
    "<": (np.less, np.greater_equal),
    "<=": (np.less_equal, np.greater),
    ">": (np.greater, np.less_equal),
    ">=": (np.greater_equal, np.less),
    # a != b is True for NaN in numpy, so "differs" is spelled as less-or-greater (False for NaN).
    "==": (np.equal, lambda a, b: np.less(a, b) | np.greater(a, b)),
    "!=": (lambda a, b: np.less(a, b) | np.greater(a, b), np.equal),
}
_ARITH: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "%": np.mod,  # NaN for a zero divisor (warnings are silenced during evaluation)
}
_STRING_TESTS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "starts_with": np.strings.startswith,
    "ends_with": np.strings.endswith,
    "contains": lambda s, part: np.strings.find(s, part) >= 0,
}


def _divide(a: Any, b: Any) -> Any:
    # x / 0 is null (NaN), not infinity: a missing baseline must not look like an extreme value.
    return np.where(np.equal(b, 0), np.nan, np.divide(a, b))


def _valid(*nulls: BoolArray | None) -> BoolArray | None:
    present = [null for null in nulls if null is not None]
    if not present:
        return None
    return ~reduce(np.logical_or, present)


def _masked(values: Any, valid: BoolArray | None) -> Any:
    return values if valid is None else values & valid


class Program:
    """Evaluates a list of condition roots over a batch into a (roots x rows) boolean matrix."""

    def __init__(self, roots: Sequence[Node]) -> None:
        self._source_roots = tuple(roots)
        self._index: dict[tuple[Node, Side], int] = {}
        self._instructions: list[tuple[Instruction, tuple[int, ...]]] = []
        self._fields: dict[str, FieldSpec] = {}
        self._roots = [self._slot(root, "t") for root in roots]

    def __reduce__(self) -> tuple[type[Program], tuple[tuple[Node, ...]]]:
        # Instructions are closures; ship the IR and recompile on the other side.
        return (Program, (self._source_roots,))

    @property
    def instruction_count(self) -> int:
        return len(self._instructions)

    def run(self, columns: Columns) -> BoolArray:
        """Matrix[i, j] is True when root i is true for transaction j (unknown counts as not true)."""
        slots: Slots = [None] * len(self._instructions)
        columns.prefetch(self._fields.values())
        with np.errstate(all="ignore"):
            for position, (instruction, _deps) in enumerate(self._instructions):
                slots[position] = instruction(slots, columns)
        out = np.empty((len(self._roots), columns.size), dtype=np.bool_)
        for row, slot in enumerate(self._roots):
            out[row] = slots[slot]
        return out

    # Each (node, side) becomes one instruction, emitted after its dependencies (post-order),
    # or an alias of another slot (`not` swaps sides; no work at run time).
    def _slot(self, node: Node, side: Side) -> int:
        key = (node, side)
        slot = self._index.get(key)
        if slot is not None:
            return slot
        if node.op == "not":
            slot = self._slot(node.args[0], "f" if side == "t" else "t")
        else:
            instruction, deps = self._plan(node, side)
            slot = len(self._instructions)
            self._instructions.append((instruction, deps))
        self._index[key] = slot
        return slot

    def _plan(self, node: Node, side: Side) -> tuple[Instruction, tuple[int, ...]]:
        op, args = node.op, node.args
        if node.type is ValueType.BOOL and side == "f" and not node.nullable and op not in ("const", "field"):
            # Two-valued here: false is simply not true, one cheap negation.
            t = self._slot(node, "t")
            return (lambda s, _c: np.logical_not(s[t])), (t,)
        if op == "const":
            constant: Any = node.value
            if node.type is ValueType.BOOL:
                truth = np.bool_(bool(constant) == (side == "t"))  # np.bool_: `~` must mean not
                return (lambda _s, _c: truth), ()
            if node.type is ValueType.STRING:
                pair: StrColumn = (constant, None)
                return (lambda _s, _c: pair), ()
            return (lambda _s, _c: constant), ()
        if op == "field":
            spec = node.value
            assert isinstance(spec, FieldSpec)
            self._fields[spec.name] = spec
            if spec.type is ValueType.NUMBER:
                return (lambda _s, c: c.number(spec)), ()
            if spec.type is ValueType.STRING:
                return (lambda _s, c: c.string(spec)), ()
            index = 0 if side == "t" else 1
            return (lambda _s, c: c.truth(spec)[index]), ()
        if op == "neg":
            a = self._slot(args[0], "v")
            return (lambda s, _c: np.negative(s[a])), (a,)
        if op in _ARITH or op == "/":
            a, b = self._slot(args[0], "v"), self._slot(args[1], "v")
            arith = _divide if op == "/" else _ARITH[op]
            return (lambda s, _c: arith(s[a], s[b])), (a, b)
        if op in _TRUE_FALSE:
            return self._compare(node, side)
        if op in ("and", "or"):
            # and: true if all true, false if any false; or: the dual (Kleene logic).
            combine = np.logical_and if (op == "and") == (side == "t") else np.logical_or
            deps = tuple(self._slot(arg, side) for arg in args)
            return (lambda s, _c: reduce(combine, (s[d] for d in deps))), deps
        if op == "in":
            return self._in(node, side)
        if op == "is_null":
            return self._is_null(node.args[0])
        if op in ("abs", "min", "max"):
            deps = tuple(self._slot(arg, "v") for arg in args)
            if op == "abs":
                (a,) = deps
                return (lambda s, _c: np.abs(s[a])), deps
            # NaN propagates: min/max of anything with a null is null (SQL LEAST/GREATEST would skip it).
            pick = np.minimum if op == "min" else np.maximum
            return (lambda s, _c: reduce(pick, (s[d] for d in deps))), deps
        if op == "coalesce":
            return self._coalesce(node, side)
        if op == "in_usd":
            return self._in_usd(node)
        if op in ("lower", "upper"):
            a = self._slot(args[0], "v")
            change = np.strings.lower if op == "lower" else np.strings.upper

            def case(s: Slots, _c: Columns) -> StrColumn:
                values, null = s[a]
                if isinstance(values, str):  # a constant: no array to map over
                    return (values.lower() if op == "lower" else values.upper()), null
                return change(values), null

            return case, (a,)
        if op in _STRING_TESTS:
            test = _STRING_TESTS[op]
            a, b = self._slot(args[0], "v"), self._slot(args[1], "v")
            want = side == "t"

            def string_test(s: Slots, _c: Columns) -> Any:
                (values, null), (other, other_null) = s[a], s[b]
                hits = test(values, other)
                return _masked(hits if want else ~hits, _valid(null, other_null))

            return string_test, (a, b)
        raise AssertionError(f"no evaluator for {op!r}")  # pragma: no cover - the checker limits ops

    def _compare(self, node: Node, side: Side) -> tuple[Instruction, tuple[int, ...]]:
        left, right = node.args
        if left.type is ValueType.NUMBER:
            compare = _TRUE_FALSE[node.op][0 if side == "t" else 1]
            a, b = self._slot(left, "v"), self._slot(right, "v")
            return (lambda s, _c: compare(s[a], s[b])), (a, b)
        if left.type is ValueType.STRING:
            a, b = self._slot(left, "v"), self._slot(right, "v")
            want_equal = (node.op == "==") == (side == "t")

            def compare_strings(s: Slots, _c: Columns) -> Any:
                (values, null), (other, other_null) = s[a], s[b]
                same = np.equal(values, other) if want_equal else np.not_equal(values, other)
                return _masked(same, _valid(null, other_null))

            return compare_strings, (a, b)
        # Booleans: equal when both true or both false; unknown on either side stays unknown.
        at, af = self._slot(left, "t"), self._slot(left, "f")
        bt, bf = self._slot(right, "t"), self._slot(right, "f")
        want_same = (node.op == "==") == (side == "t")
        if want_same:
            return (lambda s, _c: (s[at] & s[bt]) | (s[af] & s[bf])), (at, af, bt, bf)
        return (lambda s, _c: (s[at] & s[bf]) | (s[af] & s[bt])), (at, af, bt, bf)

    def _in(self, node: Node, side: Side) -> tuple[Instruction, tuple[int, ...]]:
        operand = node.args[0]
        assert isinstance(node.value, tuple)
        a = self._slot(operand, "v")
        want = side == "t"
        if operand.type is ValueType.NUMBER:
            choices = np.array(node.value, dtype=np.float64)

            def in_numbers(s: Slots, _c: Columns) -> Any:
                values = s[a]
                hits = np.isin(values, choices)
                return hits if want else ~hits & ~np.isnan(values)

            return in_numbers, (a,)
        words = np.array(node.value, dtype=np.str_)

        def in_strings(s: Slots, _c: Columns) -> Any:
            values, null = s[a]
            hits = np.isin(values, words)
            return _masked(hits if want else ~hits, _valid(null))

        return in_strings, (a,)

    def _in_usd(self, node: Node) -> tuple[Instruction, tuple[int, ...]]:
        a, b = self._slot(node.args[0], "v"), self._slot(node.args[1], "v")

        def dollars(s: Slots, _c: Columns) -> Any:
            amounts, (currencies, null) = s[a], s[b]
            if isinstance(currencies, str):  # a constant currency
                return amounts / UNITS_PER_USD.get(currencies.upper(), np.nan)
            # One dictionary look-up per distinct currency in the batch, not per row.
            codes, positions = np.unique(currencies, return_inverse=True)
            rates = np.array([UNITS_PER_USD.get(str(code).upper(), np.nan) for code in codes])[positions]
            if null is not None:
                rates[null] = np.nan
            return amounts / rates

        return dollars, (a, b)

    def _is_null(self, operand: Node) -> tuple[Instruction, tuple[int, ...]]:
        if operand.type is ValueType.NUMBER:
            a = self._slot(operand, "v")
            return (lambda s, _c: np.isnan(s[a])), (a,)
        if operand.type is ValueType.STRING:
            a = self._slot(operand, "v")
            return (lambda s, _c: False if s[a][1] is None else s[a][1]), (a,)
        t, f = self._slot(operand, "t"), self._slot(operand, "f")
        return (lambda s, _c: ~(s[t] | s[f])), (t, f)

    def _coalesce(self, node: Node, side: Side) -> tuple[Instruction, tuple[int, ...]]:
        if node.type is ValueType.NUMBER:
            deps = tuple(self._slot(arg, "v") for arg in node.args)

            def first_number(s: Slots, _c: Columns) -> Any:
                result = s[deps[-1]]
                for dep in reversed(deps[:-1]):
                    result = np.where(np.isnan(s[dep]), result, s[dep])
                return result

            return first_number, deps
        if node.type is ValueType.STRING:
            deps = tuple(self._slot(arg, "v") for arg in node.args)

            def first_string(s: Slots, _c: Columns) -> StrColumn:
                values, null = s[deps[-1]]
                for dep in reversed(deps[:-1]):
                    own, own_null = s[dep]
                    if own_null is None:
                        values, null = own, None
                    else:
                        values = np.where(own_null, values, own)
                        # null only where this argument and every later one are null (None: never null).
                        null = None if null is None else own_null & null
                return values, null

            return first_string, deps
        pairs = tuple((self._slot(arg, "t"), self._slot(arg, "f")) for arg in node.args)
        index = 0 if side == "t" else 1

        def first_condition(s: Slots, _c: Columns) -> Any:
            result = s[pairs[-1][index]]
            for t, f in reversed(pairs[:-1]):
                known = s[t] | s[f]
                result = (s[t] if index == 0 else s[f]) | (~known & result)
            return result

        return first_condition, tuple(slot for pair in pairs for slot in pair)
