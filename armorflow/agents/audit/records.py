"""Split one audit log line into a typed record: header (type, time, serial) and fields.

Accepted spellings of the same kernel record (the prefix before ``type=`` is ignored):

* auditd's log: ``type=AVC msg=audit(1704362546.390:8945691): apparmor="ALLOWED" ...``
  optionally ``node=host`` first and, in the ENRICHED format, interpreted fields after a
  ``\\x1d`` byte (``ARCH=x86_64 SYSCALL=openat AUID="unset"``);
* syslog / kern.log / dmesg: ``<5>Jan 15 16:27:18 host kernel: [123.4][ T55] audit:
  type=1326 audit(1705307237.424:9332888): ...``;
* what the netlink reader hands over: ``type=1326 audit(...): ...`` (also ``type=SECCOMP(1326)``).

Values come quoted (``name="/etc/passwd"``), bare (``pid=42``) or, for strings the kernel
considers unsafe (spaces, quotes, control bytes), as unquoted upper-case hex
(``name=2F746D702F6120622E747874``); :func:`text_field` decodes the latter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

#: Longest line accepted; the kernel caps one record at 8970 bytes, auditd adds a little.
MAX_LINE_BYTES: Final = 64 * 1024

#: The enrichment separator auditd writes before its interpreted fields.
ENRICHED_SEPARATOR: Final = "\x1d"

_HEADER: Final = re.compile(
    r"type=(?P<type>[A-Za-z0-9_]+(?:\[\d+\])?)(?:\((?P<num>\d+)\))?\s+"
    r"(?:msg=)?audit\((?P<sec>\d+)\.(?P<ms>\d+):(?P<serial>\d+)\):?\s?"
)
# Kernels before 2.6.24 wrote the type after the header: ``audit(1.2:3): type=1503 ...``.
_OLD_HEADER: Final = re.compile(
    r"audit\((?P<sec>\d+)\.(?P<ms>\d+):(?P<serial>\d+)\):\s*type=(?P<type>\d+)(?P<num>)\s+"
)
_TOKEN: Final = re.compile(
    r"(?P<sep>\x1d)"
    r"|(?P<key>[A-Za-z0-9_\-.]+)=(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<open>[\"'])"
    r"|(?P<bare>[^\s\x1d]*))"
    r"|(?P<word>[^\s\x1d]+)"
)
# An ENRICHED field glued to the previous value when a copy lost the \x1d byte, as in
# ``code=0x7ffc0000AUID="unset"``: an upper-case key right after a lower-case/digit value.
_GLUED_ENRICHED: Final = re.compile(r"(?<=[a-z0-9\"])(?=[A-Z][A-Z0-9_]+=)")
_HEX: Final = re.compile(r"(?:[0-9A-F]{2})+")

#: Record type names auditd prints for the numbers the kernel sends.
TYPE_NAMES: Final[dict[int, str]] = {
    1300: "SYSCALL",
    1326: "SECCOMP",
    1400: "AVC",
    1500: "APPARMOR",
    1501: "APPARMOR_AUDIT",
    1502: "APPARMOR_ALLOWED",
    1503: "APPARMOR_DENIED",
    1504: "APPARMOR_HINT",
    1505: "APPARMOR_STATUS",
    1506: "APPARMOR_ERROR",
    1507: "APPARMOR_KILL",
}
_TYPE_NUMBERS: Final = {name: number for number, name in TYPE_NAMES.items()}


class AuditFormatError(ValueError):
    """A line that looks like an audit record but cannot be read as one."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One kernel audit record, fields as strings exactly as logged (quotes removed)."""

    type_name: str
    type_number: int | None
    seconds: int
    millis: int
    serial: int
    fields: dict[str, str]
    #: Fields auditd added in the ENRICHED format (upper-case keys), kept apart.
    enriched: dict[str, str] = field(default_factory=dict)
    #: Names of fields whose value was written without quotes (candidates for hex).
    bare: frozenset[str] = frozenset()

    @property
    def ts_ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.millis * 1_000_000

    @property
    def audit_id(self) -> str:
        return f"{self.seconds}.{self.millis:03d}:{self.serial}"


def _type_of(raw: str, num: str | None) -> tuple[str, int | None]:
    if num is not None:
        return raw, int(num)
    if raw.isdigit():
        number = int(raw)
        return TYPE_NAMES.get(number, raw), number
    match = re.fullmatch(r"UNKNOWN\[(\d+)\]", raw)
    if match:
        number = int(match.group(1))
        return TYPE_NAMES.get(number, raw), number
    return raw, _TYPE_NUMBERS.get(raw)


def tokenize(payload: str) -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """Split ``k=v k="v w" ...`` into (kernel fields, enriched fields, bare-valued keys).

    A word without ``=`` continues the previous bare value (``subj=label (complain)``); an
    unterminated quote is a format error. A repeated key keeps its first value: the kernel
    writes each key once, and a second copy is an appended or forged suffix.
    """
    fields: dict[str, str] = {}
    enriched: dict[str, str] = {}
    bare: set[str] = set()
    target = fields
    last_key: str | None = None
    pos = 0
    while True:
        m = _TOKEN.search(payload, pos)
        if m is None:
            break
        pos = m.end()
        if m.group("sep") is not None:
            target, last_key = enriched, None
            continue
        key = m.group("key")
        if key is None:
            if last_key is not None:
                target[last_key] = f"{target[last_key]} {m.group('word')}"
            continue
        if m.group("open") is not None:
            raise AuditFormatError(f"unterminated quote in the value of {key!r}")
        if target is fields and len(key) > 1 and key.isupper():
            # Kernel keys are lower case: an upper-case key starts the ENRICHED part even
            # when a copy of the log turned the \x1d separator into a space or dropped it.
            target, last_key = enriched, None
        quoted = m.group("dq") if m.group("dq") is not None else m.group("sq")
        if quoted is not None:
            value, is_bare = quoted, False
        else:
            value, is_bare = m.group("bare"), True
            glued = _GLUED_ENRICHED.search(value) if target is fields else None
            if glued is not None:
                # ``code=0x7ffc0000AUID="unset"``: cut the value, read the rest as enriched.
                value = value[: glued.start()]
                pos = m.start("bare") + glued.start()
                if key not in fields:
                    fields[key] = value
                    bare.add(key)
                target, last_key = enriched, None
                continue
        if key in target:
            last_key = None
            continue
        target[key] = value
        if is_bare and target is fields:
            bare.add(key)
        last_key = key if is_bare else None
    return fields, enriched, frozenset(bare)


def parse_record(line: str) -> AuditRecord | None:
    """Parse one log line; ``None`` when it holds no audit record at all.

    Raises :class:`AuditFormatError` when the line claims to be an audit record
    (``type=`` … ``audit(``) but its header or fields cannot be read.
    """
    if len(line) > MAX_LINE_BYTES:
        raise AuditFormatError(f"line of {len(line)} characters exceeds {MAX_LINE_BYTES}")
    header = _HEADER.search(line) or _OLD_HEADER.search(line)
    if header is None:
        if "type=" in line and "audit(" in line:
            raise AuditFormatError("unreadable audit header (expected audit(SECONDS.MS:SERIAL))")
        return None
    if len(header.group("ms")) != 3:
        raise AuditFormatError(f"timestamp fraction {header.group('ms')!r} is not milliseconds")
    type_name, type_number = _type_of(header.group("type"), header.group("num") or None)
    fields, enriched, bare = tokenize(line[header.end() :].rstrip("\r\n\x00"))
    return AuditRecord(
        type_name=type_name,
        type_number=type_number,
        seconds=int(header.group("sec")),
        millis=int(header.group("ms")),
        serial=int(header.group("serial")),
        fields=fields,
        enriched=enriched,
        bare=bare,
    )


def text_field(record: AuditRecord, key: str) -> str | None:
    """A string field, hex-decoded when the kernel logged it as bare hex.

    ``(null)`` and ``?`` mean "no value". Bytes that are not UTF-8 are kept visible as
    ``\\xNN`` escapes rather than dropped, so two different names never merge.
    """
    value = record.fields.get(key)
    if value is None or value in ("(null)", "?"):
        return None
    if key in record.bare and len(value) >= 2 and _HEX.fullmatch(value):
        raw = bytes.fromhex(value)
        if b"\x00" in raw:
            raise AuditFormatError(f"hex value of {key!r} holds a NUL byte")
        return raw.decode("utf-8", errors="backslashreplace")
    return value


def int_field(record: AuditRecord, key: str, *, base: int = 10) -> int | None:
    """An integer field; raises :class:`AuditFormatError` when present but not a number."""
    value = record.fields.get(key)
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        raise AuditFormatError(f"field {key!r}={value!r} is not a number") from None
