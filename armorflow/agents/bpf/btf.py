"""Struct member offsets from the running kernel's BTF (``/sys/kernel/btf/vmlinux``).

The BPF programs are compiled against a kernel header tree that does not match the
running kernel, so every ``struct`` field they read is addressed by an offset taken here
and passed to the compiler as a define. Only what that needs is parsed: the type
section's structs and unions, their members, and the string section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

VMLINUX_BTF: Final = Path("/sys/kernel/btf/vmlinux")

_MAGIC: Final = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")

# BTF kinds (include/uapi/linux/btf.h) and how many bytes follow each type record.
_KIND_INT, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 3, 4, 5, 6
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_ENUM64 = 13, 14, 15, 17, 19
_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 8, 9, 10, 11, 18
_MODIFIERS: Final = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})


class BtfError(RuntimeError):
    """The BTF blob is unreadable, or a struct or member the tracer needs is absent."""


@dataclass(frozen=True)
class _Type:
    kind: int
    name_off: int
    vlen: int
    kind_flag: bool
    size_or_type: int
    body: int  # byte offset of the trailing records in the type section


def _trailing_size(kind: int, vlen: int) -> int:
    if kind in (_KIND_INT, _KIND_VAR, _KIND_DECL_TAG):
        return 4
    if kind == _KIND_ARRAY:
        return 12
    if kind in (_KIND_STRUCT, _KIND_UNION, _KIND_DATASEC, _KIND_ENUM64):
        return 12 * vlen
    if kind in (_KIND_ENUM, _KIND_FUNC_PROTO):
        return 8 * vlen
    return 0


class Btf:
    """A parsed BTF blob: look up ``struct.member`` byte offsets by name."""

    def __init__(self, blob: bytes):
        if len(blob) < _HEADER.size:
            raise BtfError("BTF blob shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(blob)
        )
        if magic != _MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        self._types_raw = blob[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        self._types: list[_Type | None] = [None]  # type id 0 is void
        self._composites: dict[str, int] = {}
        self._parse()

    @classmethod
    def from_file(cls, path: Path = VMLINUX_BTF) -> Btf:
        try:
            return cls(path.read_bytes())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc} (kernel built without BTF?)") from exc

    def _parse(self) -> None:
        raw = self._types_raw
        pos = 0
        end = len(raw)
        while pos < end:
            name_off, info, size_or_type = _TYPE.unpack_from(raw, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            body = pos + _TYPE.size
            self._types.append(
                _Type(kind, name_off, vlen, bool(info >> 31), size_or_type, body)
            )
            if kind in (_KIND_STRUCT, _KIND_UNION) and name_off:
                # The first definition wins; later ones are the same type from modules.
                self._composites.setdefault(self._string(name_off), len(self._types) - 1)
            pos = body + _trailing_size(kind, vlen)

    def _string(self, offset: int) -> str:
        stop = self._strings.index(b"\0", offset)
        return self._strings[offset:stop].decode()

    def _resolve(self, type_id: int) -> _Type | None:
        """Skip typedefs and qualifiers."""
        t = self._types[type_id]
        while t is not None and t.kind in _MODIFIERS:
            t = self._types[t.size_or_type]
        return t

    def _find_member(self, composite: _Type, member: str) -> int | None:
        """Bit offset of ``member`` in ``composite``, looking into anonymous members."""
        for i in range(composite.vlen):
            record = composite.body + 12 * i
            name_off, type_id, offset = _MEMBER.unpack_from(self._types_raw, record)
            bits = int(offset & 0xFFFFFF if composite.kind_flag else offset)
            if name_off and self._string(name_off) == member:
                return bits
            if not name_off:
                inner = self._resolve(type_id)
                if inner is not None and inner.kind in (_KIND_STRUCT, _KIND_UNION):
                    found = self._find_member(inner, member)
                    if found is not None:
                        return bits + found
        return None

    def struct_size(self, name: str) -> int:
        type_id = self._composites.get(name)
        if type_id is None:
            raise BtfError(f"struct {name} not in the kernel's BTF")
        t = self._types[type_id]
        assert t is not None
        return t.size_or_type

    def offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of ``member_path`` (``a`` or ``a.b.c``) inside ``struct struct_name``."""
        type_id = self._composites.get(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} not in the kernel's BTF")
        current = self._types[type_id]
        total_bits = 0
        for part in member_path.split("."):
            if current is None or current.kind not in (_KIND_STRUCT, _KIND_UNION):
                raise BtfError(f"{struct_name}.{member_path}: {part!r} is not inside a struct")
            bits = self._find_member(current, part)
            if bits is None:
                raise BtfError(f"struct {struct_name} has no member {member_path!r}")
            total_bits += bits
            current = self._member_type(current, part)
        if total_bits % 8:
            raise BtfError(f"{struct_name}.{member_path} is a bit field")
        return total_bits // 8

    def _member_type(self, composite: _Type, member: str) -> _Type | None:
        for i in range(composite.vlen):
            name_off, type_id, _ = _MEMBER.unpack_from(self._types_raw, composite.body + 12 * i)
            if name_off and self._string(name_off) == member:
                return self._resolve(type_id)
            if not name_off:
                inner = self._resolve(type_id)
                if inner is not None and inner.kind in (_KIND_STRUCT, _KIND_UNION):
                    found = self._member_type(inner, member)
                    if found is not None:
                        return found
        return None
