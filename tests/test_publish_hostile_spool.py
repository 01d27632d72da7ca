"""The publisher against a real broker when its spool is hostile ground: a disk that fills
up during an outage (a real 256 KiB tmpfs), a flipped byte in a spool file, a cursor
pointing into a record. Each time the good events arrive, the bad part is counted, and
the publisher keeps working.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import armorflow.agents.publish as publish
from armorflow.agents.publish import Publisher
from armorflow.agents.spool import Spool, SpoolCursor, SpoolRecord
from armorflow.broker import EmbeddedBroker
from armorflow.topics import event_topic
from support.tinydisk import fill, free, tiny_disk
from test_publish_outage import consume_all, event

pytestmark = [pytest.mark.broker, pytest.mark.slow]

OUTAGE_OPTS: dict[str, object] = {"batch_size": 40, "message_timeout_ms": 2_000,
                                  "retry_interval_s": 0.3}


def parked(stats: dict[str, int]) -> int:
    """Events the publisher holds for later or has given up on (the broker being away)."""
    return stats.get("spooled_events", 0) + stats["memory_events"] + stats.get(
        "dropped_events", 0)


def settle(pub: Publisher, until: float = 30.0) -> None:
    """Poll until every published event has failed into the spool or memory, or dropped."""
    deadline = time.monotonic() + until
    pub.flush(0.1)
    while parked(pub.stats()) < pub.stats()["published"]:
        assert time.monotonic() < deadline, pub.stats()
        pub.poll(0.1)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tiny_disk(tmp_path / "disk") as mounted:
        yield mounted


@pytest.mark.root
def test_a_full_disk_during_an_outage_loses_nothing(
    disk: Path, fresh_broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small drain chunks: several acknowledgements (cursor saves) happen on the full disk.
    monkeypatch.setattr(publish, "DRAIN_CHUNK", 10)
    broker = fresh_broker
    profile = f"full-{uuid.uuid4().hex[:8]}"
    pub = Publisher(broker.settings(), disk / "spool", **OUTAGE_OPTS)  # type: ignore[arg-type]
    broker.kill()
    for i in range(10_000):
        pub.publish(event(profile, i))
        if i % 200 == 0:
            pub.poll(0)
    settle(pub)
    filler = fill(disk)  # whatever the spool left, another writer takes
    pub.poll(0.5)
    stats = pub.stats()
    assert stats["spool_write_errors"] > 0, stats
    assert stats["memory_messages"] > 0 and stats["spool_messages"] > 0, stats
    assert stats.get("dropped_events", 0) == 0, stats
    # Events the disk refused are not durable: the watermark stays below them.
    assert pub.durable_seq() < 10_000

    broker.start()
    assert pub.flush(90) is True, pub.stats()
    stats = pub.stats()
    assert stats["spool_cursor_save_errors"] > 0, stats  # the ENOSPC cursor path ran
    assert stats["memory_messages"] == 0 and stats["spool_messages"] == 0, stats
    free(filler)
    pub.publish(event(profile, 10_000))  # still working
    assert pub.flush(20) is True
    assert pub.durable_seq() == 10_001
    pub.close()
    got, _ = consume_all(broker.settings(), profile)
    missing = set(range(10_001)) - set(got)
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:10]}"


@pytest.mark.root
def test_drops_are_counted_when_disk_and_memory_are_both_full(
    disk: Path, fresh_broker: EmbeddedBroker
) -> None:
    broker = fresh_broker
    profile = f"drop-{uuid.uuid4().hex[:8]}"
    pub = Publisher(broker.settings(), disk / "spool", memory_buffer_bytes=200_000,
                    **OUTAGE_OPTS)  # type: ignore[arg-type]
    broker.kill()
    for i in range(10_000):
        pub.publish(event(profile, i))
        if i % 200 == 0:
            pub.poll(0)
    settle(pub)
    dropped = pub.stats().get("dropped_events", 0)
    assert 0 < dropped < 10_000, pub.stats()
    broker.start()
    assert pub.flush(90) is True, pub.stats()
    pub.close()
    got = set(consume_all(broker.settings(), profile)[0])
    # Every event is either delivered or counted as dropped: none vanishes unaccounted.
    assert len(got) + dropped == 10_000, (len(got), dropped)


def fill_spool(directory: Path, profile: str, events: int, per_record: int = 10) -> list[
        tuple[int, int]]:
    """A spool of ``events`` events, ``per_record`` to a message; (start, end) of each."""
    spool = Spool(directory)
    for first in range(0, events, per_record):
        batch = [event(profile, i) for i in range(first, first + per_record)]
        # One kind per message, as the publisher batches them.
        for kind in {e["kind"] for e in batch}:
            same = [e for e in batch if e["kind"] == kind]
            spool.append(SpoolRecord(event_topic(kind), profile.encode(), orjson.dumps(same),
                                     len(same)))
    cursors = [cursor for _, cursor in spool.peek(1 << 30)]
    spool.close()
    starts = [8, *(c.offset for c in cursors[:-1])]
    return [(s, c.offset) for s, c in zip(starts, cursors, strict=True)]


def pids_of(directory: Path, start: SpoolCursor, records: int) -> list[int]:
    """The pids inside ``records`` spool records from ``start`` (read before damage)."""
    spool = Spool(directory)
    out = [int(e["pid"]) for r, _ in spool.peek(records, start=start)
           for e in orjson.loads(r.value)]
    spool.close()
    return out


def test_a_flipped_byte_in_the_spool_costs_one_message(
    tmp_path: Path, noida_broker: EmbeddedBroker
) -> None:
    profile = f"flip-{uuid.uuid4().hex[:8]}"
    spool_dir = tmp_path / "spool"
    spans = fill_spool(spool_dir, profile, 3_000)
    segment = next(spool_dir.glob("*.seg"))
    victim = len(spans) // 3
    lost = pids_of(spool_dir, SpoolCursor(int(segment.stem), spans[victim][0]), 1)
    data = bytearray(segment.read_bytes())
    data[(spans[victim][0] + spans[victim][1]) // 2] ^= 0x01
    segment.write_bytes(bytes(data))

    pub = Publisher(noida_broker.settings(), spool_dir, retry_interval_s=0.2)
    assert pub.flush(30) is True, pub.stats()
    stats = pub.stats()
    assert stats["spool_corrupt_records"] == 1 and stats["spool_messages"] == 0, stats
    pub.publish(event(profile, 5_000))
    assert pub.flush(20) is True
    pub.close()
    got = set(consume_all(noida_broker.settings(), profile)[0])
    assert got == (set(range(3_000)) - set(lost)) | {5_000}
    assert 0 < len(lost) <= 10


def test_a_cursor_into_a_record_resends_from_that_record(
    tmp_path: Path, noida_broker: EmbeddedBroker
) -> None:
    profile = f"cursor-{uuid.uuid4().hex[:8]}"
    spool_dir = tmp_path / "spool"
    spans = fill_spool(spool_dir, profile, 3_000)
    segment = int(next(spool_dir.glob("*.seg")).stem)
    resume = len(spans) // 2
    expected = pids_of(spool_dir, SpoolCursor(segment, spans[resume][0]), len(spans))
    (spool_dir / "cursor").write_bytes(orjson.dumps(
        {"segment": segment, "offset": spans[resume][0] + 9}))

    pub = Publisher(noida_broker.settings(), spool_dir, retry_interval_s=0.2)
    assert pub.stats()["spool_cursor_corrections"] == 1
    assert pub.stats()["spool_messages"] == len(spans) - resume
    assert pub.flush(30) is True, pub.stats()
    pub.close()
    got = consume_all(noida_broker.settings(), profile)[0]
    assert sorted(got) == sorted(expected) and len(expected) > 1_000
