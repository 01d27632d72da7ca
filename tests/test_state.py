"""A model stored as bucketed table rows comes back whole, and batches rewrite only the
buckets they touched."""

from __future__ import annotations

from armorflow.model import BehaviourModel
from armorflow.pipeline.state import BUCKETS, ModelRows
from support.pipeline import workload


def test_rows_round_trip_a_model() -> None:
    model = BehaviourModel()
    rows = ModelRows()
    table: dict[bytes, bytes] = {}
    events = workload("p", 1_000)
    for chunk in (events[:40], events[40:]):  # two batches: the second rewrites some rows
        for e in chunk:
            model.add(e)
        table.update(rows.changed_rows("p", model, model.drain_dirty()))
    assert 1 < len(table) <= BUCKETS
    back = ModelRows().load(table.items())["p"]
    assert back.canonical_json() == model.canonical_json()


def test_a_batch_that_adds_nothing_writes_nothing() -> None:
    model = BehaviourModel()
    rows = ModelRows()
    events = workload("p", 1_000)
    for e in events:
        model.add(e)
    assert list(rows.changed_rows("p", model, model.drain_dirty()))
    for e in events:  # replayed: no change, no row
        model.add(e)
    assert list(rows.changed_rows("p", model, model.drain_dirty())) == []


def test_entries_round_trip() -> None:
    model = BehaviourModel()
    for e in workload("p", 7):
        model.add(e)
    back = BehaviourModel()
    for entry, value in model.entries():
        back.apply_entry(entry, value)
    assert back.canonical_json() == model.canonical_json()
