"""A crash-safe, bounded, append-only on-disk queue of Kafka messages.

The publisher parks messages here while the broker is unreachable and re-sends them in
order when it returns; an agent restart finds them again.

Layout of the spool directory:

* ``NNNNNNNNNNNNNNNN.seg``: segment files, appended in order. A segment starts with the
  8-byte header :data:`SEGMENT_HEADER`; each record is framed as
  ``<4-byte FRAME_MAGIC><u32 payload length><u32 CRC-32 of length and payload><payload>``,
  the payload being ``<u32 event count><u16 topic length><u32 key length><topic><key><value>``.
* ``cursor``: the read position (segment number, byte offset) of the first record not yet
  acknowledged, replaced atomically.

Damage is confined to the record it hits. A frame whose magic, length or CRC is wrong is
skipped, counted (:attr:`Spool.corrupt_records`) and logged once, and reading resumes at
the next offset where a whole valid frame starts. A crash can leave a torn frame at the
end of the newest segment: opening the spool cuts it off (those bytes were never reported
durable, as :meth:`Spool.sync` had not returned). A cursor that does not sit on a record
boundary is corrected on open, and logged: into a record, to that record's start (a
repeat rather than a loss, the publisher's guarantee being at least once); into damaged
bytes, to the next valid record; past a segment's end or beyond the newest segment, to
the start of that segment or of the oldest one.

Old spools (written before the header and the magic, frames ``<u32 length><u32 CRC>``)
are still read, in place: their segments are recognised by the missing header, drained
and deleted like any other, and never appended to (new records go to a new segment).
Those frames carry no marker to resynchronise on, so damage in one still makes the rest
of that segment unreadable; it is counted and logged the same way.

Disk full. A failed append (ENOSPC, EDQUOT, EIO) raises :class:`OSError` and leaves no
partial frame behind; a cursor that cannot be saved is kept in memory and saved again at
the next acknowledgement or :meth:`Spool.sync`. Neither is fatal: the publisher decides
what to do with the record (:mod:`armorflow.agents.publish`).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import orjson

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "batch", "never"]

#: First bytes of a segment in the checksummed format. Its fourth byte (``o``) is larger
#: than the top byte of any length an old-format segment can start with (at most
#: MAX_RECORD_BYTES), so the two formats cannot be mistaken for each other.
SEGMENT_HEADER: Final = b"afspool2"
#: Start of every frame, the anchor a reader resynchronises on after damage. 0xF5 never
#: occurs in UTF-8, so no JSON value (crafted paths included) can contain it.
FRAME_MAGIC: Final = b"\xf5\xa9\x5c\x17"
_FRAME: Final = struct.Struct("<4sII")
_LEGACY_FRAME: Final = struct.Struct("<II")
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


# --- framing ------------------------------------------------------------------------------


def _payload(record: SpoolRecord) -> bytes:
    topic = record.topic.encode()
    head = _PAYLOAD_HEAD.pack(record.count, len(topic), len(record.key))
    return b"".join((head, topic, record.key, record.value))


def _frame_crc(length: bytes, payload: bytes) -> int:
    # The length is covered too: a flipped length bit must not pass as a valid frame.
    return zlib.crc32(payload, zlib.crc32(length))


def _encode(record: SpoolRecord) -> bytes:
    payload = _payload(record)
    length = struct.pack("<I", len(payload))
    return FRAME_MAGIC + length + struct.pack("<I", _frame_crc(length, payload)) + payload


def _decode(payload: bytes) -> SpoolRecord:
    count, topic_len, key_len = _PAYLOAD_HEAD.unpack_from(payload)
    start = _PAYLOAD_HEAD.size
    topic = payload[start : start + topic_len].decode()
    key = payload[start + topic_len : start + topic_len + key_len]
    value = payload[start + topic_len + key_len :]
    return SpoolRecord(topic, key, value, count)


#: A segment's bytes: a read-only map of the file, or ``b""`` for an empty one.
_Buffer = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class _Frame:
    """A valid record and the byte range of its frame."""

    record: SpoolRecord
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Gap:
    """Bytes holding no valid frame: one damaged record or more, or a torn append."""

    start: int
    end: int
    #: Nothing valid follows it in the segment.
    at_end: bool


def _frame_at(buf: _Buffer, pos: int) -> _Frame | None:
    """The valid checksummed frame starting at ``pos``, else None."""
    if len(buf) - pos < _FRAME.size:
        return None
    magic, length, crc = _FRAME.unpack_from(buf, pos)
    if magic != FRAME_MAGIC or not _PAYLOAD_HEAD.size <= length <= MAX_RECORD_BYTES:
        return None
    end = pos + _FRAME.size + length
    if end > len(buf):
        return None
    payload = buf[pos + _FRAME.size : end]
    if _frame_crc(buf[pos + 4 : pos + 8], payload) != crc:
        return None
    try:
        record = _decode(payload)
    except (UnicodeDecodeError, struct.error):
        return None
    return _Frame(record, pos, end)


def _next_frame_start(buf: _Buffer, pos: int) -> int | None:
    """Where the first valid frame after ``pos`` starts: the resynchronisation point."""
    at = buf.find(FRAME_MAGIC, pos + 1)
    while at != -1:
        if _frame_at(buf, at) is not None:
            return at
        at = buf.find(FRAME_MAGIC, at + 1)
    return None


def _scan(buf: _Buffer, pos: int) -> Iterator[_Frame | _Gap]:
    """Frames from ``pos`` on, with the damaged stretches between them as gaps."""
    size = len(buf)
    while pos < size:
        frame = _frame_at(buf, pos)
        if frame is not None:
            yield frame
            pos = frame.end
            continue
        resume = _next_frame_start(buf, pos)
        if resume is None:
            yield _Gap(pos, size, at_end=True)
            return
        yield _Gap(pos, resume, at_end=False)
        pos = resume


def _scan_legacy(buf: _Buffer, pos: int) -> Iterator[_Frame | _Gap]:
    """Frames of an old-format segment; without markers, damage ends the segment."""
    size = len(buf)
    while pos < size:
        if size - pos >= _LEGACY_FRAME.size:
            length, crc = _LEGACY_FRAME.unpack_from(buf, pos)
            end = pos + _LEGACY_FRAME.size + length
            if _PAYLOAD_HEAD.size <= length <= MAX_RECORD_BYTES and end <= size:
                payload = buf[pos + _LEGACY_FRAME.size : end]
                if zlib.crc32(payload) == crc:
                    yield _Frame(_decode(payload), pos, end)
                    pos = end
                    continue
        yield _Gap(pos, size, at_end=True)
        return


def _looks_torn(buf: _Buffer, gap: _Gap) -> bool:
    """A gap at the end that begins like a frame running past the end of the file: an
    append interrupted by a crash, not damage."""
    rest = buf[gap.start : gap.end]
    if len(rest) < _FRAME.size:
        return FRAME_MAGIC.startswith(rest[: len(FRAME_MAGIC)])
    magic, length, _ = _FRAME.unpack_from(rest)
    return bool(magic == FRAME_MAGIC and gap.start + _FRAME.size + length > gap.end)


class _SegmentView:
    """A read-only map of one segment file (a missing file reads as empty)."""

    def __init__(self, path: Path):
        self.path = path
        self.buf: _Buffer = b""
        try:
            with path.open("rb") as f:
                if os.fstat(f.fileno()).st_size:
                    self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            pass
        head = self.buf[: len(SEGMENT_HEADER)]
        self.legacy = bool(head) and not SEGMENT_HEADER.startswith(head)
        #: Offset of the first frame.
        self.data_start = 0 if self.legacy else len(SEGMENT_HEADER)

    @property
    def size(self) -> int:
        return len(self.buf)

    def items(self, offset: int = 0) -> Iterator[_Frame | _Gap]:
        start = max(offset, self.data_start)
        return _scan_legacy(self.buf, start) if self.legacy else _scan(self.buf, start)

    def close(self) -> None:
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()

    def __enter__(self) -> _SegmentView:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _TailWriter:
    """Appends frames to the newest segment; a failed append leaves no partial frame.

    Unbuffered (one ``write`` per record) so that the file size after a failure is known
    and can be restored; the file and its header are created with the first frame, so a
    full disk cannot leave a headerless segment behind either.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        try:
            self.size = path.stat().st_size
        except FileNotFoundError:
            self.size = 0

    def append(self, frame: bytes) -> None:
        data = frame if self.size else SEGMENT_HEADER + frame
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                               0o600)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            if written:
                self._undo()
            raise
        self.size += len(data)

    def _undo(self) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self.size)
        except OSError as exc:
            # Readers resynchronise past the partial frame, so this costs no record.
            log.error("spool %s: could not remove a partial frame (%s)", self.path, exc)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        #: Damaged stretches skipped (each held at least one record), and their bytes.
        self.corrupt_records = 0
        self.corrupt_bytes = 0
        #: Cursors found off a record boundary (or naming a missing segment) and corrected.
        self.cursor_corrections = 0
        #: Failed cursor saves (disk full); the cursor is saved again later.
        self.cursor_save_errors = 0
        self._reported_gaps: set[tuple[int, int]] = set()
        self._cursor_saved = True
        self._dirty = False
        directory.mkdir(parents=True, exist_ok=True)
        self._cursor_path = directory / "cursor"
        self._segments = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
        self._head = self._place_cursor(self._load_cursor())
        # Segments wholly before the cursor were acknowledged but not yet deleted.
        for seg in [s for s in self._segments if s < self._head.segment]:
            self._delete_segment(seg)
        if not self._segments:
            self._segments = [self._head.segment]
        self._head = self._check_offset(self._head)
        self._tail = self._open_tail()
        self._pending_records = sum(1 for _ in self._walk(self._head))

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
            cursor = SpoolCursor(int(raw["segment"]), int(raw["offset"]))
        except FileNotFoundError:
            return SpoolCursor(0, 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # Re-sending from the oldest segment repeats; it never loses.
            self._correct_cursor(f"unreadable ({exc}): re-sending from the oldest segment")
            return SpoolCursor(-1, 0)
        if cursor.segment < 0 or cursor.offset < 0:
            self._correct_cursor(f"{cursor} is negative: re-sending from the oldest segment")
            return SpoolCursor(-1, 0)
        return cursor

    def _correct_cursor(self, why: str) -> None:
        self.cursor_corrections += 1
        log.error("spool cursor %s %s", self._cursor_path, why)

    def _place_cursor(self, cursor: SpoolCursor) -> SpoolCursor:
        """The cursor moved onto an existing segment (the segment number only)."""
        segments = self._segments
        if not segments:
            return SpoolCursor(max(cursor.segment, 0), 0)
        if cursor.segment < segments[0]:
            # Normal: the segments it had passed were deleted.
            return SpoolCursor(segments[0], 0)
        if cursor.segment > segments[-1]:
            self._correct_cursor(f"names segment {cursor.segment}, beyond the newest "
                                 f"({segments[-1]}): re-sending from the oldest segment")
            return SpoolCursor(segments[0], 0)
        if cursor.segment not in segments:
            following = min(s for s in segments if s > cursor.segment)
            self._correct_cursor(f"names missing segment {cursor.segment}: going on at "
                                 f"segment {following}")
            return SpoolCursor(following, 0)
        return cursor

    def _check_offset(self, cursor: SpoolCursor) -> SpoolCursor:
        """The cursor moved onto a record boundary of its segment (see the module doc)."""
        with _SegmentView(self._segment_path(cursor.segment)) as view:
            offset = cursor.offset
            if offset in (0, view.data_start, view.size):
                return cursor
            if offset > view.size:
                self._correct_cursor(f"offset {offset} lies past the end of segment "
                                     f"{cursor.segment} ({view.size} bytes): re-sending the "
                                     f"segment from its start")
                return SpoolCursor(cursor.segment, 0)
            for item in view.items():
                if item.start > offset:
                    break
                if offset in (item.start, item.end):
                    return cursor
                if item.start < offset < item.end:
                    if isinstance(item, _Frame):
                        self._correct_cursor(
                            f"offset {offset} points into the record at {item.start}-"
                            f"{item.end} of segment {cursor.segment}: re-sending from that "
                            f"record")
                        return SpoolCursor(cursor.segment, item.start)
                    self._correct_cursor(f"offset {offset} points into damaged bytes of "
                                         f"segment {cursor.segment}: going on at {item.end}")
                    return SpoolCursor(cursor.segment, item.end)
            self._correct_cursor(f"offset {offset} points into the header of segment "
                                 f"{cursor.segment}: reading it from its start")
            return SpoolCursor(cursor.segment, 0)

    def _open_tail(self) -> _TailWriter:
        """A writer on the newest segment, its torn end cut off; a new segment when the
        newest is in the old format."""
        newest = self._segments[-1]
        path = self._segment_path(newest)
        with _SegmentView(path) as view:
            legacy = view.legacy
            cut = self._torn_end(view)
        if cut is not None:
            with path.open("r+b") as f:
                f.truncate(cut)
        if legacy:
            self._segments.append(newest + 1)
            path = self._segment_path(newest + 1)
        return _TailWriter(path)

    def _torn_end(self, view: _SegmentView) -> int | None:
        """Where to cut the newest segment so that it ends on a whole frame, if anywhere."""
        if view.legacy:
            return None  # never appended to again: nothing to tidy
        if 0 < view.size < view.data_start:
            return 0  # a header cut short: the first frame rewrites it
        last: _Frame | _Gap | None = None
        for item in view.items():
            last = item
        if not isinstance(last, _Gap):
            return None
        if _looks_torn(view.buf, last):
            log.warning("spool %s: cutting a torn record at offset %d (crash residue)",
                        view.path, last.start)
        else:
            self.corrupt_records += 1
            self.corrupt_bytes += last.end - last.start
            log.error("spool %s: cutting %d damaged byte(s) at its end (offset %d)",
                      view.path, last.end - last.start, last.start)
        return last.start

    def _report_gap(self, segment: int, gap: _Gap, legacy: bool) -> None:
        """Count and log a damaged stretch once, however often it is read past."""
        if (segment, gap.start) in self._reported_gaps:
            return
        self._reported_gaps.add((segment, gap.start))
        self.corrupt_records += 1
        self.corrupt_bytes += gap.end - gap.start
        path = self._segment_path(segment)
        if legacy:
            log.error("spool %s (old format) is corrupt after offset %d: skipping the rest "
                      "of it (%d bytes)", path, gap.start, gap.end - gap.start)
        else:
            log.error("spool %s: %d damaged byte(s) at offset %d hold no valid record; "
                      "skipped, reading goes on at offset %d", path, gap.end - gap.start,
                      gap.start, gap.end)

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
        """Add a record at the tail.

        Raises :class:`SpoolFull` beyond ``max_bytes``, and :class:`OSError` when the disk
        refuses the write (ENOSPC...); either way nothing of the record is left behind.
        """
        frame = _encode(record)
        size = self.size_bytes
        if size + len(frame) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full ({size} of {self.max_bytes} bytes): the broker "
                f"has been unreachable too long; raise the spool bound or restore the broker"
            )
        if self._tail.size >= self.segment_bytes:
            self._roll()
        self._tail.append(frame)
        self._pending_records += 1
        self._dirty = True
        if self.fsync == "always":
            try:
                self.sync()
            except OSError as exc:
                # Written, not yet durable: sync() (durable_seq) retries and reports it.
                log.warning("spool %s: fsync failed (%s)", self.directory, exc)

    def _roll(self) -> None:
        self.sync()
        self._tail.close()
        new = self._segments[-1] + 1
        self._segments.append(new)
        self._tail = _TailWriter(self._segment_path(new))

    def sync(self) -> None:
        """Make appended records durable (a no-op under the ``never`` policy), and save a
        cursor that could not be saved before. Raises :class:`OSError` if fsync fails."""
        if self._dirty:
            if self.fsync != "never":
                self._tail.sync()
            self._dirty = False
        if not self._cursor_saved:
            self._save_cursor()

    # --- reading ------------------------------------------------------------------------

    def _walk(self, start: SpoolCursor) -> Generator[tuple[int, _Frame], None, None]:
        """Every valid frame from ``start`` on, with its segment; damage is reported."""
        for seg in list(self._segments):
            if seg < start.segment:
                continue
            offset = start.offset if seg == start.segment else 0
            with _SegmentView(self._segment_path(seg)) as view:
                for item in view.items(offset):
                    if isinstance(item, _Gap):
                        self._report_gap(seg, item, view.legacy)
                        continue
                    yield seg, item

    def peek(
        self, max_records: int, max_bytes: int = 1 << 62, start: SpoolCursor | None = None
    ) -> list[tuple[SpoolRecord, SpoolCursor]]:
        """Up to ``max_records`` oldest unacknowledged records, each with its end cursor."""
        out: list[tuple[SpoolRecord, SpoolCursor]] = []
        if max_records <= 0:
            return out
        taken = 0
        walk = self._walk(start or self._head)
        try:
            for seg, frame in walk:
                out.append((frame.record, SpoolCursor(seg, frame.end)))
                taken += len(frame.record.value)
                if len(out) >= max_records or taken >= max_bytes:
                    break
        finally:
            walk.close()  # unmaps the segment it stopped in
        return out

    def ack(self, through: SpoolCursor, records: int) -> None:
        """Forget everything up to ``through`` (``records`` of them); frees whole segments.

        Never raises for a full disk: deleting segments needs no space, and a cursor that
        cannot be saved is kept and saved later (a crash before then re-sends, never loses,
        since a cursor naming a deleted segment resumes at the oldest remaining one).
        """
        if through <= self._head:
            return
        self._head = through
        self._pending_records = max(0, self._pending_records - records)
        for seg in [s for s in self._segments if s < through.segment]:
            self._delete_segment(seg)
        if self._pending_records == 0 and self._segments[-1] == through.segment:
            # Everything sent: start a fresh segment so the disk space is returned.
            try:
                self._roll()
            except OSError as exc:
                log.warning("spool %s: cannot start a new segment yet (%s)", self.directory, exc)
            else:
                self._head = SpoolCursor(self._segments[-1], 0)
                self._delete_segment(through.segment)
        self._save_cursor()

    def _save_cursor(self) -> None:
        try:
            self._write_cursor()
        except OSError as exc:
            self.cursor_save_errors += 1
            if self._cursor_saved:
                log.warning("spool cursor %s not saved (%s): kept in memory and saved again "
                            "later; a crash before then re-sends acknowledged records",
                            self._cursor_path, exc)
            self._cursor_saved = False
            return
        if not self._cursor_saved:
            log.info("spool cursor %s saved again", self._cursor_path)
        self._cursor_saved = True

    def _write_cursor(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        try:
            with tmp.open("wb") as f:
                f.write(orjson.dumps({"segment": self._head.segment,
                                      "offset": self._head.offset}))
                f.flush()
                if self.fsync != "never":
                    os.fsync(f.fileno())
            os.replace(tmp, self._cursor_path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        try:
            self.sync()
        except OSError as exc:
            log.error("spool %s: final sync failed (%s)", self.directory, exc)
        self._tail.close()
