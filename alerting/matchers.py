"""Label matchers with Alertmanager semantics: `=`, `!=`, `=~`, `!~`.

Regular expressions are fully anchored and a missing label matches as the
empty string, exactly as Alertmanager does, so operators can reuse habits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.errors import MatcherError

Op = Literal["=", "!=", "=~", "!~"]
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Longest operators first so `=~` is not read as `=` followed by a value starting with `~`.
_TEXT_FORM = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(.*?))\s*$')


class Matcher(BaseModel):
    """One condition on one label; stored in silences as {"label", "op", "value"}."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=100)
    op: Op = "="
    value: str = Field("", max_length=1000)

    @field_validator("label")
    @classmethod
    def _label_name(cls, value: str) -> str:
        if not _LABEL.match(value):
            raise ValueError(f"{value!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {self.value!r}: {exc}") from None
        return self

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(f"(?:{self.value})")

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._pattern.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse `label=value`, `label!="v"`, `label=~"re"` or `label!~re`."""
    found = _TEXT_FORM.match(text)
    if found is None:
        raise MatcherError(f"cannot parse matcher {text!r}: expected label(=|!=|=~|!~)value")
    label, op, quoted, bare = found.groups()
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    try:
        return Matcher(label=label, op=op, value=value)
    except ValueError as exc:
        raise MatcherError(f"cannot parse matcher {text!r}: {exc}") from None


def coerce_matcher(raw: Any) -> Matcher:
    """A matcher from its text form, its dict form, or a `Matcher`."""
    if isinstance(raw, Matcher):
        return raw
    if isinstance(raw, str):
        return parse_matcher(raw)
    if isinstance(raw, Mapping):
        try:
            return Matcher.model_validate(dict(raw))
        except ValueError as exc:
            raise MatcherError(f"bad matcher {dict(raw)!r}: {exc}") from None
    raise MatcherError(f"bad matcher {raw!r}: expected a string or a mapping")


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(matcher.matches(labels) for matcher in matchers)
