"""Read kernel audit records straight from the audit netlink multicast group.

With no auditd and no syslog daemon there is no file to follow, but the kernel still
multicasts every record it emits to ``AUDIT_NLGRP_READLOG`` (group 1 of
``NETLINK_AUDIT``). Joining the group needs ``CAP_AUDIT_READ`` and no daemon; it does not
take the audit daemon's unicast slot, so it coexists with auditd. Seccomp
``SCMP_ACT_LOG`` records arrive even when auditing is disabled (``auditctl -e 0``).

The group is live only: the kernel keeps nothing for a reader that is not listening, so
there is no offset to checkpoint. A socket receive-buffer overflow (``ENOBUFS``) means
records were lost; it is counted and reported, never silent.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
from typing import Final

log = logging.getLogger(__name__)

NETLINK_AUDIT: Final = 9
AUDIT_NLGRP_READLOG: Final = 1
_NLMSG_HEADER: Final = struct.Struct("=IHHII")
_NLMSG_NOOP, _NLMSG_ERROR, _NLMSG_DONE = 1, 2, 3
#: A large receive buffer rides out bursts while the agent is busy publishing.
RECV_BUFFER_BYTES: Final = 8 << 20


class NetlinkAuditReader:
    """Receives ``(record type, text)`` pairs; :meth:`read_lines` formats them as log lines."""

    def __init__(self, recv_buffer: int = RECV_BUFFER_BYTES):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        try:
            # SO_RCVBUFFORCE (root) ignores rmem_max; fall back to what is allowed.
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, 33, recv_buffer)  # SO_RCVBUFFORCE
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
            self.sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        except OSError as exc:
            self.sock.close()
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise PermissionError(
                    "joining the audit netlink multicast group needs CAP_AUDIT_READ "
                    "(run the agent as root or grant the capability)"
                ) from exc
            raise
        self.sock.setblocking(False)
        self.received = 0
        #: Times the kernel reported lost records (receive buffer overflow).
        self.overruns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self, timeout_s: float = 0.0, max_records: int = 10_000) -> list[tuple[int, bytes]]:
        """Records available within ``timeout_s`` (waits only for the first one)."""
        out: list[tuple[int, bytes]] = []
        if timeout_s > 0:
            ready, _, _ = select.select([self.sock], [], [], timeout_s)
            if not ready:
                return out
        while len(out) < max_records:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    log.error("audit netlink receive buffer overflowed: records were lost "
                              "(%d overruns so far)", self.overruns)
                    continue
                raise
            self._split(data, out)
        self.received += len(out)
        return out

    @staticmethod
    def _split(data: bytes, out: list[tuple[int, bytes]]) -> None:
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, msg_type, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if length < _NLMSG_HEADER.size or offset + length > len(data):
                log.warning("dropping a truncated netlink message of %d bytes", len(data))
                return
            if msg_type not in (_NLMSG_NOOP, _NLMSG_ERROR, _NLMSG_DONE):
                payload = data[offset + _NLMSG_HEADER.size : offset + length]
                out.append((msg_type, payload.rstrip(b"\x00\n")))
            offset += (length + 3) & ~3

    def read_lines(self, timeout_s: float = 0.0) -> list[bytes]:
        """Records as auditd-less log lines: ``type=1326 audit(...): ...``."""
        return [b"type=%d %s" % (t, payload) for t, payload in self.read(timeout_s)]
