"""Modeling windows: one per profile, opened, changed and closed by control messages.

A window is ``[start_ts, start_ts + duration)`` in event time (ns). It *closes* once the
pipeline's wall clock passes its end plus a grace period for late events; a closed
window's model is final and later events of the profile are counted as late and dropped.
The state is a small JSON-able dict so that it lives in a Faust table (changelog-backed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from armorflow.control import Control

NS = 1_000_000_000


class WindowState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    #: Closing failed too often (the sink refused the model): no model was written.
    FAILED = "failed"
    DELETED = "deleted"


@dataclass
class Window:
    profile: str
    start_ts: int
    duration_s: float
    policy: dict[str, str] = field(default_factory=dict)
    namespace: str = "varmor"
    enforcer: str = "AppArmorSeccomp"
    state: WindowState = WindowState.OPEN
    #: Counters for status reports (not part of the model: not idempotent).
    events: int = 0
    dropped_outside: int = 0
    dropped_late: int = 0
    #: New path rules past the model's rule budget (armorflow.model.RULE_BUDGET): not
    #: modeled, so the window ends Failed rather than with a profile that lacks them.
    dropped_over_budget: int = 0
    #: The same by source ("node/namespace/pod/container"), at most 8 sources.
    over_budget_sources: dict[str, int] = field(default_factory=dict)
    closed_at: int = 0

    @property
    def end_ts(self) -> int:
        return self.start_ts + int(self.duration_s * NS)

    def accepts(self, ts: int) -> bool:
        """True when an event at ``ts`` belongs to this (open) window."""
        return self.state is WindowState.OPEN and self.start_ts <= ts < self.end_ts

    def due(self, now_ns: int, grace_s: float) -> bool:
        """True when the window should close now."""
        return self.state is WindowState.OPEN and now_ns >= self.end_ts + int(grace_s * NS)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        # Fields a newer version added are ignored: a rolled-back worker keeps its windows.
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["state"] = WindowState(data.get("state", "open"))
        return cls(**data)


def apply_control(window: Window | None, control: Control, now_ns: int) -> Window | None:
    """The window after ``control``; ``None`` when there is (or remains) no window.

    A ``start`` for a profile whose window is open keeps the earlier start (agents may
    already be sending) and takes the new duration: operators restart, messages repeat.
    A ``start`` after a close opens a fresh window: the profile is modeled again.
    """
    if control.type == "start":
        assert control.start_ts is not None and control.duration_s is not None
        if window is not None and window.state is WindowState.OPEN:
            window.duration_s = control.duration_s
            window.start_ts = min(window.start_ts, control.start_ts)
            return window
        return Window(
            profile=control.profile,
            start_ts=control.start_ts,
            duration_s=control.duration_s,
            policy=control.policy.to_json(),
            namespace=control.namespace,
            enforcer=control.enforcer,
        )
    if window is None:
        return None
    if control.type == "update":
        assert control.duration_s is not None
        if window.state is WindowState.OPEN:
            # A duration that has already elapsed ends the window *now* (when the update
            # was issued), not in the past: as in the seed's step 5, patching the
            # duration to one minute after three minutes of modeling keeps those three
            # minutes of behaviour and stops there.
            issued = min(control.ts, now_ns)
            elapsed_s = max(0, issued - window.start_ts) / NS
            window.duration_s = max(control.duration_s, min(window.duration_s, elapsed_s))
        return window
    if control.type == "stop":
        if window.state is WindowState.OPEN:
            # End the window at the moment the stop was issued.
            elapsed = max(0, min(control.ts, now_ns) - window.start_ts)
            window.duration_s = min(window.duration_s, elapsed / NS)
        return window
    # delete
    window.state = WindowState.DELETED
    return window
