"""The on-disk spool: order, acknowledgement, bounds, and crash residue."""

from __future__ import annotations

from pathlib import Path

import pytest

from armorflow.agents.spool import Spool, SpoolFull, SpoolRecord


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
