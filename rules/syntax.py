"""The rule language's surface: tokenizer, AST (dataclasses) and recursive-descent parser.

Nothing here evaluates anything: the parser only builds a tree, which the type
checker then validates against the field catalogue. Rules are never executed
as Python (no eval/exec anywhere in the package).

Grammar, loosest binding first::

    rule       := or_expr EOF
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum [ cmp_op sum
                      | "is" ["not"] "null"
                      | ["not"] "in" "(" literal ("," literal)* [","] ")"
                      | ["not"] "between" sum "and" sum ]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null"
                | NAME | NAME "(" [or_expr ("," or_expr)*] ")" | "(" or_expr ")"
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from rules.errors import RuleError, RuleSyntaxError

MAX_EXPRESSION_CHARS: Final = 20_000
MAX_NESTING: Final = 64  # deeper is never a readable rule, and keeps the parser's stack bounded
MAX_DEPTH: Final = 100  # tree depth (long operator chains too): keeps checker and compiler stacks bounded
KEYWORDS: Final = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})
_COMPARISONS: Final = {"==": "==", "=": "==", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TWO_CHAR_OPS: Final = frozenset({"==", "!=", "<>", "<=", ">="})
_ONE_CHAR_OPS: Final = frozenset("()+-*/%<>=,")
_SNIPPET_WIDTH: Final = 100
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


# --- positions and errors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """Character offsets [start, end) of a node in the source."""

    start: int
    end: int


def locate(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


def make_error(source: str, span: Span, message: str) -> RuleError:
    """A RuleError with line, column and a caret snippet for `span`."""
    line, column = locate(source, span.start)
    line_start = source.rfind("\n", 0, span.start) + 1
    line_end = source.find("\n", span.start)
    text = source[line_start : len(source) if line_end == -1 else line_end]
    width = max(1, min(span.end, line_start + len(text)) - span.start)
    shown, indent = text, column - 1
    if len(text) > _SNIPPET_WIDTH:
        # Long lines: show a window around the problem so the caret stays on screen.
        begin = max(0, column - 1 - _SNIPPET_WIDTH // 3)
        end = begin + _SNIPPET_WIDTH
        shown = ("..." if begin else "") + text[begin:end] + ("..." if end < len(text) else "")
        indent = column - 1 - begin + (3 if begin else 0)
        width = min(width, _SNIPPET_WIDTH - (column - 1 - begin))
    caret = " " * indent + "^" * width
    return RuleError(message=message, line=line, column=column, snippet=f"{shown}\n{caret}", length=width)


# --- tokens ---------------------------------------------------------------------------------


class TokenKind(StrEnum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    KEYWORD = "keyword"
    OP = "operator"
    END = "end of rule"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # keywords lower-cased; operators normalised (= -> ==, <> -> !=)
    span: Span
    value: float | str | None = None

    def describe(self) -> str:
        if self.kind is TokenKind.END:
            return "the end of the rule"
        if self.kind is TokenKind.STRING:
            return f"the text {self.text}"
        return f"'{self.text}'"


def tokenize(source: str) -> list[Token]:
    """Split a rule into tokens; raises RuleSyntaxError at the first character it cannot read."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
        elif char == "#":  # comment to the end of the line
            newline = source.find("\n", i)
            i = n if newline == -1 else newline
        elif _digit(char) or (char == "." and i + 1 < n and _digit(source[i + 1])):
            i = _number(source, i, tokens)
        elif char in "'\"":
            i = _string(source, i, tokens)
        elif char.isalpha() or char == "_":
            start = i
            while i < n and (source[i].isalnum() or source[i] == "_"):
                i += 1
            word = source[start:i]
            if word.lower() in KEYWORDS:
                tokens.append(Token(TokenKind.KEYWORD, word.lower(), Span(start, i)))
            else:
                tokens.append(Token(TokenKind.NAME, word, Span(start, i)))
        elif source[i : i + 2] in _TWO_CHAR_OPS:
            text = _COMPARISONS.get(source[i : i + 2], source[i : i + 2])
            tokens.append(Token(TokenKind.OP, text, Span(i, i + 2)))
            i += 2
        elif char in _ONE_CHAR_OPS:
            tokens.append(Token(TokenKind.OP, _COMPARISONS.get(char, char), Span(i, i + 1)))
            i += 1
        else:
            hint = " (strings need matching quotes)" if char in "`‘’“”" else ""
            _fail(source, Span(i, i + 1), f"unexpected character {char!r}{hint}")
    tokens.append(Token(TokenKind.END, "", Span(n, n)))
    return tokens


def _digit(char: str) -> bool:
    return "0" <= char <= "9"  # ASCII only: str.isdigit() accepts '²', which float() refuses


def _number(source: str, i: int, tokens: list[Token]) -> int:
    start, n = i, len(source)
    while i < n and (_digit(source[i]) or source[i] == "_"):
        i += 1
    if i < n and source[i] == "." and i + 1 < n and _digit(source[i + 1]):
        i += 1
        while i < n and (_digit(source[i]) or source[i] == "_"):
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and _digit(source[j]):
            i = j
            while i < n and _digit(source[i]):
                i += 1
    text = source[start:i]
    if i < n and (source[i].isalpha() or source[i] == "_"):
        while i < n and (source[i].isalnum() or source[i] == "_"):
            i += 1
        _fail(source, Span(start, i), f"{source[start:i]!r} is not a number or a field name")
    if text.endswith("_") or "__" in text or "_." in text:
        _fail(source, Span(start, i), f"misplaced '_' in number {text!r} (write 1_000, not 1__000 or 1_)")
    tokens.append(Token(TokenKind.NUMBER, text, Span(start, i), float(text.replace("_", ""))))
    return i


def _string(source: str, i: int, tokens: list[Token]) -> int:
    quote, start, n = source[i], i, len(source)
    i += 1
    parts: list[str] = []
    while i < n and source[i] != quote:
        if source[i] == "\\":
            if i + 1 >= n or source[i + 1] not in _ESCAPES:
                _fail(source, Span(i, i + 2), "unknown escape; use \\\\, \\', \\\", \\n or \\t")
            parts.append(_ESCAPES[source[i + 1]])
            i += 2
        else:
            parts.append(source[i])
            i += 1
    if i >= n:
        _fail(source, Span(start, n), f"text starting here is never closed with {quote}")
    tokens.append(Token(TokenKind.STRING, source[start : i + 1], Span(start, i + 1), "".join(parts)))
    return i + 1


def _fail(source: str, span: Span, message: str) -> None:
    raise RuleSyntaxError.of([make_error(source, span, message)])


# --- AST ------------------------------------------------------------------------------------

ArithOp = Literal["+", "-", "*", "/", "%"]
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class NumberLit:
    value: float
    span: Span


@dataclass(frozen=True, slots=True)
class StringLit:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class NullLit:
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Arith:
    op: ArithOp
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True, slots=True)
class Logical:
    op: Literal["and", "or"]
    operands: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Between:
    operand: Expr
    low: Expr
    high: Expr
    negated: bool
    span: Span


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Expr
    negated: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    name_span: Span
    args: tuple[Expr, ...]
    span: Span


Expr = (
    NumberLit
    | StringLit
    | BoolLit
    | NullLit
    | Name
    | Negate
    | Not
    | Arith
    | Compare
    | Logical
    | InList
    | Between
    | IsNull
    | Call
)


# --- parser ---------------------------------------------------------------------------------


def parse(source: str) -> Expr:
    """Parse a rule expression into an AST; raises RuleSyntaxError with a position."""
    if len(source) > MAX_EXPRESSION_CHARS:
        _fail(source, Span(MAX_EXPRESSION_CHARS, len(source)), f"rule longer than {MAX_EXPRESSION_CHARS} characters")
    parser = _Parser(source, tokenize(source))
    if parser.peek.kind is TokenKind.END:
        _fail(source, Span(0, len(source)), "the rule is empty; write a condition such as amount > 1000")
    expr = parser.or_expr()
    token = parser.peek
    if token.kind is not TokenKind.END:
        hint = ""
        if token.kind in (TokenKind.NAME, TokenKind.NUMBER, TokenKind.STRING):
            hint = "; did you forget 'and', 'or' or an operator?"
        elif token.text == ")":
            hint = "; this ')' has no matching '('"
        parser.fail(token.span, f"unexpected {token.describe()}{hint}")
    _check_depth(source, expr)
    return expr


def children(expr: Expr) -> tuple[Expr, ...]:
    """Direct sub-expressions of a node."""
    match expr:
        case Negate(operand=operand) | Not(operand=operand) | IsNull(operand=operand):
            return (operand,)
        case Arith(left=left, right=right) | Compare(left=left, right=right):
            return (left, right)
        case Logical(operands=operands):
            return operands
        case InList(operand=operand, items=items):
            return (operand, *items)
        case Between(operand=operand, low=low, high=high):
            return (operand, low, high)
        case Call(args=args):
            return args
    return ()


def _check_depth(source: str, root: Expr) -> None:
    # Iterative on purpose: a left-deep chain like 1+1+1+... must not overflow the stack here.
    stack = [(root, 1)]
    while stack:
        expr, depth = stack.pop()
        if depth > MAX_DEPTH:
            _fail(source, expr.span, f"the rule is too deeply nested (more than {MAX_DEPTH} levels); split it up")
        stack.extend((child, depth + 1) for child in children(expr))


class _Parser:
    def __init__(self, source: str, tokens: list[Token]) -> None:
        self._source = source
        self._tokens = tokens
        self._pos = 0
        self._depth = 0

    @property
    def peek(self) -> Token:
        return self._tokens[self._pos]

    def _next(self) -> Token:
        token = self._tokens[self._pos]
        if token.kind is not TokenKind.END:
            self._pos += 1
        return token

    def _at(self, kind: TokenKind, text: str) -> bool:
        token = self._tokens[self._pos]
        return token.kind is kind and token.text == text

    def _accept(self, kind: TokenKind, text: str) -> Token | None:
        return self._next() if self._at(kind, text) else None

    def _expect(self, kind: TokenKind, text: str, context: str) -> Token:
        if not self._at(kind, text):
            token = self.peek
            self.fail(token.span, f"expected '{text}' {context} but found {token.describe()}")
        return self._next()

    def fail(self, span: Span, message: str) -> None:
        _fail(self._source, span, message)

    def _enter(self, span: Span) -> None:
        self._depth += 1
        if self._depth > MAX_NESTING:
            self.fail(span, f"the rule nests deeper than {MAX_NESTING} levels; split it up")

    def or_expr(self) -> Expr:
        operands = [self.and_expr()]
        while self._accept(TokenKind.KEYWORD, "or"):
            operands.append(self.and_expr())
        if len(operands) == 1:
            return operands[0]
        return Logical("or", tuple(operands), Span(operands[0].span.start, operands[-1].span.end))

    def and_expr(self) -> Expr:
        operands = [self.not_expr()]
        while self._accept(TokenKind.KEYWORD, "and"):
            operands.append(self.not_expr())
        if len(operands) == 1:
            return operands[0]
        return Logical("and", tuple(operands), Span(operands[0].span.start, operands[-1].span.end))

    def not_expr(self) -> Expr:
        token = self._accept(TokenKind.KEYWORD, "not")
        if token is None:
            return self.comparison()
        self._enter(token.span)
        operand = self.not_expr()
        self._depth -= 1
        return Not(operand, Span(token.span.start, operand.span.end))

    def comparison(self) -> Expr:
        left = self.sum()
        token = self.peek
        if token.kind is TokenKind.OP and token.text in _COMPARISONS.values():
            self._next()
            right = self.sum()
            after = self.peek
            if after.kind is TokenKind.OP and after.text in _COMPARISONS.values():
                self.fail(after.span, "comparisons cannot be chained; join them with 'and'")
            op: CompareOp = token.text  # type: ignore[assignment]  # checked against _COMPARISONS
            return Compare(op, left, right, Span(left.span.start, right.span.end), token.span)
        if token.kind is not TokenKind.KEYWORD:
            return left
        if token.text == "is":
            self._next()
            negated = self._accept(TokenKind.KEYWORD, "not") is not None
            end = self._expect(TokenKind.KEYWORD, "null", "after 'is' (write 'is null' or 'is not null')")
            return IsNull(left, negated, Span(left.span.start, end.span.end))
        negated = False
        if token.text == "not":
            following = self._tokens[self._pos + 1]
            if not (following.kind is TokenKind.KEYWORD and following.text in ("in", "between")):
                return left  # a stray 'not' is reported by the caller as an unexpected token
            self._next()
            negated = True
        if self._accept(TokenKind.KEYWORD, "in"):
            return self._in_list(left, negated)
        if self._accept(TokenKind.KEYWORD, "between"):
            low = self.sum()
            self._expect(TokenKind.KEYWORD, "and", "between the bounds of 'between' (between 10 and 20)")
            high = self.sum()
            return Between(left, low, high, negated, Span(left.span.start, high.span.end))
        return left

    def _in_list(self, left: Expr, negated: bool) -> Expr:
        self._expect(TokenKind.OP, "(", 'after \'in\' (write: country in ("NG", "RU"))')
        items: list[Expr] = []
        while True:
            if self._at(TokenKind.OP, ")") and items:
                break
            items.append(self.sum())
            if not self._accept(TokenKind.OP, ","):
                break
        end = self._expect(TokenKind.OP, ")", "to close the 'in' list")
        return InList(left, tuple(items), negated, Span(left.span.start, end.span.end))

    def sum(self) -> Expr:
        left = self.product()
        while self.peek.kind is TokenKind.OP and self.peek.text in ("+", "-"):
            token = self._next()
            right = self.product()
            op: ArithOp = "+" if token.text == "+" else "-"
            left = Arith(op, left, right, Span(left.span.start, right.span.end), token.span)
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.peek.kind is TokenKind.OP and self.peek.text in ("*", "/", "%"):
            token = self._next()
            right = self.unary()
            op: ArithOp = "*" if token.text == "*" else "/" if token.text == "/" else "%"
            left = Arith(op, left, right, Span(left.span.start, right.span.end), token.span)
        return left

    def unary(self) -> Expr:
        token = self._accept(TokenKind.OP, "-")
        if token is None:
            return self.primary()
        self._enter(token.span)
        operand = self.unary()
        self._depth -= 1
        span = Span(token.span.start, operand.span.end)
        if isinstance(operand, NumberLit):
            return NumberLit(-operand.value, span)
        return Negate(operand, span)

    def primary(self) -> Expr:
        token = self._next()
        if token.kind is TokenKind.NUMBER:
            assert isinstance(token.value, float)
            return NumberLit(token.value, token.span)
        if token.kind is TokenKind.STRING:
            assert isinstance(token.value, str)
            return StringLit(token.value, token.span)
        if token.kind is TokenKind.KEYWORD and token.text in ("true", "false"):
            return BoolLit(token.text == "true", token.span)
        if token.kind is TokenKind.KEYWORD and token.text == "null":
            return NullLit(token.span)
        if token.kind is TokenKind.NAME:
            if self._accept(TokenKind.OP, "("):
                return self._call(token)
            return Name(token.text, token.span)
        if token.kind is TokenKind.OP and token.text == "(":
            self._enter(token.span)
            inner = self.or_expr()
            line, column = locate(self._source, token.span.start)
            self._expect(TokenKind.OP, ")", f"to close the '(' at line {line}, column {column}")
            self._depth -= 1
            return inner
        what = token.describe()
        if token.kind is TokenKind.KEYWORD:
            self.fail(token.span, f"expected a value, a field or '(' but found the keyword {what}")
        self.fail(token.span, f"expected a value, a field or '(' but found {what}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, name: Token) -> Expr:
        self._enter(name.span)
        args: list[Expr] = []
        if not self._at(TokenKind.OP, ")"):
            args.append(self.or_expr())
            while self._accept(TokenKind.OP, ","):
                args.append(self.or_expr())
        end = self._expect(TokenKind.OP, ")", f"to close the call to {name.text}()")
        self._depth -= 1
        return Call(name.text, name.span, tuple(args), Span(name.span.start, end.span.end))
