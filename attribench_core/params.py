"""Declared parameters and options: defaults, types, and parsing of `key=value` text from the CLI.

Kept free of torch so that `attribench list` stays fast.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attribench_core.errors import ParameterError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# (field of Param, its words, the test a value passes): the bounds a number may declare
_BOUNDS = (
    ("minimum", "at least", operator.ge),
    ("greater_than", "greater than", operator.gt),
    ("maximum", "at most", operator.le),
    ("less_than", "less than", operator.lt),
)


@dataclass(frozen=True)
class Param:
    """One tunable parameter of an explainer, or one option of a metric or dataset.

    `type` is one of `int`, `float`, `bool`, `str`; `choices` restricts the accepted values; `minimum` and
    `maximum` (inclusive) and `greater_than` and `less_than` (exclusive: a learning rate
    `greater_than=0`) the range of a number, so that a value out of range fails when the command is read
    (exit 2), not when the run reaches it.
    """

    name: str
    default: Any
    help: str = ""
    type: type = str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    greater_than: float | None = None
    less_than: float | None = None

    def __post_init__(self) -> None:
        if self.default is not None:
            self.check(self.default)

    def parse(self, text: str) -> Any:
        """Turn CLI text into a value of this parameter's type, or raise ParameterError."""
        try:
            if self.type is bool:
                low = text.strip().lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = low in _TRUE
            else:
                value = self.type(text)
        except ValueError:
            raise ParameterError(
                f"Parameter '{self.name}' expects {self.type.__name__}, got '{text}'."
            ) from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Validate a Python value (from the API or after parsing)."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        wrong_bool = isinstance(value, bool) and self.type is not bool
        if value is not None and (wrong_bool or not isinstance(value, self.type)):
            raise ParameterError(f"Parameter '{self.name}' expects {self.type.__name__}, got {value!r}.")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ParameterError(f"Parameter '{self.name}' must be one of {allowed}; got {value!r}.")
        if value is not None and not self.in_range(value):
            raise ParameterError(f"Parameter '{self.name}' must be {self.range_text()}; got {value!r}.")
        return value

    def in_range(self, value: float) -> bool:
        """Whether `value` passes every declared bound (NaN passes none)."""
        return all(
            passes(value, getattr(self, field))
            for field, _, passes in _BOUNDS
            if getattr(self, field) is not None
        )

    def range_text(self) -> str:
        """The declared bounds in words ("greater than 0 and less than 1"); empty when there are none."""
        return " and ".join(
            f"{words} {getattr(self, field):g}"
            for field, words, _ in _BOUNDS
            if getattr(self, field) is not None
        )


def resolve_params(
    declared: Sequence[Param], given: Mapping[str, Any], *, owner: str, noun: str = "parameter"
) -> dict[str, Any]:
    """Merge given values over declared defaults; an unknown name is an error with suggestions."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(by_name), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        known = ", ".join(by_name) or "none"
        raise ParameterError(f"Unknown {noun} '{unknown[0]}' for {owner}.{hint} Known {noun}s: {known}.")
    values = {p.name: p.default for p in declared}
    for name, value in given.items():
        param = by_name[name]
        values[name] = (
            param.parse(value) if isinstance(value, str) and param.type is not str else param.check(value)
        )
    return values


def parse_assignments(text: str, *, owner: str) -> dict[str, str]:
    """Parse `k=v,k2=v2` into a dict of raw strings; malformed text raises ParameterError."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ParameterError(
                f"Malformed parameter '{part}' for {owner}: write name=value, e.g. ig:steps=32."
            )
        key = key.strip()
        if key in pairs:
            raise ParameterError(
                f"Parameter '{key}' given twice for {owner} ({pairs[key]} and {value.strip()}): give it once."
            )
        pairs[key] = value.strip()
    return pairs


def describe(params: Iterable[Param]) -> str:
    """One-line summary `steps=64, baseline=zero` for listings."""
    return ", ".join(f"{p.name}={p.default}" for p in params)
