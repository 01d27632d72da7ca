"""Counters that components report: one base for their ``as_dict``.

A component keeps its counters in a dataclass deriving from :class:`CounterSet`; its
fields are ints, or ``Counter``/dict/list fields for counts by reason and samples.
``as_dict`` is what stats lines, status messages and JSON reports print.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any


class CounterSet:
    """Mixin for dataclasses of counters."""

    def as_dict(self) -> dict[str, Any]:
        """Every field by name; mappings and lists are copied, so the result is a snapshot."""
        assert is_dataclass(self), "CounterSet is for dataclasses"
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, list):
                value = list(value)
            out[f.name] = value
        return out
