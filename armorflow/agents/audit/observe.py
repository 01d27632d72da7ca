"""Turn AppArmor and Seccomp audit records into observations: one behaviour each.

An :class:`Observation` is an event without its container attribution: the kind, the
kind's fields, time, pid, comm and the AppArmor label the kernel saw (which names the
profile under modeling for AppArmor records). :func:`Observation.to_event` completes it
into a schema v1 event once attribution knows the profile and the container.

Verdicts. In BehaviorModeling mode the target profiles run in complain mode, so what the
workload does shows up as ``apparmor="ALLOWED"`` (or ``"AUDIT"`` for audit rules) and as
seccomp ``SCMP_ACT_LOG`` records. ``DENIED`` AppArmor records and seccomp records of a
killing/erroring action come from enforcing profiles: the behaviour was refused, so it is
evidence for violation auditing, not for the model. They are parsed and counted, and
turned into events only when the caller asks for them (``include_denied``).
"""

from __future__ import annotations

import signal as signal_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from armorflow.agents.audit.records import AuditFormatError, AuditRecord, int_field, text_field
from armorflow.events import Event, make_event
from armorflow.render.vocab import CAPABILITIES

Verdict = Literal["allowed", "audit", "denied"]
#: Where an observation came from: "apparmor" and "seccomp" records here, "bpf" for the
#: tracer's events when it hands them over as observations.
SourceName = str

#: AUDIT_ARCH_* values of the record's ``arch`` field that armorflow names syscalls for.
AUDIT_ARCHES: Final[dict[int, str]] = {0xC000003E: "x86_64", 0x40000003: "i386"}

#: Seccomp return actions (``code & 0xffff0000``) that let the syscall run.
_SECCOMP_LOG: Final = 0x7FFC0000
_SECCOMP_ALLOW: Final = 0x7FFF0000

_CAPABILITY_SET: Final = frozenset(CAPABILITIES)

#: AppArmor request-mask letters to schema file permissions; create and delete need
#: write access in an AppArmor rule (the kernel already prints chmod, chown and setattr
#: as ``w``), exec (``x``) is an exec event of its own.
_FILE_LETTERS: Final = {"r": "r", "w": "w", "c": "w", "d": "w", "a": "a", "m": "m",
                        "l": "l", "k": "k"}
_SCHEMA_PERM_ORDER: Final = "rwamlk"

_PROTOCOL_NAMES: Final = {"ip": 0, "icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}

_NETWORK_OPS: Final = frozenset({
    "create", "socket_create", "post_create", "bind", "connect", "listen", "accept",
    "sendmsg", "recvmsg", "getsockname", "getpeername", "getsockopt", "setsockopt",
    "shutdown", "socket_shutdown", "file_perm", "file_inherit", "file_receive",
})
_MOUNT_OPS: Final = {"mount": "mount", "umount": "umount", "remount": "remount",
                     "pivotroot": "pivot_root", "pivot_root": "pivot_root"}
_PTRACE_MODES: Final = frozenset({"read", "trace", "readby", "tracedby"})
_SIGNAL_DIRECTIONS: Final = frozenset({"send", "receive"})
_APPARMOR_VERDICTS: Final[dict[str, Verdict]] = {
    "ALLOWED": "allowed", "AUDIT": "audit", "DENIED": "denied", "KILL": "denied",
}
_APPARMOR_TYPE_VERDICTS: Final[dict[int, Verdict]] = {1501: "audit", 1502: "allowed",
                                                       1503: "denied", 1507: "denied"}


class Ignored(Exception):
    """A well-formed record that carries no behaviour armorflow models; says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Observation:
    """One behaviour seen in an audit record, before container attribution."""

    kind: str
    fields: dict[str, Any]
    ts: int
    pid: int
    comm: str
    #: The top profile of the AppArmor label (``NAME//null-...`` -> ``NAME``), if any.
    label: str | None
    source: SourceName
    verdict: Verdict
    audit_id: str

    def to_event(self, profile: str, **common: Any) -> Event:
        """The schema event; ``common`` sets node, namespace, pod, container, container_id."""
        return make_event(
            self.kind, ts=self.ts, pid=self.pid, comm=self.comm, profile=profile,
            **common, **self.fields,
        )


def top_profile(label: str | None) -> str | None:
    """The profile a label belongs to: mode suffix, hats and null children removed.

    ``varmor-demo-4//null-/bin/ping`` -> ``varmor-demo-4``; ``NAME (complain)`` -> ``NAME``;
    ``unconfined``, ``?`` and SELinux contexts (``system_u:system_r:spc_t:s0``) -> None.
    """
    if not label:
        return None
    label = label.lstrip("=").strip()
    for mode in (" (complain)", " (enforce)", " (kill)", " (unconfined)", " (prompt)"):
        label = label.removesuffix(mode)
    top = label.split("//", 1)[0].strip()
    if not top or top in ("unconfined", "?", "kernel_t"):
        return None
    parts = top.split(":")
    if len(parts) >= 3 and parts[0].endswith("_u") and parts[1].endswith("_r"):
        return None  # an SELinux context, not an AppArmor profile
    return top


def _signal_name(raw: str) -> str:
    if raw.isdigit():
        try:
            return signal_module.Signals(int(raw)).name
        except ValueError:
            return f"SIG{raw}"
    name = raw.upper()
    return name if name.startswith("SIG") else f"SIG{name}"


def _file_perms(mask: str) -> str:
    letters = {_FILE_LETTERS[ch] for ch in mask if ch in _FILE_LETTERS}
    return "".join(ch for ch in _SCHEMA_PERM_ORDER if ch in letters)


def _require_int(record: AuditRecord, key: str) -> int:
    value = int_field(record, key)
    if value is None:
        raise AuditFormatError(f"missing field {key!r}")
    return value


def _protocol(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if raw.isdigit():
        return int(raw)
    number = _PROTOCOL_NAMES.get(raw.lower())
    if number is None:
        raise Ignored(f"unknown protocol {raw!r}")
    return number


def _apparmor_kind(record: AuditRecord, operation: str) -> tuple[str, dict[str, Any]]:
    mask = record.fields.get("requested_mask") or record.fields.get("denied_mask") or ""
    mask = mask.replace(":", "")
    family = record.fields.get("family")
    if family is not None and operation in _NETWORK_OPS:
        sock_type = record.fields.get("sock_type")
        if not sock_type or sock_type.startswith("unknown"):
            raise Ignored(f"network record without a known sock_type ({sock_type!r})")
        return "network", {"family": family, "sock_type": sock_type,
                           "protocol": _protocol(record.fields.get("protocol"))}
    if operation == "capable":
        name = text_field(record, "capname")
        if name is None:
            number = int_field(record, "capability")
            name = CAPABILITIES[number] if number is not None and 0 <= number < len(
                CAPABILITIES) else text_field(record, "name")
        if name is None or name not in _CAPABILITY_SET:
            raise Ignored(f"capability record without a known capability ({name!r})")
        return "capability", {"name": name}
    if operation == "exec":
        path = text_field(record, "name")
        if not path:
            raise Ignored("exec record without a name")
        return "exec", {"path": path}
    if operation == "signal":
        raw_signal = record.fields.get("signal")
        direction = mask if mask in _SIGNAL_DIRECTIONS else None
        if not raw_signal or direction is None:
            raise Ignored("signal record without signal or send/receive mask")
        peer = top_profile(text_field(record, "peer")) or "unconfined"
        return "signal", {"signal": _signal_name(raw_signal), "peer": peer,
                          "direction": direction}
    if operation == "ptrace":
        if mask not in _PTRACE_MODES:
            raise Ignored(f"ptrace record without a known mode ({mask!r})")
        peer = top_profile(text_field(record, "peer")) or "unconfined"
        return "ptrace", {"mode": mask, "peer": peer}
    if operation in _MOUNT_OPS:
        op = _MOUNT_OPS[operation]
        flags = record.fields.get("flags", "")
        if op == "mount" and "remount" in flags:
            op = "remount"
        path = text_field(record, "name")
        if not path:
            raise Ignored(f"{operation} record without a mount point")
        return "mount", {"op": op, "path": path, "fstype": text_field(record, "fstype") or ""}
    klass = record.fields.get("class")
    name = text_field(record, "name")
    if name and mask and klass in (None, "file") and family is None:
        perms = _file_perms(mask)
        if not perms:
            raise Ignored(f"file {operation} record without file permissions ({mask!r})")
        fields: dict[str, Any] = {"path": name, "perms": perms, "owner": False}
        fsuid, ouid = int_field(record, "fsuid"), int_field(record, "ouid")
        fields["owner"] = fsuid is not None and fsuid == ouid
        # A hard link's rule names its target (``link NEW -> TARGET``). A rename is two
        # records, rename_src and rename_dest, each a plain rule on its own name, and a
        # symlink's target is text AppArmor never checks. Directories come with the
        # trailing "/" AppArmor puts in ``name`` (``mkdir``, ``rmdir``, ``open`` of one).
        target = text_field(record, "target")
        if target and operation == "link" and "l" in perms:
            fields["old_path"] = target
        return "file", fields
    raise Ignored(f"unsupported AppArmor operation {operation!r}")


def observe_apparmor(record: AuditRecord) -> Observation:
    raw_verdict = record.fields.get("apparmor")
    verdict: Verdict | None
    if raw_verdict is not None:
        verdict = _APPARMOR_VERDICTS.get(raw_verdict)
    else:
        verdict = _APPARMOR_TYPE_VERDICTS.get(record.type_number or 0)
    if verdict is None:
        raise Ignored(f"AppArmor {raw_verdict or record.type_name} record")
    operation = record.fields.get("operation")
    if not operation:
        raise Ignored("AppArmor record without an operation")
    label = top_profile(text_field(record, "profile") or text_field(record, "label"))
    if label is None:
        raise Ignored("AppArmor record without a profile")
    pid = _require_int(record, "pid")
    kind, fields = _apparmor_kind(record, operation)
    return Observation(kind, fields, record.ts_ns, pid, text_field(record, "comm") or "",
                       label, "apparmor", verdict, record.audit_id)


SyscallNamer = Callable[[int, str], str | None]


def default_syscall_namer(number: int, arch: str) -> str | None:
    from armorflow.agents.syscalls import syscall_name

    try:
        return syscall_name(number, arch)
    except (KeyError, ValueError):
        return None


def observe_seccomp(
    record: AuditRecord, namer: SyscallNamer = default_syscall_namer
) -> Observation:
    # The kernel writes these in every SECCOMP record; a line without them was edited.
    for key in ("uid", "gid", "pid", "code"):
        if key not in record.fields:
            raise AuditFormatError(f"SECCOMP record without {key!r}")
    for key in ("uid", "gid", "auid", "ses", "sig", "pid", "syscall"):
        int_field(record, key)
    pid = _require_int(record, "pid")
    number = _require_int(record, "syscall")
    arch_value = int_field(record, "arch", base=16)
    code = int_field(record, "code", base=16)
    if arch_value is None or code is None:
        raise AuditFormatError("SECCOMP record without arch or code")
    action = code & 0xFFFF0000
    verdict: Verdict = "allowed" if action in (_SECCOMP_LOG, _SECCOMP_ALLOW) else "denied"
    arch = AUDIT_ARCHES.get(arch_value)
    name = namer(number, arch) if arch is not None else None
    if name is None:
        # auditd's ENRICHED SYSCALL= is a usable fallback, except its unknown-syscall(N).
        enriched = record.enriched.get("SYSCALL", "")
        if enriched and not enriched.startswith("unknown-syscall"):
            name = enriched
    if name is None:
        raise Ignored(f"no name for syscall {number} on arch {arch_value:#x}")
    return Observation("syscall", {"name": name}, record.ts_ns, pid,
                       text_field(record, "comm") or "", top_profile(record.fields.get("subj")),
                       "seccomp", verdict, record.audit_id)


def observe(record: AuditRecord, namer: SyscallNamer = default_syscall_namer) -> Observation:
    """The behaviour in one record; raises :class:`Ignored` or :class:`AuditFormatError`."""
    if record.type_name == "SECCOMP" or record.type_number == 1326:
        return observe_seccomp(record, namer)
    if "apparmor" in record.fields or (record.type_number or 0) in _APPARMOR_TYPE_VERDICTS:
        return observe_apparmor(record)
    raise Ignored(f"{record.type_name} record")
