"""The armorflow event schema, version 1: one module, used by every component.

An event is a plain ``dict`` (what orjson reads and writes fastest) that has passed
:func:`validate`. A recording is JSON Lines, one event per line; a Kafka message holds
one event object or a JSON array of events of one kind and one profile.

The field tables below are the single source of truth: ``docs/events.md`` documents
them and a test checks the two agree.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, Annotated, Any, Final, Literal, Union, cast

import msgspec
import orjson

from armorflow.names import InvalidName, check_namespace, check_profile_name

SCHEMA_VERSION: Final = 1

#: Largest encoded event (or recorded line) accepted; anything longer is hostile or broken.
MAX_EVENT_BYTES: Final = 1 << 20

Event = dict[str, Any]

#: Fields every event carries, with their JSON types.
COMMON_FIELDS: Final[dict[str, type]] = {
    "v": int,
    "kind": str,
    "ts": int,
    "node": str,
    "profile": str,
    "namespace": str,
    "pod": str,
    "container": str,
    "container_id": str,
    "pid": int,
    "comm": str,
}

#: Required fields per kind, with their JSON types.
KIND_FIELDS: Final[dict[str, dict[str, type]]] = {
    "exec": {"path": str},
    "file": {"path": str, "perms": str, "owner": bool},
    "syscall": {"name": str},
    "capability": {"name": str},
    "network": {"family": str, "sock_type": str, "protocol": int},
    "signal": {"signal": str, "peer": str, "direction": str},
    "ptrace": {"mode": str, "peer": str},
    "mount": {"op": str, "path": str, "fstype": str},
}

#: Optional fields per kind (type-checked when present).
OPTIONAL_FIELDS: Final[dict[str, dict[str, type]]] = {
    "file": {"old_path": str},
    # The CLONE_NEW* bits of clone/clone3/unshare/setns (armorflow.nsflags); absent when
    # the source could not see them (the model then counts the call as without any).
    "syscall": {"flags": int},
}

KINDS: Final = tuple(KIND_FIELDS)

#: AppArmor file permission letters an event may carry, in AppArmor's rule order.
FILE_PERMS: Final = "rwamlk"
_FILE_PERMS_SET: Final = frozenset(FILE_PERMS)

#: Closed vocabularies of some fields.
ENUMS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("signal", "direction"): frozenset({"send", "receive"}),
    ("ptrace", "mode"): frozenset({"read", "trace", "readby", "tracedby"}),
    ("mount", "op"): frozenset({"mount", "umount", "remount", "pivot_root"}),
}

_NON_EMPTY: Final = frozenset({"profile", "kind"})

#: Per kind, the fields that make up an event's behaviour: two events of one profile
#: with equal values here change a model in the same way, whatever their time, node,
#: pod or pid. The model folds these tuples (see :meth:`BehaviourModel.add_behaviours`).
BEHAVIOUR_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "exec": ("path",),
    "file": ("path", "old_path", "owner", "perms"),
    "syscall": ("name", "flags"),
    "capability": ("name",),
    "network": ("family", "sock_type", "protocol"),
    "signal": ("peer", "direction", "signal"),
    "ptrace": ("peer", "mode"),
    "mount": ("op", "path", "fstype"),
}


class EventError(ValueError):
    """An event that does not follow the schema; says which field and why."""

    def __init__(self, reason: str, *, field: str | None = None, line: int | None = None,
                 code: str = "invalid_event"):
        self.reason = reason
        self.field = field
        self.line = line
        #: A short counter key for stats and metrics (``invalid_profile``, ...).
        self.code = code
        where = f"line {line}: " if line is not None else ""
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}{what}{reason}")

    def at_line(self, line: int) -> EventError:
        return EventError(self.reason, field=self.field, line=line, code=self.code)


def _check_type(obj: Event, name: str, expected: type) -> None:
    value = obj[name]
    # bool is a subclass of int: an int field must not accept true/false, and vice versa.
    if type(value) is not expected:
        if expected is int and type(value) is int:
            return
        raise EventError(f"expected {expected.__name__}, got {type(value).__name__}", field=name)


#: Per kind, every required (field, type) pair: the fast path checks them in one loop.
_REQUIRED: Final[dict[str, tuple[tuple[str, type], ...]]] = {
    kind: tuple({**COMMON_FIELDS, **specific}.items()) for kind, specific in KIND_FIELDS.items()
}
_ENUM_BY_KIND: Final[dict[str, tuple[tuple[str, frozenset[str]], ...]]] = {
    kind: tuple((name, allowed) for (k, name), allowed in ENUMS.items() if k == kind)
    for kind in KIND_FIELDS
}
_HAS_PATH: Final = frozenset(k for k, f in KIND_FIELDS.items() if "path" in f)


def validate(obj: object) -> Event:
    """Return ``obj`` as an :data:`Event` or raise :class:`EventError` naming the field.

    The common case (a valid event) takes one tight loop; anything unusual is handed to
    the field-by-field check, which finds the first problem and says what it is.
    """
    try:
        kind = obj["kind"]  # type: ignore[index]
        for name, expected in _REQUIRED[kind]:
            if type(obj[name]) is not expected:  # type: ignore[index]
                return _validate_slow(obj)
        event: Event = obj  # type: ignore[assignment]
        if event["v"] != SCHEMA_VERSION or not event["profile"] or event["ts"] < 0:
            return _validate_slow(obj)
        check_names(event["profile"], event["namespace"])
        for name, allowed in _ENUM_BY_KIND[kind]:
            if event[name] not in allowed:
                return _validate_slow(obj)
        if kind in _HAS_PATH:
            path = event["path"]
            if not path or "\x00" in path:
                return _validate_slow(obj)
            if kind == "file":
                perms = event["perms"]
                if not perms or not _FILE_PERMS_SET.issuperset(perms):
                    return _validate_slow(obj)
                old = event.get("old_path")
                if old is not None and type(old) is not str:
                    return _validate_slow(obj)
        elif kind == "syscall":
            flags = event.get("flags")
            if flags is not None and (type(flags) is not int or flags < 0):
                return _validate_slow(obj)
        return event
    except (KeyError, TypeError):
        return _validate_slow(obj)


def check_names(profile: str, namespace: str) -> None:
    """The event's profile and (when set) namespace are safe names
    (:mod:`armorflow.names`); else :class:`EventError` with the name's reason."""
    try:
        check_profile_name(profile)
        if namespace:
            check_namespace(namespace)
    except InvalidName as exc:
        field = "namespace" if exc.reason == "invalid_namespace" else "profile"
        raise EventError(str(exc), field=field, code=exc.reason) from None


def _validate_slow(obj: object) -> Event:
    """Field-by-field validation that names what is wrong."""
    if not isinstance(obj, dict):
        raise EventError(f"an event is a JSON object, got {type(obj).__name__}")
    for name, expected in COMMON_FIELDS.items():
        if name not in obj:
            raise EventError("missing", field=name)
        _check_type(obj, name, expected)
    if obj["v"] != SCHEMA_VERSION:
        raise EventError(f"unsupported schema version {obj['v']}", field="v")
    kind = obj["kind"]
    specific = KIND_FIELDS.get(kind)
    if specific is None:
        raise EventError(f"unknown kind {kind!r}", field="kind")
    if not obj["profile"]:
        raise EventError("must not be empty", field="profile")
    check_names(obj["profile"], obj["namespace"])
    if obj["ts"] < 0:
        raise EventError("must be >= 0 (ns since the epoch)", field="ts")
    for name, expected in specific.items():
        if name not in obj:
            raise EventError(f"missing (required for kind {kind!r})", field=name)
        _check_type(obj, name, expected)
    optional = OPTIONAL_FIELDS.get(kind)
    if optional:
        for name, expected in optional.items():
            if name in obj and obj[name] is not None:
                _check_type(obj, name, expected)
    if kind == "syscall" and obj.get("flags") is not None and obj["flags"] < 0:
        raise EventError("must be >= 0 (a flags word)", field="flags")
    if kind == "file":
        perms = obj["perms"]
        if not perms or not _FILE_PERMS_SET.issuperset(perms):
            raise EventError(
                f"{perms!r} is not a non-empty subset of {FILE_PERMS!r}", field="perms"
            )
    for (enum_kind, name), allowed in ENUMS.items():
        if kind == enum_kind and obj[name] not in allowed:
            raise EventError(f"{obj[name]!r} not one of {sorted(allowed)}", field=name)
    if "path" in specific and ("\x00" in obj["path"] or not obj["path"]):
        raise EventError("must be a non-empty path without NUL", field="path")
    return obj


def behaviour_of(event: Event) -> Any:
    """The event's :data:`BEHAVIOUR_FIELDS` values, in order (absent optional ones: None);
    for a kind of one field, that field's value alone (the model folds millions of
    these, and a bare string hashes and compares cheaper than a 1-tuple)."""
    names = BEHAVIOUR_FIELDS[event["kind"]]
    if len(names) == 1:
        return event[names[0]]
    return tuple(event.get(name) for name in names)


# --- the fast path for array messages ----------------------------------------------------
#
# A pipeline worker decodes hundreds of thousands of events a second. orjson + validate()
# costs about 2 us an event; msgspec decodes straight into typed structs and checks the
# types, enums and bounds in C for about a quarter of that. The structs are generated
# from the tables above, so the schema still has one source; anything the fast decoder
# does not accept (a control message, a single object, one bad event among good ones) is
# left to the field-by-field path, which keeps the good events and names the bad one.


def _fast_type(kind: str, name: str, expected: type) -> Any:
    enum = ENUMS.get((kind, name))
    if enum is not None:
        return cast(Any, Literal)[tuple(sorted(enum))]
    if name == "v":
        return Literal[1]  # SCHEMA_VERSION
    if name == "ts":
        return Annotated[int, msgspec.Meta(ge=0)]
    if name in _NON_EMPTY or name == "path":
        return Annotated[str, msgspec.Meta(min_length=1)]
    if name == "perms":
        return Annotated[str, msgspec.Meta(pattern=f"^[{FILE_PERMS}]+$")]
    if name == "flags":
        return Annotated[int, msgspec.Meta(ge=0)]
    return expected


def _event_struct(kind: str) -> type[msgspec.Struct]:
    fields: list[Any] = [
        (name, _fast_type(kind, name, expected))
        for name, expected in {**COMMON_FIELDS, **KIND_FIELDS[kind]}.items()
        if name != "kind"
    ]
    fields += [
        (name, _fast_type(kind, name, expected) | None, None)
        for name, expected in OPTIONAL_FIELDS.get(kind, {}).items()
    ]
    return msgspec.defstruct(
        f"{kind.capitalize()}Event", fields, tag_field="kind", tag=kind, frozen=True, gc=False
    )


#: kind -> the struct the fast decoder makes of an event of that kind.
EVENT_STRUCTS: Final[dict[str, type[msgspec.Struct]]] = {k: _event_struct(k) for k in KINDS}
#: struct type -> kind
STRUCT_KINDS: Final[dict[type[msgspec.Struct], str]] = {t: k for k, t in EVENT_STRUCTS.items()}
#: kind -> function giving a struct's behaviour, as :func:`behaviour_of` does (C speed).
STRUCT_BEHAVIOUR: Final[dict[str, Callable[[Any], Any]]] = {
    kind: attrgetter(*names) for kind, names in BEHAVIOUR_FIELDS.items()
}


def _make_array_decoder() -> msgspec.json.Decoder[list[Any]]:
    union = cast(Any, Union)[tuple(EVENT_STRUCTS.values())]
    return msgspec.json.Decoder(cast(Any, list)[union])


_FAST_DECODER: Final = _make_array_decoder()
_NUL_ESCAPE: Final = b"\\u0000"


def decode_array_fast(value: bytes) -> list[Any] | None:
    """Decode a message holding a JSON array of valid events into structs, or return
    None when the message needs the field-by-field path (see above)."""
    if not value.startswith(b"[") or _NUL_ESCAPE in value or len(value) > MAX_EVENT_BYTES * 64:
        return None
    try:
        return _FAST_DECODER.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def struct_to_event(item: Any) -> Event:
    """A fast-path struct as a schema event (for the rare paths that hold events)."""
    return cast(Event, msgspec.to_builtins(item))


def make_event(kind: str, **fields: Any) -> Event:
    """Build and validate an event; common fields default to empty/zero."""
    event: Event = {
        "v": SCHEMA_VERSION,
        "kind": kind,
        "ts": 0,
        "node": "",
        "profile": "",
        "namespace": "",
        "pod": "",
        "container": "",
        "container_id": "",
        "pid": 0,
        "comm": "",
    }
    event.update(fields)
    return validate(event)


# --- encoding ------------------------------------------------------------------------


def dumps(event: Event) -> bytes:
    return orjson.dumps(event)


def dumps_batch(events: list[Event]) -> bytes:
    """One Kafka message value holding several events (one kind, one profile)."""
    return orjson.dumps(events)


def decode_value(value: bytes) -> list[object]:
    """Decode a Kafka message value: an event object or an array of them.

    Raises :class:`EventError` for undecodable bytes; the items are not validated yet.
    """
    if len(value) > MAX_EVENT_BYTES * 64:
        raise EventError(f"message of {len(value)} bytes is too large")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not valid UTF-8 JSON: {exc}") from None
    if isinstance(decoded, list):
        return decoded
    return [decoded]


def parse_line(line: bytes, lineno: int | None = None) -> Event:
    """Parse and validate one JSON Lines record."""
    if len(line) > MAX_EVENT_BYTES:
        raise EventError(f"line of {len(line)} bytes exceeds {MAX_EVENT_BYTES}", line=lineno)
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not valid UTF-8 JSON: {exc}", line=lineno) from None
    try:
        return validate(obj)
    except EventError as exc:
        raise exc.at_line(lineno) if lineno is not None else exc from None


# --- recordings ------------------------------------------------------------------------


@dataclass
class Rejects:
    """Lines or messages that were skipped, with the reason for each (bounded)."""

    count: int = 0
    samples: list[str] = field(default_factory=list)
    limit: int = 100

    def add(self, error: EventError) -> None:
        self.count += 1
        if len(self.samples) < self.limit:
            self.samples.append(str(error))


def open_recording(path: Path | str, mode: str = "rb") -> IO[bytes]:
    """Open a recording for binary reading or writing; ``.zst`` and ``.gz`` are transparent."""
    p = Path(path)
    if p.suffix == ".zst":
        import zstandard

        if "r" in mode:
            raw = p.open("rb")
            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
        return zstandard.ZstdCompressor(level=6).stream_writer(p.open("wb"), closefd=True)
    if p.suffix == ".gz":
        return cast(IO[bytes], gzip.GzipFile(p, "rb" if "r" in mode else "wb"))
    return p.open(mode)


def _bounded_lines(stream: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, too_long) without ever holding more than MAX_EVENT_BYTES of one line."""
    while True:
        line = stream.readline(MAX_EVENT_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_EVENT_BYTES and not line.endswith(b"\n"):
            # Drain the rest of the oversize line in bounded chunks.
            while True:
                rest = stream.readline(MAX_EVENT_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line, True
        else:
            yield line, False


def read_events(source: Path | str | IO[bytes], rejects: Rejects | None = None) -> Iterator[Event]:
    """Yield the valid events of a JSON Lines recording; bad lines go to ``rejects``.

    Without ``rejects`` the first bad line raises :class:`EventError`.
    """
    stream = open_recording(source) if isinstance(source, (str, Path)) else source
    try:
        for lineno, (line, too_long) in enumerate(_bounded_lines(stream), start=1):
            if too_long:
                err = EventError(f"line exceeds {MAX_EVENT_BYTES} bytes", line=lineno)
            else:
                stripped = line.strip()
                if not stripped:
                    continue
                try:
                    yield parse_line(stripped, lineno)
                    continue
                except EventError as exc:
                    err = exc
            if rejects is None:
                raise err
            rejects.add(err)
    finally:
        if isinstance(source, (str, Path)):
            stream.close()


def write_events(sink: IO[bytes], events: Iterable[Event]) -> int:
    """Write events as JSON Lines; returns how many were written."""
    n = 0
    for event in events:
        sink.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        n += 1
    return n
