"""The synchronous core of a pipeline worker: fold a batch of Kafka message values into
per-profile windows and models. No Faust here, so it is fast, testable, and shared with
the benchmark; :mod:`armorflow.pipeline.worker` wraps it in Faust agents and tables.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
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
    check_names,
    decode_array_fast,
    struct_to_event,
    validate,
)
from armorflow.model import (
    EVENT_ORIGIN,
    RULE_BUDGET,
    STRUCT_ORIGIN,
    BehaviourModel,
    PathMapper,
)
from armorflow.pipeline.window import NS, Window, WindowState, apply_control
from armorflow.topics import CONTROL_TOPIC, event_topic

log = logging.getLogger(__name__)

#: Sources named per window past its budget (the status says who sent the rules).
OVER_BUDGET_SOURCES = 8

_STRUCT_TS: Callable[[Any], int] = attrgetter("ts")
_EVENT_TS: Callable[[Any], int] = itemgetter("ts")
_event_behaviour: Callable[[Any], Any] = behaviour_of


def _check_structs(structs: list[Any], topic: str | None) -> None:
    """Raise :class:`EventError` unless every struct of a fast-decoded message has safe
    names and the kind of the topic it came on. Names are checked once per distinct value
    (an agent's message holds one profile, one namespace and one kind)."""
    for profile, namespace in set(map(_NAMES, structs)):
        check_names(profile, namespace)
    if topic is not None:
        for kind in {STRUCT_KINDS[t] for t in set(map(type, structs))}:
            if event_topic(kind) != topic:
                raise EventError(f"a {kind} event on {topic}", code="kind_topic_mismatch")


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
_NAMES: Callable[[Any], tuple[str, str]] = attrgetter("profile", "namespace")
#: Seconds between two log lines about skipped messages of one reason.
REJECT_LOG_EVERY_S = 60.0


@dataclass
class IngestStats(CounterSet):
    messages: int = 0
    events: int = 0
    modeled: int = 0
    controls: int = 0
    no_window: int = 0
    outside: int = 0
    late: int = 0
    #: New path rules past a model's rule budget (not modeled; the window ends Failed).
    over_budget: int = 0
    rejected: int = 0
    #: Skipped messages and events by reason (``null_value``, ``invalid_profile``, ...).
    skipped_by: Counter[str] = field(default_factory=Counter)



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
    #: Profiles forgotten by ``delete``: their stored window and rows are to be removed.
    deleted: list[str] = field(default_factory=list)


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
        pending_per_profile: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
        rule_budget: int | None = RULE_BUDGET,
    ) -> None:
        self.path_of = path_of
        #: Most path rules per model (armorflow.model.RULE_BUDGET); None: no limit.
        self.rule_budget = rule_budget
        #: Profiles whose open window went past the budget: the worker ends them now.
        self.over_budget: set[str] = set()
        self._load_window = load_window
        self._load_model = load_model
        self.windows: dict[str, Window] = {}
        self.models: dict[str, BehaviourModel] = {}
        self.pending: dict[str, Pending] = {}
        self.pending_hold_s = pending_hold_s
        self.pending_limit = pending_limit
        self.pending_per_profile = pending_per_profile
        self._pending_count = 0
        self.stats = IngestStats()
        self.rejects = Rejects()
        self._clock = clock
        #: reason -> (clock time of its last log line, its count then)
        self._reject_logged: dict[str, tuple[float, int]] = {}

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
        m.rule_budget = self.rule_budget
        return m

    # --- batches ----------------------------------------------------------------------------

    def apply_batch(self, values: Iterable[bytes | None], now_ns: int | None = None
                    ) -> BatchResult:
        """Apply message values whose topics are not known (tests, benchmarks)."""
        return self.apply_messages(((None, value) for value in values), now_ns)

    def apply_messages(self, messages: Iterable[tuple[str | None, bytes | None]],
                       now_ns: int | None = None) -> BatchResult:
        """Apply (topic, value) messages: control messages first, then events.

        Every message is untrusted: a null value, a control message on an event topic, an
        event on the control topic or on another kind's topic, an unsafe profile or
        namespace name, are each counted by reason and skipped, and never stop the batch.
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
        for topic, value in messages:
            self.stats.messages += 1
            if value is None:
                self._reject(EventError("a message with a null value (tombstone)",
                                        code="null_value"))
                continue
            structs = decode_array_fast(value) if topic != CONTROL_TOPIC else None
            if structs is not None:
                try:
                    _check_structs(structs, topic)
                except EventError:
                    pass  # the slow path below names the event and keeps the good ones
                else:
                    _group_structs(structs, groups)
                    continue
            try:
                decoded = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                self._reject(EventError(f"not valid UTF-8 JSON: {exc}", code="not_json"))
                continue
            if isinstance(decoded, dict) and "type" in decoded and "kind" not in decoded:
                if topic is not None and topic != CONTROL_TOPIC:
                    self._reject(EventError(f"a control message on {topic}",
                                            code="control_on_event_topic"))
                    continue
                try:
                    controls.append(parse_control(decoded))
                except ControlError as exc:
                    self._reject(EventError(f"bad control message: {exc}",
                                            code="bad_control"))
                continue
            if topic == CONTROL_TOPIC:
                self._reject(EventError("an event on the control topic",
                                        code="event_on_control_topic"))
                continue
            for item in decoded if isinstance(decoded, list) else (decoded,):
                try:
                    event = validate(item)
                    if topic is not None and event_topic(event["kind"]) != topic:
                        raise EventError(f"a {event['kind']} event on {topic}",
                                         code="kind_topic_mismatch")
                    slow.append(event)
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
            # update/stop/delete of a profile this worker has no window for: a typo, or
            # a window another pipeline (app id) owns. Said, counted, not fatal.
            self._reject(EventError(f"{control.type} for {control.profile}, which has no "
                                    "window here", code="control_without_window"),
                         counted=False)
            return
        if after.state is WindowState.DELETED:
            # Forgotten: nothing of the profile stays in memory or in the tables.
            self.windows.pop(control.profile, None)
            self.models.pop(control.profile, None)
            result.changed_windows.discard(control.profile)
            result.changed_models.discard(control.profile)
            result.deleted.append(control.profile)
            return
        self.windows[control.profile] = after
        result.changed_windows.add(control.profile)
        if control.type == "start" and not was_open:
            # A fresh window starts from an empty model (made when its first event comes:
            # an open window without events costs no model).
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
        if window.state in (WindowState.CLOSED, WindowState.FAILED):
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
        model = self.model(profile)
        if kind not in BEHAVIOUR_FIELDS:
            changed = any([model.add(item, self.path_of) for item in items])
        else:
            changed = model.add_events(
                profile, kind, items, behaviour_of,
                EVENT_ORIGIN if as_event is None else STRUCT_ORIGIN, self.path_of,
            )
        if model.over_budget:
            if not window.dropped_over_budget:
                log.warning("the model of %s reached its budget of %d path rules: it ends "
                            "Failed now (see --max-rules)", profile, self.rule_budget)
            window.dropped_over_budget += model.over_budget
            for source, n in model.over_budget_sources.items():
                if source in window.over_budget_sources or len(
                        window.over_budget_sources) < OVER_BUDGET_SOURCES:
                    window.over_budget_sources[source] = (
                        window.over_budget_sources.get(source, 0) + n)
            self.stats.over_budget += model.over_budget
            model.over_budget = 0
            model.over_budget_sources.clear()
            self.over_budget.add(profile)
        if changed:
            result.changed_models.add(profile)

    def _hold(self, profile: str, event: Event) -> None:
        """Hold an event until its window's start arrives; each profile holds at most
        ``pending_per_profile`` (so a flood for one unknown profile cannot crowd out
        another's early events) and all together at most ``pending_limit``."""
        held = self.pending.get(profile)
        if self._pending_count >= self.pending_limit or (
                held is not None and len(held.events) >= self.pending_per_profile):
            self.stats.no_window += 1
            self._reject(EventError(f"no window for {profile} and its held events are at "
                                    "their limit", code="held_overflow"), counted=False)
            return
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
        """The window's model is final and delivered: free it (later events are late)."""
        window = self.windows[profile]
        window.state = WindowState.CLOSED
        window.closed_at = now_ns
        self.models.pop(profile, None)

    def mark_failed(self, profile: str, now_ns: int) -> None:
        """The window could not be closed: it ends without a model."""
        window = self.windows[profile]
        window.state = WindowState.FAILED
        window.closed_at = now_ns
        self.models.pop(profile, None)

    def _reject(self, error: EventError, *, counted: bool = True) -> None:
        """Count a skipped message or event by reason; log each reason at most once per
        REJECT_LOG_EVERY_S, with how many were skipped since its last line. ``counted``
        False: the caller counts it elsewhere (dropped, not rejected)."""
        if counted:
            self.stats.rejected += 1
            self.rejects.add(error)
        self.stats.skipped_by[error.code] += 1
        now = self._clock()
        last = self._reject_logged.get(error.code)
        if last is None or now - last[0] >= REJECT_LOG_EVERY_S:
            since = self.stats.skipped_by[error.code] - (last[1] if last else 0)
            log.warning("skipped %d message(s) or event(s) [%s] since the last report, "
                        "e.g.: %s", since, error.code, error)
            self._reject_logged[error.code] = (now, self.stats.skipped_by[error.code])


def window_seconds(window: Window) -> float:
    return (window.end_ts - window.start_ts) / NS
