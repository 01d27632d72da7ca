"""The synchronous core of a pipeline worker: fold a batch of Kafka message values into
per-profile windows and models. No Faust here, so it is fast, testable, and shared with
the benchmark; :mod:`armorflow.pipeline.worker` wraps it in Faust agents and tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

import orjson

from armorflow.control import Control, ControlError, parse_control
from armorflow.counters import CounterSet
from armorflow.events import (
    BEHAVIOUR_FIELDS,
    STRUCT_BEHAVIOUR,
    STRUCT_KINDS,
    Event,
    EventError,
    Rejects,
    behaviour_of,
    decode_array_fast,
    struct_to_event,
    validate,
)
from armorflow.model import BehaviourModel, PathMapper
from armorflow.pipeline.window import NS, Window, WindowState, apply_control

log = logging.getLogger(__name__)

_STRUCT_TS: Callable[[Any], int] = attrgetter("ts")
_EVENT_TS: Callable[[Any], int] = itemgetter("ts")
_event_behaviour: Callable[[Any], Any] = behaviour_of


def _group_structs(structs: list[Any], groups: dict[tuple[str, str], list[Any]]) -> None:
    """Add a message's structs to the groups by (profile, kind). An agent's message holds
    one profile and one kind, which two C-speed set builds confirm; others are split."""
    if not structs:
        return
    profiles = set(map(_PROFILE, structs))
    types = set(map(type, structs))
    if len(profiles) == 1 and len(types) == 1:
        key = (profiles.pop(), STRUCT_KINDS[types.pop()])
        group = groups.get(key)
        if group is None:
            groups[key] = structs
        else:
            group.extend(structs)
        return
    for item in structs:
        groups.setdefault((item.profile, STRUCT_KINDS[type(item)]), []).append(item)


_PROFILE: Callable[[Any], str] = attrgetter("profile")


@dataclass
class IngestStats(CounterSet):
    messages: int = 0
    events: int = 0
    modeled: int = 0
    controls: int = 0
    no_window: int = 0
    outside: int = 0
    late: int = 0
    rejected: int = 0



@dataclass
class Pending:
    """Events of a profile whose window is not known yet (its ``start`` may be behind
    them in another topic). Held briefly in memory, then counted as dropped."""

    since: float
    events: list[Event] = field(default_factory=list)


@dataclass
class BatchResult:
    changed_models: set[str] = field(default_factory=set)
    changed_windows: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    #: Profiles whose earlier model was discarded (a new window after a closed one).
    reset: list[str] = field(default_factory=list)


class Ingestor:
    """Holds the worker's view of windows and models and applies batches to it.

    ``load_window`` / ``load_model`` read state this worker does not hold in memory yet
    (from the Faust tables after a restart or rebalance).
    """

    def __init__(
        self,
        path_of: PathMapper,
        load_window: Callable[[str], Window | None] = lambda _p: None,
        load_model: Callable[[str], BehaviourModel | None] = lambda _p: None,
        *,
        pending_hold_s: float = 15.0,
        pending_limit: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path_of = path_of
        self._load_window = load_window
        self._load_model = load_model
        self.windows: dict[str, Window] = {}
        self.models: dict[str, BehaviourModel] = {}
        self.pending: dict[str, Pending] = {}
        self.pending_hold_s = pending_hold_s
        self.pending_limit = pending_limit
        self._pending_count = 0
        self.stats = IngestStats()
        self.rejects = Rejects()
        self._clock = clock

    # --- state ----------------------------------------------------------------------------

    def forget_cache(self) -> None:
        """Drop the in-memory view (after a rebalance the tables are the truth)."""
        self.windows.clear()
        self.models.clear()

    def window(self, profile: str) -> Window | None:
        w = self.windows.get(profile)
        if w is None:
            w = self._load_window(profile)
            if w is not None:
                self.windows[profile] = w
        return w

    def model(self, profile: str) -> BehaviourModel:
        m = self.models.get(profile)
        if m is None:
            m = self._load_model(profile) or BehaviourModel()
            self.models[profile] = m
        return m

    # --- batches ----------------------------------------------------------------------------

    def apply_batch(self, values: Iterable[bytes], now_ns: int | None = None) -> BatchResult:
        """Apply message values: control messages first, then events.

        Array messages of valid events take the fast decoder; everything else (control
        messages, single events, an array with a bad event in it) is decoded and checked
        event by event, so that the good events around a bad one are kept. Events are then
        grouped by profile and kind, and each group is folded into its model at once.
        """
        now_ns = time.time_ns() if now_ns is None else now_ns
        result = BatchResult()
        controls: list[Control] = []
        groups: dict[tuple[str, str], list[Any]] = {}
        slow: list[Event] = []
        for value in values:
            self.stats.messages += 1
            structs = decode_array_fast(value)
            if structs is not None:
                _group_structs(structs, groups)
                continue
            try:
                decoded = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                self._reject(EventError(f"not valid UTF-8 JSON: {exc}"))
                continue
            if isinstance(decoded, dict) and "type" in decoded and "kind" not in decoded:
                try:
                    controls.append(parse_control(decoded))
                except ControlError as exc:
                    self._reject(EventError(f"bad control message: {exc}"))
                continue
            for item in decoded if isinstance(decoded, list) else (decoded,):
                try:
                    slow.append(validate(item))
                except EventError as exc:
                    self._reject(exc)
        for control in controls:
            self.apply_control(control, now_ns, result)
        for (profile, kind), structs in groups.items():
            self._apply_group(
                profile,
                kind,
                structs,
                _STRUCT_TS,
                STRUCT_BEHAVIOUR[kind],
                result,
                as_event=struct_to_event,
            )
        self.apply_events(slow, result)
        return result

    def apply_control(self, control: Control, now_ns: int, result: BatchResult) -> None:
        self.stats.controls += 1
        before = self.window(control.profile)
        was_open = before is not None and before.state is WindowState.OPEN
        after = apply_control(before, control, now_ns)
        if after is None:
            return
        self.windows[control.profile] = after
        result.changed_windows.add(control.profile)
        if control.type == "start" and not was_open:
            # A fresh window starts from an empty model.
            if before is not None:
                result.reset.append(control.profile)
            self.models[control.profile] = BehaviourModel()
            result.started.append(control.profile)
        held = self.pending.pop(control.profile, None)
        if held is not None:
            self._pending_count -= len(held.events)
            self.apply_events(held.events, result)

    def apply_events(self, events: Iterable[Event], result: BatchResult) -> None:
        """Apply validated events (from the slow path, a held batch or a test)."""
        groups: dict[tuple[str, str], list[Event]] = {}
        for event in events:
            key = (event["profile"], event["kind"])
            group = groups.get(key)
            if group is None:
                groups[key] = [event]
            else:
                group.append(event)
        for (profile, kind), group in groups.items():
            self._apply_group(profile, kind, group, _EVENT_TS, _event_behaviour, result)

    def _apply_group(
        self,
        profile: str,
        kind: str,
        items: list[Any],
        ts_of: Callable[[Any], int],
        behaviour_of: Callable[[Any], Any],
        result: BatchResult,
        as_event: Callable[[Any], Event] | None = None,
    ) -> None:
        """Window check and fold for events of one profile and kind (dicts or structs)."""
        n = len(items)
        self.stats.events += n
        window = self.windows.get(profile) or self.window(profile)
        if window is None or window.state is WindowState.DELETED:
            for item in items:
                self._hold(profile, as_event(item) if as_event is not None else item)
            return
        result.changed_windows.add(profile)
        if window.state is WindowState.CLOSED:
            self.stats.late += n
            window.dropped_late += n
            return
        start, end = window.start_ts, window.end_ts
        stamps = list(map(ts_of, items))
        if min(stamps) < start or max(stamps) >= end:
            items = [item for item, ts in zip(items, stamps, strict=True) if start <= ts < end]
            outside = n - len(items)
            self.stats.outside += outside
            window.dropped_outside += outside
            n = len(items)
            if not n:
                return
        window.events += n
        self.stats.modeled += n
        if kind not in BEHAVIOUR_FIELDS:
            changed = any([self.model(profile).add(item, self.path_of) for item in items])
        else:
            changed = self.model(profile).add_behaviours(
                profile, kind, map(behaviour_of, items), self.path_of
            )
        if changed:
            result.changed_models.add(profile)

    def _hold(self, profile: str, event: Event) -> None:
        if self._pending_count >= self.pending_limit:
            self.stats.no_window += 1
            return
        held = self.pending.get(profile)
        if held is None:
            held = self.pending[profile] = Pending(since=self._clock())
        held.events.append(event)
        self._pending_count += 1

    def expire_pending(self) -> int:
        """Count and drop held events whose window never came; returns how many."""
        now = self._clock()
        dropped = 0
        for profile in [p for p, h in self.pending.items() if now - h.since >= self.pending_hold_s]:
            held = self.pending.pop(profile)
            dropped += len(held.events)
            self._pending_count -= len(held.events)
            log.warning(
                "dropped %d event(s) of profile %s: no modeling window", len(held.events), profile
            )
        self.stats.no_window += dropped
        return dropped

    def due(self, now_ns: int, grace_s: float) -> list[Window]:
        return [w for w in self.windows.values() if w.due(now_ns, grace_s)]

    def mark_closed(self, profile: str, now_ns: int) -> None:
        window = self.windows[profile]
        window.state = WindowState.CLOSED
        window.closed_at = now_ns

    def _reject(self, error: EventError) -> None:
        self.stats.rejected += 1
        if self.rejects.count < 10:
            log.warning("skipped: %s", error)
        self.rejects.add(error)


def window_seconds(window: Window) -> float:
    return (window.end_ts - window.start_ts) / NS
