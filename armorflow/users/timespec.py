"""Times on the command line: durations (``10s``, ``5m``) and instants (ISO 8601, epoch)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Integers at least this large are nanoseconds since the epoch (the events' unit);
#: smaller ones are seconds.
_NS_THRESHOLD: Final = 10**14


class TimeSpecError(ValueError):
    """A time on the command line that is neither a duration nor an instant."""


def parse_duration(text: str) -> float | None:
    """Seconds in ``10s`` / ``1.5m`` / ``250ms`` / ``2h``; None if ``text`` is no duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_instant_ns(text: str) -> int:
    """Nanoseconds since the epoch of ``now``, an ISO 8601 time (UTC if naive) or a number."""
    text = text.strip()
    if text == "now":
        return time.time_ns()
    if re.fullmatch(r"\d+", text):
        value = int(text)
        return value if value >= _NS_THRESHOLD else value * 1_000_000_000
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not 'now', an ISO 8601 time or seconds/nanoseconds since the epoch"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000_000)


@dataclass(frozen=True)
class Until:
    """When a recording stops: a wall-clock deadline and, for an instant, an event-time bound."""

    #: ``time.monotonic()`` value after which recording stops (None: no deadline).
    deadline: float | None
    #: Events stamped later than this (ns since the epoch) are left out (None: no bound).
    ts_bound_ns: int | None

    def passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def parse_until(text: str | None) -> Until:
    """``--until``: a duration from now, or an instant (which also bounds event time)."""
    if text is None:
        return Until(None, None)
    seconds = parse_duration(text)
    if seconds is not None:
        return Until(time.monotonic() + seconds, None)
    bound = parse_instant_ns(text)
    remaining = (bound - time.time_ns()) / 1e9
    return Until(time.monotonic() + max(0.0, remaining), bound)
