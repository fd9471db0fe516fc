"""Errors of the rules package: one base, specific subclasses, positions for language errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import VigilError


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a rule expression, located for the analyst who wrote it.

    `line` and `column` are 1-based; `snippet` is the offending line with a caret
    line underneath, ready to print in a terminal or a `<pre>` block.
    """

    message: str
    line: int
    column: int
    snippet: str
    length: int = 1

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}\n{self.snippet}"


class RulesError(VigilError):
    """Root of every error the rules package raises on purpose."""


class RuleSyntaxError(RulesError):
    """An expression that does not parse or does not type-check; carries every problem found."""

    def __init__(self, message: str, line: int, column: int, snippet: str, *, errors: Sequence[RuleError] = ()) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.snippet = snippet
        self.errors: tuple[RuleError, ...] = tuple(errors) or (RuleError(message, line, column, snippet),)

    @classmethod
    def of(cls, errors: Sequence[RuleError]) -> RuleSyntaxError:
        first = errors[0]
        return cls(first.message, first.line, first.column, first.snippet, errors=errors)


class CatalogueError(RulesError):
    """The field catalogue itself is inconsistent (a programming or configuration error)."""


class RuleNotFoundError(RulesError):
    """No rule (or rule version) with that id."""


class RuleExistsError(RulesError):
    """A rule with that id already exists."""


class RuleVersionConflictError(RulesError):
    """The rule changed since the caller read it (optimistic concurrency)."""


class InvalidRuleError(RulesError):
    """A rule's metadata (id, name, severity...) is invalid; expression problems use RuleSyntaxError."""


class PackError(RulesError):
    """A rule pack file cannot be read or is malformed."""
