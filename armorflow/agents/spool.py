"""A crash-safe, bounded, append-only on-disk queue of Kafka messages.

The publisher parks messages here while the broker is unreachable and re-sends them in
order when it returns; an agent restart finds them again.

Layout of the spool directory:

* ``NNNNNNNNNNNNNNNN.seg``: segment files, appended in order. Each record is framed as
  ``<u32 payload length><u32 CRC-32 of payload><payload>``, the payload being
  ``<u32 event count><u16 topic length><u32 key length><topic><key><value>``.
* ``cursor``: the read position (segment number, byte offset) of the first record not yet
  acknowledged, replaced atomically.

A crash can leave a torn record at the end of the newest segment: opening the spool
truncates it at the last whole record (those bytes were never acknowledged to anyone, as
:meth:`Spool.sync` had not returned). A CRC mismatch inside an older segment cannot be
resynchronised (the length itself is suspect), so the rest of that segment is counted as
corrupt and skipped, loudly. Whole segments are deleted once fully acknowledged.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

import orjson

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]

_FRAME: Final = struct.Struct("<II")
_PAYLOAD_HEAD: Final = struct.Struct("<IHI")
#: Upper bound of one record; larger lengths in a frame mean corruption.
MAX_RECORD_BYTES: Final = 64 << 20
DEFAULT_MAX_BYTES: Final = 1 << 30
DEFAULT_SEGMENT_BYTES: Final = 64 << 20


class SpoolFull(RuntimeError):
    """The spool reached its size bound: the broker has been away too long."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    key: bytes
    value: bytes
    #: Events inside the message (for accounting; a batch message holds several).
    count: int


@dataclass(frozen=True, slots=True, order=True)
class SpoolCursor:
    """Position just after a record: acknowledging it frees everything before."""

    segment: int
    offset: int


def _encode(record: SpoolRecord) -> bytes:
    topic = record.topic.encode()
    payload = b"".join((_PAYLOAD_HEAD.pack(record.count, len(topic), len(record.key)),
                        topic, record.key, record.value))
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> SpoolRecord:
    count, topic_len, key_len = _PAYLOAD_HEAD.unpack_from(payload)
    start = _PAYLOAD_HEAD.size
    topic = payload[start : start + topic_len].decode()
    key = payload[start + topic_len : start + topic_len + key_len]
    value = payload[start + topic_len + key_len :]
    return SpoolRecord(topic, key, value, count)


def _read_record(f: IO[bytes]) -> tuple[SpoolRecord | None, str]:
    """The next record, or (None, why) at the end ("" ) or on damage ("torn"/"corrupt")."""
    head = f.read(_FRAME.size)
    if not head:
        return None, ""
    if len(head) < _FRAME.size:
        return None, "torn"
    length, crc = _FRAME.unpack(head)
    if length > MAX_RECORD_BYTES or length < _PAYLOAD_HEAD.size:
        return None, "corrupt"
    payload = f.read(length)
    if len(payload) < length:
        return None, "torn"
    if zlib.crc32(payload) != crc:
        return None, "corrupt"
    return _decode(payload), ""


class Spool:
    """Append at the tail, read and acknowledge at the head; survives crashes."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: FsyncPolicy = "batch",
    ):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.corrupt_records = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._cursor_path = directory / "cursor"
        self._head = self._load_cursor()
        self._segments = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
        # Segments wholly before the cursor were acknowledged but not yet deleted.
        for seg in [s for s in self._segments if s < self._head.segment]:
            self._delete_segment(seg)
        if not self._segments:
            self._segments = [max(self._head.segment, 0)]
            self._segment_path(self._segments[0]).touch()
        if self._head.segment < self._segments[0]:
            self._head = SpoolCursor(self._segments[0], 0)
        self._repair_tail()
        self._tail = self._segment_path(self._segments[-1]).open("ab")
        self._dirty = False
        self._pending_records = self._count_pending()

    # --- files ------------------------------------------------------------------------

    def _segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}.seg"

    def _delete_segment(self, segment: int) -> None:
        self._segment_path(segment).unlink(missing_ok=True)
        if segment in self._segments:
            self._segments.remove(segment)

    def _load_cursor(self) -> SpoolCursor:
        try:
            raw = orjson.loads(self._cursor_path.read_bytes())
            return SpoolCursor(int(raw["segment"]), int(raw["offset"]))
        except FileNotFoundError:
            return SpoolCursor(0, 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # Re-sending from the oldest segment repeats; it never loses.
            log.error("spool cursor %s unreadable (%s): re-sending from the oldest segment",
                      self._cursor_path, exc)
            return SpoolCursor(0, 0)

    def _save_cursor(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps({"segment": self._head.segment, "offset": self._head.offset}))
            f.flush()
            if self.fsync != "never":
                os.fsync(f.fileno())
        os.replace(tmp, self._cursor_path)

    def _repair_tail(self) -> None:
        """Cut a torn or corrupt record off the end of the newest segment."""
        path = self._segment_path(self._segments[-1])
        good = 0
        with path.open("rb") as f:
            while True:
                record, damage = _read_record(f)
                if record is None:
                    if damage:
                        log.warning("spool %s: cutting a %s record at offset %d (crash residue)",
                                    path, damage, good)
                        self.corrupt_records += damage == "corrupt"
                    break
                good = f.tell()
        if good != path.stat().st_size:
            with path.open("r+b") as f:
                f.truncate(good)

    def _count_pending(self) -> int:
        return sum(1 for _ in self._iter_from(self._head))

    # --- size ---------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in segments (acknowledged bytes of the head segment included)."""
        total = 0
        for seg in self._segments:
            try:
                total += self._segment_path(seg).stat().st_size
            except FileNotFoundError:
                continue
        return total

    def __len__(self) -> int:
        """Records not yet acknowledged."""
        return self._pending_records

    # --- writing ------------------------------------------------------------------------

    def append(self, record: SpoolRecord) -> None:
        """Add a record at the tail; raises :class:`SpoolFull` beyond ``max_bytes``."""
        frame = _encode(record)
        size = self.size_bytes
        if size + len(frame) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full ({size} of {self.max_bytes} bytes): the broker "
                f"has been unreachable too long; raise the spool bound or restore the broker"
            )
        if self._tail.tell() >= self.segment_bytes:
            self._roll()
        self._tail.write(frame)
        self._pending_records += 1
        self._dirty = True
        if self.fsync == "always":
            self.sync()

    def _roll(self) -> None:
        self.sync()
        self._tail.close()
        new = self._segments[-1] + 1
        self._segments.append(new)
        self._tail = self._segment_path(new).open("ab")

    def sync(self) -> None:
        """Make appended records durable (a no-op under the ``never`` policy)."""
        if not self._dirty:
            return
        self._tail.flush()
        if self.fsync != "never":
            os.fsync(self._tail.fileno())
        self._dirty = False

    # --- reading ------------------------------------------------------------------------

    def _iter_from(self, start: SpoolCursor) -> list[tuple[SpoolRecord, SpoolCursor]]:
        return self.peek(1 << 62, start=start)

    def peek(
        self, max_records: int, max_bytes: int = 1 << 62, start: SpoolCursor | None = None
    ) -> list[tuple[SpoolRecord, SpoolCursor]]:
        """Up to ``max_records`` oldest unacknowledged records, each with its end cursor."""
        self._tail.flush()
        cursor = start or self._head
        out: list[tuple[SpoolRecord, SpoolCursor]] = []
        taken = 0
        for seg in self._segments:
            if seg < cursor.segment:
                continue
            offset = cursor.offset if seg == cursor.segment else 0
            with self._segment_path(seg).open("rb") as f:
                f.seek(offset)
                while len(out) < max_records and taken < max_bytes:
                    record, damage = _read_record(f)
                    if record is None:
                        if damage == "corrupt" and seg != self._segments[-1]:
                            self.corrupt_records += 1
                            log.error("spool segment %s is corrupt after offset %d: skipping "
                                      "the rest of it", self._segment_path(seg), f.tell())
                        break
                    out.append((record, SpoolCursor(seg, f.tell())))
                    taken += len(record.value)
            if len(out) >= max_records or taken >= max_bytes:
                break
        return out

    def ack(self, through: SpoolCursor, records: int) -> None:
        """Forget everything up to ``through`` (``records`` of them); frees whole segments."""
        if through <= self._head:
            return
        self._head = through
        self._pending_records = max(0, self._pending_records - records)
        self._save_cursor()
        for seg in [s for s in self._segments if s < through.segment]:
            self._delete_segment(seg)
        if self._pending_records == 0 and self._segments[-1] == through.segment:
            # Everything sent: start a fresh segment so the disk space is returned.
            self._roll()
            self._head = SpoolCursor(self._segments[-1], 0)
            self._save_cursor()
            self._delete_segment(through.segment)

    def close(self) -> None:
        self.sync()
        self._tail.close()
