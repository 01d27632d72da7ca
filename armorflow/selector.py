"""Kubernetes label selectors: parsed once, matched by the agents and the operator alike.

A policy's ``target.selector`` reaches the operator as part of a VarmorPolicy, and the
agents as part of a targets message; both read it through :meth:`LabelSelector.parse`,
so the two can never disagree on what a selector means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

OPERATORS: Final = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


class SelectorError(ValueError):
    """A selector that does not follow Kubernetes' LabelSelector shape."""


@dataclass(frozen=True)
class LabelRequirement:
    """One ``matchExpressions`` item: ``key`` ``operator`` ``values``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """``matchLabels`` and ``matchExpressions``, ANDed; the empty selector matches all."""

    match_labels: dict[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelRequirement, ...] = ()

    @classmethod
    def parse(cls, raw: Any, where: str = "selector") -> tuple[LabelSelector, list[str]]:
        """The selector in ``raw`` and every problem found, each naming its place under
        ``where``; the selector keeps only the parts that were valid."""
        problems: list[str] = []
        if raw is None:
            return cls(), problems
        if not isinstance(raw, dict):
            return cls(), [f"{where} must be an object"]
        labels: dict[str, str] = {}
        labels_raw = raw.get("matchLabels") or {}
        if not isinstance(labels_raw, dict):
            problems.append(f"{where}.matchLabels must be a map of strings")
        else:
            for key, value in labels_raw.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    problems.append(f"{where}.matchLabels[{key}] must be a string")
                else:
                    labels[key] = value
        exprs: list[LabelRequirement] = []
        exprs_raw = raw.get("matchExpressions") or []
        if not isinstance(exprs_raw, list):
            problems.append(f"{where}.matchExpressions must be a list")
            exprs_raw = []
        for i, item in enumerate(exprs_raw):
            at = f"{where}.matchExpressions[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                problems.append(f"{at} needs a key")
                continue
            op, values = item.get("operator"), item.get("values") or []
            if op not in OPERATORS:
                problems.append(f"{at}.operator {op!r} is not one of {sorted(OPERATORS)}")
            elif not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                problems.append(f"{at}.values must be a list of strings")
            elif op in ("In", "NotIn") and not values:
                problems.append(f"{at}: operator {op} needs values")
            elif op in ("Exists", "DoesNotExist") and values:
                problems.append(f"{at}: operator {op} takes no values")
            else:
                exprs.append(LabelRequirement(item["key"], op, tuple(values)))
        return cls(labels, tuple(exprs)), problems

    @classmethod
    def from_json(cls, raw: Any, where: str = "selector") -> LabelSelector:
        """The selector in ``raw``; :class:`SelectorError` names the first problem."""
        selector, problems = cls.parse(raw, where)
        if problems:
            raise SelectorError(problems[0])
        return selector

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, "values": list(r.values)}
                if r.values else {"key": r.key, "operator": r.operator}
                for r in self.match_expressions
            ]
        return out

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes' semantics: every label equal, every requirement met."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True
