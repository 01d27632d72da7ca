"""Windows and batches, without a broker: the logic the Faust worker wraps."""

from __future__ import annotations

import orjson

from armorflow.aaglob import escape_literal
from armorflow.control import make_control
from armorflow.events import make_event
from armorflow.pipeline.ingest import BatchResult, Ingestor
from armorflow.pipeline.window import NS, WindowState

T0 = 1_700_000_000 * NS


def ev(profile: str, ts: int, name: str) -> bytes:
    return orjson.dumps(make_event("syscall", ts=ts, profile=profile, name=name))


def start(profile: str, duration_s: float, ts: int = T0) -> bytes:
    return make_control("start", profile, duration_s=duration_s, start_ts=ts, ts=ts).encode()


def test_events_inside_the_window_are_modeled_others_counted() -> None:
    ing = Ingestor(escape_literal)
    ing.apply_batch([start("p", 10), ev("p", T0 + NS, "in"), ev("p", T0 + 11 * NS, "after"),
                     ev("p", T0 - 1, "before")], now_ns=T0)
    assert ing.models["p"].syscalls == {"in"}
    assert ing.windows["p"].dropped_outside == 2
    assert ing.stats.outside == 2


def test_events_before_their_start_message_wait_for_it() -> None:
    clock = [0.0]
    ing = Ingestor(escape_literal, pending_hold_s=5, clock=lambda: clock[0])
    ing.apply_batch([ev("p", T0 + NS, "early")], now_ns=T0)
    assert "p" not in ing.models
    ing.apply_batch([start("p", 10)], now_ns=T0)
    assert ing.models["p"].syscalls == {"early"}
    # A profile whose window never comes: counted and dropped after the hold.
    ing.apply_batch([ev("q", T0, "orphan")], now_ns=T0)
    clock[0] = 6.0
    assert ing.expire_pending() == 1
    assert ing.stats.no_window == 1


def test_update_shortens_and_stop_ends_the_window() -> None:
    ing = Ingestor(escape_literal)
    ing.apply_batch([start("p", 1800)], now_ns=T0)
    w = ing.windows["p"]
    assert not w.due(T0 + 120 * NS, grace_s=30)
    # Patched to one minute after two minutes of modeling: the window ends now, keeping
    # the two minutes (as in the seed's step 5), and closes once the grace period passed.
    ing.apply_batch(
        [make_control("update", "p", duration_s=60, ts=T0 + 120 * NS).encode()],
        now_ns=T0 + 120 * NS,
    )
    assert w.end_ts == T0 + 120 * NS
    assert not w.due(T0 + 149 * NS, grace_s=30)
    assert w.due(T0 + 150 * NS, grace_s=30)
    ing.apply_batch([ev("p", T0 + 90 * NS, "kept"), ev("p", T0 + 121 * NS, "after")])
    assert ing.models["p"].syscalls == {"kept"}
    # Shortening to a duration still ahead simply moves the end.
    ing.apply_batch([start("q", 1800)], now_ns=T0)
    ing.apply_batch(
        [make_control("update", "q", duration_s=600, ts=T0 + 120 * NS).encode()],
        now_ns=T0 + 120 * NS,
    )
    assert ing.windows["q"].end_ts == T0 + 600 * NS
    ing.apply_batch([start("s", 1800)], now_ns=T0)
    ing.apply_batch([make_control("stop", "s", ts=T0 + 5 * NS).encode()], now_ns=T0 + 5 * NS)
    assert ing.windows["s"].end_ts == T0 + 5 * NS


def test_closed_window_drops_late_events_and_restart_reopens() -> None:
    ing = Ingestor(escape_literal)
    ing.apply_batch([start("p", 10), ev("p", T0 + 1, "a")], now_ns=T0)
    ing.mark_closed("p", T0 + 60 * NS)
    ing.apply_batch([ev("p", T0 + 2, "late")], now_ns=T0 + 61 * NS)
    assert ing.models["p"].syscalls == {"a"}
    assert ing.stats.late == 1
    ing.apply_batch([start("p", 10, ts=T0 + 100 * NS), ev("p", T0 + 101 * NS, "b")])
    assert ing.windows["p"].state is WindowState.OPEN
    assert ing.models["p"].syscalls == {"b"}


def test_bad_messages_are_counted_and_the_batch_goes_on() -> None:
    ing = Ingestor(escape_literal)
    result: BatchResult = ing.apply_batch(
        [start("p", 10), b"{not json", b'{"type": "start"}', orjson.dumps([
            make_event("syscall", ts=T0 + 1, profile="p", name="ok"),
            {"v": 1, "kind": "syscall"},
        ])],
        now_ns=T0,
    )
    assert ing.models["p"].syscalls == {"ok"}
    assert ing.stats.rejected == 3
    assert "p" in result.changed_models


def test_array_messages_and_single_events_are_both_accepted() -> None:
    ing = Ingestor(escape_literal)
    batch = orjson.dumps([make_event("syscall", ts=T0 + i, profile="p", name=f"s{i}")
                          for i in range(3)])
    ing.apply_batch([start("p", 10), batch, ev("p", T0 + 5, "single")], now_ns=T0)
    assert ing.models["p"].syscalls == {"s0", "s1", "s2", "single"}
