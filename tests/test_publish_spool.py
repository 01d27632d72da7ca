"""The on-disk spool: order, acknowledgement, bounds, crash residue, damage confined to
one record, old-format spools, bad cursors, and a really full disk (a tiny tmpfs)."""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path

import pytest

from armorflow.agents.spool import SEGMENT_HEADER, Spool, SpoolFull, SpoolRecord
from support.tinydisk import fill, free, tiny_disk


def rec(i: int, size: int = 10) -> SpoolRecord:
    return SpoolRecord("armorflow.events.file", b"p%d" % (i % 3), b"%08d" % i + b"x" * size, 1)


def values(spool: Spool) -> list[int]:
    return [int(r.value[:8]) for r, _ in spool.peek(1 << 30)]


def test_order_ack_and_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    for i in range(40):
        spool.append(rec(i))
    spool.sync()
    assert len(spool) == 40 and values(spool) == list(range(40))
    first = spool.peek(15)
    spool.ack(first[-1][1], len(first))
    assert values(spool) == list(range(15, 40))
    segments_before = len(list(tmp_path.glob("*.seg")))
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=300)
    assert len(reopened) == 25 and values(reopened) == list(range(15, 40))
    rest = reopened.peek(100)
    reopened.ack(rest[-1][1], len(rest))
    assert len(reopened) == 0 and values(reopened) == []
    # Fully acknowledged segments are deleted: the disk space comes back.
    assert len(list(tmp_path.glob("*.seg"))) < segments_before
    assert reopened.size_bytes == 0
    reopened.append(rec(99))
    assert values(reopened) == [99]


def test_bounded_with_a_clear_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000)
    with pytest.raises(SpoolFull, match="is full"):
        for i in range(1_000):
            spool.append(rec(i, size=50))
    kept = len(spool)
    assert 0 < kept < 1_000
    assert values(spool) == list(range(kept))


def test_torn_tail_is_cut_and_the_rest_survives(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync="always")
    for i in range(5):
        spool.append(rec(i))
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    whole = segment.read_bytes()
    segment.write_bytes(whole + whole[:17])  # a crash in the middle of a sixth append
    reopened = Spool(tmp_path)
    assert values(reopened) == list(range(5))
    assert segment.stat().st_size == len(whole)
    reopened.append(rec(5))
    assert values(reopened) == list(range(6))


def test_corrupt_bytes_in_an_old_segment_are_skipped_loudly(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(12):
        spool.append(rec(i))
    spool.close()
    oldest = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(oldest.read_bytes())
    data[12] ^= 0xFF  # flip a payload byte of the first record: its CRC no longer matches
    oldest.write_bytes(bytes(data))
    reopened = Spool(tmp_path, segment_bytes=200)
    got = values(reopened)
    assert reopened.corrupt_records >= 1
    assert got == sorted(got) and got[-1] == 11 and 0 not in got


# --- damage confined to one record, old spools, cursors, a full disk ----------------------


def record_spans(spool: Spool) -> list[tuple[int, int]]:
    """(start, end) of every record of a one-segment spool, in order."""
    ends = [cursor.offset for _, cursor in spool.peek(1 << 30)]
    starts = [len(SEGMENT_HEADER), *ends[:-1]]
    return list(zip(starts, ends, strict=True))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["magic", "length", "crc", "payload"])
def test_a_flipped_byte_costs_only_its_record(tmp_path: Path, where: str) -> None:
    spool = Spool(tmp_path)
    for i in range(3_000):
        spool.append(rec(i))
    spans = record_spans(spool)
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    start, end = spans[900]
    offsets = {"magic": start + 1, "length": start + 5, "crc": start + 9,
               "payload": (start + end) // 2}
    flip(segment, offsets[where])
    reopened = Spool(tmp_path)
    expected = [i for i in range(3_000) if i != 900]
    assert values(reopened) == expected
    assert len(reopened) == 2_999
    assert reopened.corrupt_records == 1
    # Reading it again does not count it again, and the spool goes on working.
    assert values(reopened) == expected and reopened.corrupt_records == 1
    reopened.append(rec(3_000))
    assert values(reopened)[-2:] == [2_999, 3_000]


def test_damage_in_the_last_record_of_the_newest_segment_is_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(50):
        spool.append(rec(i))
    spans = record_spans(spool)
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    flip(segment, spans[-1][0] + 15)
    reopened = Spool(tmp_path)
    assert values(reopened) == list(range(49))
    assert reopened.corrupt_records == 1
    assert segment.stat().st_size == spans[-1][0]
    reopened.append(rec(50))
    assert values(reopened) == [*range(49), 50]


def test_acknowledging_past_a_damaged_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=400)
    for i in range(60):
        spool.append(rec(i))
    spool.close()
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) > 3
    flip(segments[1], len(SEGMENT_HEADER) + 20)
    reopened = Spool(tmp_path, segment_bytes=400)
    got = values(reopened)
    assert len(got) == 59 and got == sorted(got)
    while chunk := reopened.peek(7):
        reopened.ack(chunk[-1][1], len(chunk))
    assert len(reopened) == 0 and reopened.corrupt_records == 1
    reopened.close()
    assert values(Spool(tmp_path, segment_bytes=400)) == []


def legacy_frame(i: int) -> bytes:
    """A record as spools wrote it before the segment header and frame magic."""
    topic, key, value = b"armorflow.events.file", b"p%d" % (i % 3), b"%08d" % i + b"x" * 10
    payload = struct.pack("<IHI", 1, len(topic), len(key)) + topic + key + value
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def test_an_old_format_spool_is_read_then_retired(tmp_path: Path) -> None:
    old = tmp_path / f"{7:016d}.seg"
    old.write_bytes(b"".join(legacy_frame(i) for i in range(20)))
    (tmp_path / "cursor").write_bytes(
        b'{"segment": 7, "offset": %d}' % (len(legacy_frame(0)) * 5))
    spool = Spool(tmp_path)
    assert values(spool) == list(range(5, 20)) and spool.cursor_corrections == 0
    spool.append(rec(20))  # new records go to a new, checksummed segment
    assert values(spool) == list(range(5, 21))
    assert old.read_bytes() == b"".join(legacy_frame(i) for i in range(20))
    new = tmp_path / f"{8:016d}.seg"
    assert new.read_bytes().startswith(SEGMENT_HEADER)
    everything = spool.peek(100)
    spool.ack(everything[-1][1], len(everything))
    assert not old.exists() and len(spool) == 0


def test_damage_in_an_old_format_segment_skips_its_rest_only(tmp_path: Path) -> None:
    first = tmp_path / f"{1:016d}.seg"
    data = bytearray(b"".join(legacy_frame(i) for i in range(10)))
    data[len(legacy_frame(0)) * 4 + 12] ^= 0xFF
    first.write_bytes(bytes(data))
    (tmp_path / f"{2:016d}.seg").write_bytes(b"".join(legacy_frame(i) for i in range(10, 15)))
    spool = Spool(tmp_path)
    assert values(spool) == [0, 1, 2, 3, 10, 11, 12, 13, 14]
    assert spool.corrupt_records == 1


def write_cursor(directory: Path, segment: int, offset: int) -> None:
    (directory / "cursor").write_bytes(b'{"segment": %d, "offset": %d}' % (segment, offset))


def one_segment_spool(directory: Path, n: int) -> tuple[int, list[tuple[int, int]]]:
    spool = Spool(directory)
    for i in range(n):
        spool.append(rec(i))
    spans = record_spans(spool)
    spool.close()
    return int(next(directory.glob("*.seg")).stem), spans


def test_a_cursor_into_a_record_resends_that_record(tmp_path: Path) -> None:
    segment, spans = one_segment_spool(tmp_path, 3_000)
    write_cursor(tmp_path, segment, spans[1_200][0] + 7)
    spool = Spool(tmp_path)
    assert spool.cursor_corrections == 1
    assert len(spool) == 1_800 and values(spool) == list(range(1_200, 3_000))


@pytest.mark.parametrize("offset", ["past_end", "header"])
def test_a_cursor_off_the_segment_resends_it_from_the_start(tmp_path: Path, offset: str) -> None:
    segment, spans = one_segment_spool(tmp_path, 100)
    write_cursor(tmp_path, segment, spans[-1][1] + 5_000 if offset == "past_end" else 3)
    spool = Spool(tmp_path)
    assert spool.cursor_corrections == 1
    assert values(spool) == list(range(100))


def test_a_cursor_beyond_the_newest_segment_deletes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=400)
    for i in range(40):
        spool.append(rec(i))
    spool.close()
    newest = max(int(p.stem) for p in tmp_path.glob("*.seg"))
    write_cursor(tmp_path, newest + 50, 0)
    reopened = Spool(tmp_path, segment_bytes=400)
    assert reopened.cursor_corrections == 1
    assert values(reopened) == list(range(40))


def test_a_cursor_into_damaged_bytes_moves_to_the_next_record(tmp_path: Path) -> None:
    segment, spans = one_segment_spool(tmp_path, 30)
    path = next(tmp_path.glob("*.seg"))
    flip(path, spans[10][0] + 2)
    write_cursor(tmp_path, segment, spans[10][0] + 5)
    spool = Spool(tmp_path)
    assert spool.cursor_corrections == 1
    assert values(spool) == list(range(11, 30))


@pytest.mark.root
def test_a_full_disk_refuses_appends_cleanly_and_never_stops_acks(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        other = disk / "other-data"  # another writer on the node, removed later
        other.write_bytes(b"\0" * 65_536)
        spool = Spool(disk / "spool", fsync="always")
        appended = 0
        with pytest.raises(OSError) as refused:
            while True:
                spool.append(rec(appended, size=300))
                appended += 1
        assert refused.value.errno == errno.ENOSPC and appended > 100
        filler = fill(disk)  # every byte left, so that the cursor cannot be saved either
        with pytest.raises(OSError):
            spool.append(rec(appended, size=5_000))  # more than the tail's last page holds
        assert values(spool) == list(range(appended))
        first = spool.peek(50)
        spool.ack(first[-1][1], len(first))  # must not raise
        assert spool.cursor_save_errors >= 1
        assert values(spool) == list(range(50, appended))
        # What is on disk has no partial frame: a restart finds exactly the same records.
        assert values(Spool(disk / "spool")) == list(range(appended))
        free(filler)
        free(other)
        spool.sync()  # saves the cursor it could not save before
        spool.append(rec(appended))
        spool.close()
        reopened = Spool(disk / "spool")
        assert reopened.corrupt_records == 0 and reopened.cursor_corrections == 0
        assert values(reopened) == list(range(50, appended + 1))
