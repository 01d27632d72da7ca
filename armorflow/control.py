"""Control and status messages: how the operator (or ``armorflow window``) drives windows
and how the pipeline reports back. ``docs/topics.md`` documents both.

A control message opens, changes, closes or forgets one profile's modeling window::

    {"v": 1, "type": "start", "profile": "varmor-cluster-varmor-demo-4",
     "policy": {"kind": "VarmorClusterPolicy", "namespace": "", "name": "demo-4", "uid": ""},
     "namespace": "varmor", "enforcer": "AppArmorSeccomp",
     "duration_s": 1800, "start_ts": 1700000000000000000, "ts": 1700000000000000000}

``update`` carries a new ``duration_s`` (shortening it may end the window at once),
``stop`` ends the window now, ``delete`` forgets the profile's state.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from armorflow.names import InvalidName, check_namespace, check_profile_name

ControlType = Literal["start", "update", "stop", "delete"]
CONTROL_TYPES: Final = ("start", "update", "stop", "delete")
ENFORCERS: Final = frozenset(
    {"AppArmor", "Seccomp", "AppArmorSeccomp", "BPF", "AppArmorBPF", "BPFSeccomp",
     "AppArmorBPFSeccomp"}
)

#: Longest modeling window: a year. A longer one is a mistake or an attack, and with the
#: timestamp bound below it keeps every window end within a signed 64-bit integer.
MAX_DURATION_S: Final = 366 * 86_400.0
#: Latest accepted timestamp (ns since the epoch): the year 2200.
MAX_TIMESTAMP_NS: Final = 7_258_118_400 * 1_000_000_000

PHASE_MODELING: Final = "Modeling"
PHASE_COMPLETED: Final = "Completed"
#: The window ended without a model (it could not be written); the status says why.
PHASE_FAILED: Final = "Failed"


class ControlError(ValueError):
    """A control message that cannot be acted on."""


@dataclass(frozen=True)
class PolicyRef:
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid}

    @classmethod
    def parse(cls, data: Any) -> PolicyRef:
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: str(data.get(k) or "") for k in ("kind", "namespace", "name", "uid")})


@dataclass(frozen=True)
class Control:
    type: ControlType
    profile: str
    ts: int
    policy: PolicyRef = field(default_factory=PolicyRef)
    namespace: str = "varmor"
    enforcer: str = "AppArmorSeccomp"
    duration_s: float | None = None
    start_ts: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": 1, "type": self.type, "profile": self.profile, "policy": self.policy.to_json(),
            "namespace": self.namespace, "enforcer": self.enforcer, "ts": self.ts,
        }
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        if self.start_ts is not None:
            out["start_ts"] = self.start_ts
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())


def make_control(
    type_: ControlType,
    profile: str,
    *,
    policy: PolicyRef | None = None,
    namespace: str = "varmor",
    enforcer: str = "AppArmorSeccomp",
    duration_s: float | None = None,
    start_ts: int | None = None,
    ts: int | None = None,
) -> Control:
    now = time.time_ns() if ts is None else ts
    if type_ == "start":
        if duration_s is None:
            raise ControlError("start needs duration_s")
        start_ts = now if start_ts is None else start_ts
    if type_ == "update" and duration_s is None:
        raise ControlError("update needs duration_s")
    control = Control(
        type=type_, profile=profile, ts=now, policy=policy or PolicyRef(), namespace=namespace,
        enforcer=enforcer, duration_s=duration_s, start_ts=start_ts,
    )
    return parse_control(control.to_json())


def parse_control(data: Any) -> Control:
    """Validate a decoded control message."""
    if not isinstance(data, dict):
        raise ControlError("a control message is a JSON object")
    type_ = data.get("type")
    if type_ not in CONTROL_TYPES:
        raise ControlError(f"type {type_!r} is not one of {CONTROL_TYPES}")
    profile = data.get("profile")
    if not isinstance(profile, str) or not profile:
        raise ControlError("profile must be a non-empty string")
    namespace = data.get("namespace") or "varmor"
    try:
        check_profile_name(profile)
        check_namespace(namespace if isinstance(namespace, str) else "")
    except InvalidName as exc:
        raise ControlError(str(exc)) from None
    ts = _timestamp(data.get("ts"), "ts")
    duration = data.get("duration_s")
    if duration is not None:
        duration = check_duration(duration)
    if type_ in ("start", "update") and duration is None:
        raise ControlError(f"{type_} needs duration_s")
    start_ts = data.get("start_ts")
    if type_ == "start" or start_ts is not None:
        start_ts = _timestamp(start_ts, "start_ts")
    enforcer = str(data.get("enforcer") or "AppArmorSeccomp")
    if enforcer not in ENFORCERS:
        raise ControlError(f"enforcer {enforcer!r} is not one of {sorted(ENFORCERS)}")
    return Control(
        type=type_,
        profile=profile,
        ts=ts,
        policy=PolicyRef.parse(data.get("policy")),
        namespace=namespace,
        enforcer=enforcer,
        duration_s=float(duration) if duration is not None else None,
        start_ts=start_ts,
    )


def check_duration(value: object) -> float:
    """A window duration in seconds: finite, ``0 <= value <= MAX_DURATION_S``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError("duration_s must be a number of seconds")
    if not math.isfinite(value) or not 0 <= value <= MAX_DURATION_S:
        raise ControlError(f"duration_s must be between 0 and {MAX_DURATION_S:.0f} seconds "
                           f"({MAX_DURATION_S / 86_400:.0f} days), not {value!r}")
    return float(value)


def _timestamp(value: object, name: str) -> int:
    """A time in ns since the epoch that any window arithmetic keeps within int64."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{name} must be an integer (ns since the epoch)")
    if not 0 <= value <= MAX_TIMESTAMP_NS:
        raise ControlError(f"{name} {value} is outside 0 .. {MAX_TIMESTAMP_NS} ns")
    return value


def decode_control(value: bytes) -> Control:
    try:
        return parse_control(orjson.loads(value))
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"not JSON: {exc}") from None


def make_status(
    profile: str, phase: str, *, counts: dict[str, int] | None = None,
    resource: dict[str, str] | None = None, message: str = "", source: str = "",
) -> bytes:
    """A status message on ``armorflow.status`` (the operator's input)."""
    return orjson.dumps({
        "v": 1, "profile": profile, "phase": phase, "counts": counts or {},
        "resource": resource or {}, "message": message, "source": source,
        "ts": time.time_ns(),
    })
