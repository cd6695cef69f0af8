"""PromQL text built from request data, safely.

Label names and values arrive in HTTP requests (Argo templates them from Rollout args), so every
piece of PromQL built from them goes through this module: names are checked against the label
name grammar, values are written as escaped string literals, and regex alternatives are
regex-escaped first. A value can then only ever be matched literally, never parsed as PromQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's regexp.QuoteMeta set: Prometheus compiles matchers with Go's regexp package.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def label_name(name: str) -> str:
    """Returns ``name`` if it is a usable label name, else raises ``ValueError`` naming it.

    Names starting with ``__`` are reserved by Prometheus (``__name__`` would let a request
    choose the metric itself), so they are refused too.
    """
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"label {name!r}: not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    if name.startswith("__"):
        raise ValueError(f"label {name!r}: names starting with '__' are reserved")
    return name


def string_literal(value: str, label: str) -> str:
    """``value`` as a double-quoted PromQL string literal.

    Backslash, double quote and newline are escaped; any other control character (NUL, tab,
    carriage return, …) or lone surrogate is refused with a ``ValueError`` naming ``label``:
    no real label value contains one, and refusing is simpler to trust than escaping them all.
    """
    if not isinstance(value, str):
        raise ValueError(f"label {label!r}: value must be a string")
    for char in value:
        if char != "\n" and unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"label {label!r}: value contains control character "
                             f"U+{ord(char):04X}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def regex_escape(value: str) -> str:
    """``value`` as a regex matching exactly itself (Go ``regexp.QuoteMeta``)."""
    return "".join("\\" + char if char in _REGEX_META else char for char in value)


def any_of(label: str, values: Iterable[str]) -> str:
    """A matcher ``label=~"v1|v2"`` selecting series whose ``label`` is exactly one of ``values``.

    Prometheus anchors matcher regexes at both ends, and every value is regex-escaped, so
    ``".*"`` matches only the two characters ``.*``.
    """
    label_name(label)
    pattern = "|".join(regex_escape(v) for v in sorted(set(values)))
    return f"{label}=~{string_literal(pattern, label)}"


class Selector(Mapping[str, str]):
    """An immutable set of exact label matchers, rendered as ``a="x",b="y"`` (sorted by label).

    Construction validates every name and value, so a ``Selector`` that exists is safe to paste
    between braces. Empty values are refused: in PromQL ``a=""`` also matches series *without*
    ``a``, and an empty value usually means a template argument that was never filled in.
    """

    __slots__ = ("_labels",)

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        checked: dict[str, str] = {}
        for name, value in sorted((labels or {}).items()):
            label_name(name)
            string_literal(value, name)
            if value == "":
                raise ValueError(f"label {name!r}: empty value (it would also match series "
                                 f"without the label)")
            checked[name] = value
        self._labels = checked

    def __getitem__(self, name: str) -> str:
        return self._labels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __hash__(self) -> int:
        return hash(frozenset(self._labels.items()))

    def __repr__(self) -> str:
        return f"Selector({self._labels!r})"

    def render(self) -> str:
        """The matchers, comma-separated, without braces."""
        return ",".join(f"{k}={string_literal(v, k)}" for k, v in self._labels.items())

    __str__ = render
