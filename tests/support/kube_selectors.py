"""Label and field selectors as the API server parses them for list and watch.

Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``
and ``!k``, comma-separated (all must hold). Field selectors: ``metadata.name`` and
``metadata.namespace`` with ``=``, ``==`` or ``!=`` (the two every resource supports).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")
FIELDS = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    """A selector the API server would refuse (400 BadRequest)."""


def _split_terms(text: str) -> list[str]:
    """Split on commas outside ``(...)`` value sets."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Matcher:
    if found := _SET_TERM.match(term):
        key, values = found["key"], {v.strip() for v in found["values"].split(",") if v.strip()}
        if found["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if found := _EQ_TERM.match(term):
        key, value = found["key"], found["value"]
        if found["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if found := _EXISTS_TERM.match(term):
        key = found["key"]
        if found["neg"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {term.strip()!r}")


def label_matcher(selector: str | None) -> Matcher:
    """A predicate over an object's ``metadata.labels``; empty selects everything."""
    terms = [_label_term(t) for t in _split_terms(selector or "")]
    return lambda labels: all(term(labels) for term in terms)


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a whole object for the ``metadata.name``/``namespace`` fields."""
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector or ""):
        found = _EQ_TERM.match(term)
        if not found or found["key"] not in FIELDS:
            raise SelectorError(f"field label not supported: {term.strip()!r}")
        checks.append((found["key"].split(".")[1], found["op"] != "!=", found["value"]))

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return all((str(meta.get(k) or "") == v) == equal for k, equal, v in checks)

    return matches


def object_matcher(labels: str | None, fields: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Both selectors of a list/watch request as one predicate over objects."""
    by_label, by_field = label_matcher(labels), field_matcher(fields)
    return lambda obj: by_label((obj.get("metadata") or {}).get("labels") or {}) and by_field(obj)
