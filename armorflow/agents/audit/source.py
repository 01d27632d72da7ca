"""The audit source: the first existing log of ``--audit-log-paths``, else kernel netlink.

Like vArmor's ``--auditLogPaths``, the candidates are ``|``-separated and tried in order
(default ``/var/log/audit/audit.log|/var/log/kern.log``): auditd writes AppArmor and
Seccomp records to the first, a syslog daemon to the second. On a node with neither (no
auditd, no syslog daemon) the source joins the kernel's audit netlink multicast group.

The file mode is durable: :meth:`AuditSource.commit` saves the position after the last
line :meth:`AuditSource.poll` returned, and the caller commits only once what it got is
safely handed on (published or spooled). A restart then resumes exactly there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Final, Literal

from armorflow.agents.audit.follow import Checkpoint, FileFollower, Position
from armorflow.agents.audit.netlink import NetlinkAuditReader
from armorflow.agents.audit.observe import Observation, SyscallNamer
from armorflow.agents.audit.parser import AuditParser

log = logging.getLogger(__name__)

DEFAULT_AUDIT_LOG_PATHS: Final = "/var/log/audit/audit.log|/var/log/kern.log"
#: Seconds between looks at a file with nothing new.
FILE_POLL_S: Final = 0.1


def split_paths(spec: str) -> list[Path]:
    """``"a|b"`` -> ``[Path("a"), Path("b")]`` (empty items dropped)."""
    return [Path(p.strip()) for p in spec.split("|") if p.strip()]


class AuditSource:
    """Observations from a followed audit log or from the audit netlink group."""

    def __init__(
        self,
        paths: list[Path] | str = DEFAULT_AUDIT_LOG_PATHS,
        *,
        checkpoint_path: Path | None = None,
        include_denied: bool = False,
        netlink_fallback: bool = True,
        from_start: bool = False,
        namer: SyscallNamer | None = None,
    ):
        self.paths = split_paths(paths) if isinstance(paths, str) else list(paths)
        self.parser = AuditParser(include_denied=include_denied, namer=namer)
        self.checkpoint = Checkpoint(checkpoint_path) if checkpoint_path else None
        self.follower: FileFollower | None = None
        self.netlink: NetlinkAuditReader | None = None
        self._pending: Position | None = None
        self._committed: Position | None = None
        chosen = next((p for p in self.paths if p.is_file()), None)
        if chosen is not None:
            saved = self.checkpoint.load() if self.checkpoint else None
            if saved is not None and saved.path != str(chosen):
                log.warning("checkpoint is for %s, now following %s: ignoring it",
                            saved.path, chosen)
                saved = None
            self.follower = FileFollower(chosen, saved, from_end=saved is None and not from_start)
            self.mode: Literal["file", "netlink"] = "file"
            # Committed at once, so a crash before the first line never skips what follows.
            self._pending = self.follower.position
            log.info("audit source: following %s from offset %d", chosen,
                     self.follower.position.offset)
        elif netlink_fallback:
            self.netlink = NetlinkAuditReader()
            self.mode = "netlink"
            log.info("audit source: none of %s exists; reading the audit netlink group",
                     "|".join(map(str, self.paths)))
        else:
            raise FileNotFoundError(f"none of the audit logs exists: {self.paths}")

    def poll(self, timeout_s: float = 0.5) -> list[Observation]:
        """Observations available within ``timeout_s``."""
        out: list[Observation] = []
        if self.follower is not None:
            deadline = time.monotonic() + timeout_s
            while True:
                lines = self.follower.read_lines()
                for line, position in lines:
                    where = f"{position.path}@{position.offset - len(line) - 1}"
                    obs = self.parser.feed(line, where)
                    if obs is not None:
                        out.append(obs)
                if lines:
                    self._pending = lines[-1][1]
                if out or time.monotonic() >= deadline:
                    return out
                time.sleep(min(FILE_POLL_S, max(0.0, deadline - time.monotonic())))
        assert self.netlink is not None
        for line in self.netlink.read_lines(timeout_s):
            obs = self.parser.feed(line, "netlink")
            if obs is not None:
                out.append(obs)
        return out

    def mark(self) -> Position | None:
        """The position after the last polled line (None for netlink: nothing to resume)."""
        return self._pending

    def commit(self, position: Position | None = None) -> None:
        """Make ``position`` (default: after the last polled line) durable; file mode only.

        Commit a position only once everything polled before it is safely handed on.
        """
        position = position or self._pending
        if self.checkpoint is None or position is None or position == self._committed:
            return
        self.checkpoint.save(position)
        self._committed = position

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, **self.parser.stats.as_dict()}
        if self.follower is not None:
            out.update(path=str(self.follower.path), offset=self.follower.position.offset,
                       rotations=self.follower.rotations, truncations=self.follower.truncations,
                       oversize_lines=self.follower.oversize_lines)
        if self.netlink is not None:
            out.update(received=self.netlink.received, overruns=self.netlink.overruns)
        return out

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        if self.netlink is not None:
            self.netlink.close()
