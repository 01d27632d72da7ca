"""Line-by-line parsing with accounting: every line ends up counted somewhere.

A line is either not an audit record (other kern.log traffic), a record of no interest
(``ignored``, by reason), a malformed record (``malformed``: counted and logged with its
position, never fatal), an enforcement record left out of modeling (``denied``), or an
observation.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from armorflow.agents.audit.observe import (
    Ignored,
    Observation,
    SyscallNamer,
    default_syscall_namer,
    observe,
)
from armorflow.agents.audit.records import AuditFormatError, parse_record
from armorflow.counters import CounterSet

log = logging.getLogger(__name__)

#: Malformed-line samples kept for ``stats()``; the count itself is unbounded.
SAMPLE_LIMIT = 50


@dataclass
class ParseStats(CounterSet):
    lines: int = 0
    non_audit: int = 0
    records: int = 0
    observations: int = 0
    denied: int = 0
    malformed: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    malformed_samples: list[str] = field(default_factory=list)



class AuditParser:
    """Feeds lines, returns observations, keeps :class:`ParseStats`."""

    def __init__(self, *, include_denied: bool = False, namer: SyscallNamer | None = None):
        self.include_denied = include_denied
        self.namer = namer or default_syscall_namer
        self.stats = ParseStats()

    def feed(self, line: bytes | str, position: str = "") -> Observation | None:
        """Parse one line; ``position`` (``file:offset``) is what the log names on errors."""
        self.stats.lines += 1
        text = line.decode("utf-8", errors="backslashreplace") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if not text.strip():
            self.stats.non_audit += 1
            return None
        record = None
        try:
            record = parse_record(text)
            if record is None:
                self.stats.non_audit += 1
                return None
            self.stats.records += 1
            obs = observe(record, self.namer)
        except Ignored as why:
            self.stats.ignored[why.reason] += 1
            return None
        except AuditFormatError as exc:
            if record is None:  # a record whose header could not be read
                self.stats.records += 1
            self._malformed(exc, position, text)
            return None
        if obs.verdict == "denied":
            self.stats.denied += 1
            if not self.include_denied:
                return None
        self.stats.observations += 1
        return obs

    def _malformed(self, exc: AuditFormatError, position: str, text: str) -> None:
        self.stats.malformed += 1
        message = f"{position or 'line'}: {exc}"
        if len(self.stats.malformed_samples) < SAMPLE_LIMIT:
            self.stats.malformed_samples.append(message)
        # Log the first ones in full, then every 1000th, so a flood cannot fill the disk.
        if self.stats.malformed <= SAMPLE_LIMIT or self.stats.malformed % 1000 == 0:
            log.warning("malformed audit record at %s (%d so far): %.200s",
                        message, self.stats.malformed, text)
