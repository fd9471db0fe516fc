"""The vectorised evaluator agrees with the naive reference interpreter, including null semantics."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts import Channel, FeatureVector
from rules import Columns, RuleSyntaxError, compile_expression
from rules.evaluator import Program
from tests.rules.factories import vector
from tests.rules.reference import fires


def run(expressions: list[str], vectors: list[FeatureVector]) -> np.ndarray:
    program = Program([compile_expression(e).root for e in expressions])
    return program.run(Columns(vectors))


ROWS = [
    vector(0, amount="5.00", features={"card_count_1h": 7.0, "account_new_device": 1.0}, country="NG", card="c-1"),
    vector(1, amount="2000.00", features={"card_count_1h": None, "account_new_device": 0.0}, country="FR", card=None),
    vector(2, amount="10.00", features={}, country="RU", card="C-1", device="d-1"),
]
# One amount, three currencies: ~$6.30 (NG rows pay in naira, 1,500 per dollar), ~$1,300, and no rate.
CURRENCY_ROWS = [
    vector(0, amount="9450", currency="NGN"),
    vector(1, amount="1200.00", currency="EUR"),
    vector(2, amount="9450.00", currency="XXX"),
]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount > 100", [False, True, False]),
        ("country in ('NG', 'RU')", [True, False, True]),
        ("country not in ('NG', 'RU')", [False, True, False]),
        # Null semantics: a missing feature makes the comparison unknown, and `not unknown` is unknown.
        ("card_count_1h > 5", [True, False, False]),
        ("not (card_count_1h > 5)", [False, False, False]),
        ("card_count_1h > 5 or amount > 100", [True, True, False]),
        ("not (card_count_1h > 5 and amount > 100)", [True, False, True]),  # false and unknown = false
        ("coalesce(card_count_1h, 0) <= 5", [False, True, True]),
        ("card_count_1h is null", [False, True, True]),
        ("card_id is not null", [True, False, True]),
        ("card_id != 'c-1'", [False, False, True]),
        ("lower(card_id) == 'c-1'", [True, False, True]),
        ("amount between 5 and 10", [True, False, True]),
        ("amount not between 5 and 10", [False, True, False]),
        ("amount / 0 > 1 or amount / 0 <= 1", [False, False, False]),  # x / 0 is null, never infinity
        ("account_new_device", [True, False, False]),
        ("not account_new_device", [False, True, False]),
        ("account_new_device == false", [False, True, False]),
        ("account_new_device is null", [False, False, True]),
        ("starts_with(country, 'N') or ends_with(country, 'U')", [True, False, True]),
        ("contains(coalesce(device_id, 'none'), 'on')", [True, True, False]),
        ("max(amount, 50) == 50 and min(amount, card_count_1h) == 5", [True, False, False]),
        ("abs(-amount) >= 2000", [False, True, False]),
        ("amount % 3 == 1", [False, False, True]),
        ("true", [True, True, True]),
        ("false or not true", [False, False, False]),
        ("hour == 12 and weekday == 4", [True, True, True]),
        ("channel == 'ecommerce' and merchant_category == '5411'", [True, True, True]),
    ],
)
def test_semantics(expression: str, expected: list[bool]) -> None:
    assert run([expression], ROWS)[0].tolist() == expected
    assert [fires(expression, row) for row in ROWS] == expected  # the reference agrees


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("in_usd(amount, currency) < 10", [True, False, False]),  # XXX has no rate: unknown, not true
        ("in_usd(amount, currency) >= 10", [False, True, False]),
        ("in_usd(amount, currency) is null", [False, False, True]),
        ("coalesce(in_usd(amount, currency), amount) > 5000", [False, False, True]),
        ("in_usd(amount, 'JPY') > 60", [True, False, True]),  # 9,450 yen ~ $63
        ("in_usd(amount, 'eur') between 1300 and 1305", [False, True, False]),  # codes in any case
    ],
)
def test_amounts_in_dollars_compare_across_currencies(expression: str, expected: list[bool]) -> None:
    assert run([expression], CURRENCY_ROWS)[0].tolist() == expected
    assert [fires(expression, row) for row in CURRENCY_ROWS] == expected


def test_in_usd_is_typed_and_folds_constants() -> None:
    folded = compile_expression("in_usd(20, 'EUR') > 21").root.args[0]
    assert folded.op == "const" and folded.value == pytest.approx(21.74, abs=0.01)  # 20 EUR ~ $21.74, once
    unknown = compile_expression("in_usd(20, 'XXX') > 21").root.args[0]
    assert unknown.op == "const" and unknown.nullable  # no rate: a null constant
    with pytest.raises(RuleSyntaxError, match="argument 2 must be a string"):
        compile_expression("in_usd(amount, 3) < 10")


def test_shared_subexpressions_are_computed_once_for_the_whole_rule_set() -> None:
    one = Program([compile_expression("card_count_1h >= 5 and amount < 10").root])
    both = Program(
        [
            compile_expression("card_count_1h >= 5 and amount < 10").root,
            compile_expression("amount < 10 and country == 'DE'").root,
        ]
    )
    # The second rule adds only its own comparison with 'DE', its field, its constant and its `and`.
    assert both.instruction_count == one.instruction_count + 4


def test_columns_are_extracted_once_per_batch() -> None:
    columns = Columns(ROWS)
    program = Program([compile_expression(e).root for e in ("amount > 1", "amount < 1", "amount * 2 > 3")])
    program.run(columns)
    first = columns.number(compile_expression("amount > 1").fields[0])
    program.run(columns)
    assert columns.number(compile_expression("amount > 1").fields[0]) is first


def test_program_pickles_by_recompiling() -> None:
    program = Program([compile_expression("country in ('NG') and amount < 10").root])
    clone = pickle.loads(pickle.dumps(program))
    np.testing.assert_array_equal(clone.run(Columns(ROWS)), program.run(Columns(ROWS)))


def test_empty_batch() -> None:
    assert run(["amount > 1", "country == 'DE'"], []).shape == (2, 0)


# --- property: vectorised == reference on random well-typed rules -------------------------------

NUMBER_FIELDS = ["amount", "hour", "lat", "card_count_1h", "account_amount_zscore"]
STRING_FIELDS = ["country", "card_id", "device_id", "currency"]
WORDS = ["DE", "NG", "de", "c-1", "C-1", "", "x y", "x.y"]


def numbers(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.sampled_from(NUMBER_FIELDS),
        st.integers(-50, 2000).map(str),
        st.sampled_from(["0", "0.5", "-1.25", "3"]),
    )
    if depth == 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda x: f"-({x})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        sub.map(lambda x: f"abs({x})"),
        sub.map(lambda x: f"in_usd({x}, currency)"),
    )


def strings(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(STRING_FIELDS), st.sampled_from(WORDS).map(lambda w: f"'{w}'"))
    if depth == 0:
        return leaf
    sub = strings(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(st.sampled_from(["lower", "upper"]), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
    )


def conditions(depth: int) -> st.SearchStrategy[str]:
    num, text = numbers(min(depth, 2)), strings(min(depth, 1))
    leaf = st.one_of(
        st.tuples(num, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), num).map(" ".join),
        st.tuples(text, st.sampled_from(["==", "!="]), text).map(" ".join),
        st.tuples(text, st.booleans(), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} {'not in' if t[1] else 'in'} ({', '.join(repr(w) for w in t[2])})"
        ),
        st.tuples(num, st.booleans(), st.lists(st.integers(0, 30), min_size=1, max_size=4)).map(
            lambda t: f"{t[0]} {'not in' if t[1] else 'in'} ({', '.join(map(str, t[2]))})"
        ),
        st.tuples(num, st.booleans(), num, num).map(
            lambda t: f"{t[0]} {'not between' if t[1] else 'between'} {t[2]} and {t[3]}"
        ),
        st.tuples(st.one_of(num, text), st.booleans()).map(lambda t: f"({t[0]}) is {'not ' if t[1] else ''}null"),
        st.tuples(st.sampled_from(["starts_with", "ends_with", "contains"]), text, text).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        st.sampled_from(["account_new_device", "true", "false"]),
    )
    if depth == 0:
        return leaf
    sub = conditions(depth - 1)
    return st.one_of(
        leaf,
        sub.map(lambda x: f"not ({x})"),
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]}) == ({t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        sub.map(lambda x: f"(({x}) is null)"),
    )


optional_number = st.one_of(st.none(), st.integers(-5, 40).map(float), st.sampled_from([0.0, 0.5, -2.5]))


@st.composite
def rows(draw: st.DrawFn) -> FeatureVector:
    lat = draw(st.one_of(st.none(), st.sampled_from([0.0, 12.5, -33.9])))
    return vector(
        draw(st.integers(0, 86_400 * 3)),
        amount=draw(st.sampled_from(["1", "3", "2000", "999999"])),
        currency=draw(st.sampled_from(["EUR", "JPY", "NGN", "XXX"])),
        country=draw(st.sampled_from(["DE", "NG", "FR"])),
        card=draw(st.one_of(st.none(), st.sampled_from(["DE", "de", "c-1", "C-1"]))),
        device=draw(st.one_of(st.none(), st.sampled_from(["x.y", "de"]))),
        lat=lat,
        lon=None if lat is None else 1.0,
        features={
            "card_count_1h": draw(optional_number),
            "account_amount_zscore": draw(optional_number),
            "account_new_device": draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0]))),
        },
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions(2), min_size=1, max_size=4), st.lists(rows(), min_size=1, max_size=12))
def test_vectorised_evaluation_matches_the_reference(expressions: list[str], batch: list[FeatureVector]) -> None:
    matches = run(expressions, batch)
    for i, expression in enumerate(expressions):
        expected = [fires(expression, row) for row in batch]
        assert matches[i].tolist() == expected, expression


def test_channel_enum_values_compare_as_text() -> None:
    rows_ = [vector(0, channel=Channel.ATM), vector(1, channel=Channel.TRANSFER)]
    assert run(["channel == 'atm'", "channel in ('transfer', 'wallet')"], rows_).tolist() == [
        [True, False],
        [False, True],
    ]
