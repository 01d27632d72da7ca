"""Counting what a renderer leaves out, so no dropped rule goes unnoticed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("armorflow.render")


@dataclass
class Drops:
    """What a renderer left out, counted by ``section:reason``, with a few samples."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    sample_limit: int = 50

    def add(self, section: str, reason: str, value: object) -> None:
        key = f"{section}:{reason}"
        self.counts[key] = self.counts.get(key, 0) + 1
        # repr() keeps control characters of hostile names out of logs and reports.
        sample = f"{key}: {value!r}"
        if len(self.samples) < self.sample_limit:
            self.samples.append(sample)
        log.warning("render dropped %s", sample)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_reason(self) -> dict[str, int]:
        """Counts keyed by reason alone (sections summed)."""
        out: dict[str, int] = {}
        for key, n in self.counts.items():
            reason = key.split(":", 1)[1]
            out[reason] = out.get(reason, 0) + n
        return out
