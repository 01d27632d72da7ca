"""The documentation's tables say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from armorflow.events import COMMON_FIELDS, KIND_FIELDS, OPTIONAL_FIELDS
from armorflow.topics import topic_specs

DOCS = Path(__file__).resolve().parents[1] / "docs"
TYPE_NAMES = {str: "str", int: "int", bool: "bool"}


def _rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading``."""
    section = text.split(heading, 1)[1]
    rows: list[list[str]] = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif started:
            break
    return rows[1:]  # drop the header


def _code(cell: str) -> str:
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"expected a `code` cell, got {cell!r}"
    return m.group(1)


def test_common_fields_table_matches_schema() -> None:
    rows = _rows((DOCS / "events.md").read_text(), "## Common fields")
    documented = {_code(r[0]): r[1] for r in rows}
    assert documented == {k: TYPE_NAMES[t] for k, t in COMMON_FIELDS.items()}


def test_kind_fields_table_matches_schema() -> None:
    rows = _rows((DOCS / "events.md").read_text(), "## Fields by kind")
    documented: dict[tuple[str, str], str] = {(_code(r[0]), _code(r[1])): r[2] for r in rows}
    expected = {
        (k, f): TYPE_NAMES[t] for k, fields in KIND_FIELDS.items() for f, t in fields.items()
    }
    expected |= {
        (k, f): f"{TYPE_NAMES[t]} (optional)"
        for k, fields in OPTIONAL_FIELDS.items()
        for f, t in fields.items()
    }
    assert documented == expected


def test_topics_table_matches_layout() -> None:
    rows = _rows((DOCS / "topics.md").read_text(), "# Kafka topics")
    documented = {_code(r[0]): (int(r[1]), r[4] == "yes") for r in rows}
    assert documented == {s.name: (s.partitions, s.compacted) for s in topic_specs()}
