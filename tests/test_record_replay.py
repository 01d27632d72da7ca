"""``armorflow record`` and ``replay`` against a real broker: a round trip keeps every
event, bad lines are reported by line number while the rest goes through, pacing keeps the
recorded gaps, and replaying twice leaves the model unchanged."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from armorflow.broker import EmbeddedBroker
from armorflow.cli import app
from armorflow.events import MAX_EVENT_BYTES, Event, Rejects, make_event, read_events, write_events
from armorflow.kafka import EventProducer, consume_until_idle, make_consumer
from armorflow.model import reduce_events
from armorflow.topics import EVENT_TOPICS
from armorflow.users.record import SpillSorter, record_topics
from armorflow.users.timespec import parse_until
from armorflow.users.topicread import TopicReader, parse_topics

pytestmark = pytest.mark.broker

S = 1_000_000_000
T0 = 1_780_000_000 * S


def _flat(text: str) -> str:
    """Terminal output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _mixed_events(profiles: list[str], n: int, seed: int = 7) -> list[Event]:
    """Events of every kind, several profiles and nodes, in shuffled (arrival) order."""
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        profile = profiles[i % len(profiles)]
        common = dict(ts=T0 + rng.randrange(0, 60 * S), node=f"n{i % 3}", profile=profile,
                      namespace="ns", pod=f"pod-{i % 4}", container="c", container_id="cid",
                      pid=1000 + i, comm="app")
        kind = i % 8
        if kind == 0:
            out.append(make_event("exec", path=f"/usr/bin/tool{i % 9}", **common))
        elif kind == 1:
            out.append(make_event("file", path=f"/var/data/{i % 50}", perms="rw",
                                  owner=bool(i % 2), **common))
        elif kind == 2:
            out.append(make_event("syscall", name=f"sys{i % 40}", **common))
        elif kind == 3:
            out.append(make_event("capability", name="net_admin", **common))
        elif kind == 4:
            out.append(make_event("network", family="inet", sock_type="stream", protocol=6,
                                  **common))
        elif kind == 5:
            out.append(make_event("signal", signal="term", peer="unconfined",
                                  direction="receive", **common))
        elif kind == 6:
            out.append(make_event("ptrace", mode="read", peer="unconfined", **common))
        else:
            out.append(make_event("mount", op="mount", path="/mnt/x", fstype="tmpfs", **common))
    return out


def _write(path: Path, events: list[Event]) -> None:
    with path.open("wb") as sink:
        write_events(sink, events)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _snapshot(broker: EmbeddedBroker, profile: str) -> list[Event]:
    """Every event of ``profile`` the event topics hold now."""
    rejects = Rejects()
    with TopicReader(broker.settings(), list(EVENT_TOPICS)) as reader:
        events = [e for batch in reader.batches(rejects, until_end=True)
                  for e in batch if e["profile"] == profile]
    assert rejects.count == 0
    return events


def _canon(events: list[Event]) -> list[bytes]:
    return sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in events)


def test_record_replay_round_trip_keeps_every_event(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    profiles = [f"rt-{tag}-a", f"rt-{tag}-b", f"rt-{tag}-c"]
    original = _mixed_events(profiles, 4_000)
    source = tmp_path / "source.jsonl"
    _write(source, original)
    bootstrap = ["-b", broker.bootstrap_servers]

    out = _cli("replay", str(source), "--no-progress", *bootstrap)
    assert "published 4,000 events" in out

    recording = tmp_path / "recorded.jsonl.zst"
    # A small sort buffer forces spilled runs and the merge.
    out = _cli("record", "--topics", "all", "--from-beginning", "--out", str(recording),
               "--sort-buffer", "500", "--no-progress", *bootstrap)
    assert "recorded" in out and "spilled run(s)" in out
    recorded = list(read_events(recording))
    ours = [e for e in recorded if e["profile"] in profiles]
    assert _canon(ours) == _canon(original)
    stamps = [e["ts"] for e in recorded]
    assert stamps == sorted(stamps)

    # Only some kinds, and a count bound.
    subset = tmp_path / "exec-file.jsonl"
    _cli("record", "--topics", "exec,file", "--from-beginning", "--out", str(subset),
         "--no-progress", *bootstrap)
    kinds = {e["kind"] for e in read_events(subset) if e["profile"] in profiles}
    assert kinds == {"exec", "file"}
    capped = tmp_path / "capped.jsonl"
    out = _cli("record", "--from-beginning", "--max-events", "123", "--out", str(capped),
               "--no-progress", *bootstrap)
    assert len(list(read_events(capped))) == 123
    assert "recorded 123 events" in out


def test_rejected_lines_are_reported_and_the_rest_goes_through(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"rej-{uuid.uuid4().hex[:8]}"
    good = [make_event("exec", ts=T0 + i, profile=profile, path=f"/bin/g{i}") for i in range(4)]
    lines = [
        orjson.dumps(good[0]),                                            # 1
        b'{"v":1,"kind":"exec",',                                         # 2: broken JSON
        orjson.dumps(good[1]),                                            # 3
        orjson.dumps({**good[1], "kind": "teleport"}),                    # 4: unknown kind
        b"",                                                              # 5: blank, ignored
        orjson.dumps({k: v for k, v in good[2].items() if k != "path"}),  # 6: missing path
        b'{"pad":"' + b"x" * (MAX_EVENT_BYTES + 10) + b'"}',              # 7: oversize
        orjson.dumps(good[2]),                                            # 8
        orjson.dumps(good[3]),                                            # 9
    ]
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    out = _cli("replay", str(source), "--no-progress", "-b", broker.bootstrap_servers)
    assert "published 4 events" in out
    assert "rejected 4 line(s):" in out
    assert "line 2: not valid UTF-8 JSON" in out
    assert "line 4: field 'kind': unknown kind 'teleport'" in out
    assert "line 6: field 'path': missing" in out
    assert f"line 7: line exceeds {MAX_EVENT_BYTES} bytes" in out

    # Read back with the shared group consumer, independent of the record verb's reader.
    consumer = make_consumer(broker.settings(), f"check-{profile}")
    consumer.subscribe(list(EVENT_TOPICS))
    try:
        got = [e for e in consume_until_idle(consumer, Rejects(), idle_s=2.0)
               if e["profile"] == profile]
    finally:
        consumer.close()
    assert _canon(got) == _canon(good)


def test_replaying_twice_leaves_the_model_unchanged(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    source = tmp_path / "twice.jsonl"
    _write(source, _mixed_events(["whatever-1", "whatever-2"], 800, seed=11))
    profile = f"idem-{uuid.uuid4().hex[:8]}"
    args = ["replay", str(source), "--profile", profile, "--no-progress",
            "-b", broker.bootstrap_servers]

    _cli(*args)
    once = _snapshot(broker, profile)
    assert len(once) == 800
    model_once = reduce_events(once)[profile]

    _cli(*args)
    twice = _snapshot(broker, profile)
    assert len(twice) == 1600  # every event really went out again ...
    models_twice = reduce_events(twice)
    assert list(models_twice) == [profile]
    # ... and the model, an idempotent union, did not move.
    assert models_twice[profile].canonical_json() == model_once.canonical_json()
    assert not model_once.is_empty()


def test_rebase_ts_now_moves_the_window_and_keeps_the_gaps(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"rebase-{uuid.uuid4().hex[:8]}"
    offsets = [0, 2 * S, 3 * S + 500, 30 * S]
    source = tmp_path / "old.jsonl"
    _write(source, [make_event("syscall", ts=1_000 * S + o, profile=profile, name=f"s{i}")
                    for i, o in enumerate(offsets)])
    before = time.time_ns()
    out = _cli("replay", str(source), "--rebase-ts", "now", "--no-progress",
               "-b", broker.bootstrap_servers)
    after = time.time_ns()
    assert "timestamps shifted by" in out
    got = sorted(e["ts"] for e in _snapshot(broker, profile))
    assert before <= got[0] <= after
    assert [t - got[0] for t in got] == offsets


def test_only_profile_filters_before_profile_rewrites(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    source = tmp_path / "three.jsonl"
    events = _mixed_events(["a", "b", "c"], 300, seed=5)
    _write(source, events)
    profile = f"only-{uuid.uuid4().hex[:8]}"
    out = _cli("replay", str(source), "--only-profile", "a", "--only-profile", "c",
               "--profile", profile, "--no-progress", "-b", broker.bootstrap_servers)
    assert "published 200 events" in out and "left out 100 event(s)" in out
    got = _snapshot(broker, profile)
    kept = [{**e, "profile": profile} for e in events if e["profile"] in ("a", "c")]
    assert _canon(got) == _canon(kept)


@pytest.mark.slow
def test_speed_one_keeps_the_recorded_gaps(broker: EmbeddedBroker, tmp_path: Path) -> None:
    profile = f"pace-{uuid.uuid4().hex[:8]}"
    # 10 s of recording: 101 events, one every 100 ms.
    events = [make_event("file", ts=T0 + i * S // 10, profile=profile, path=f"/p/{i}",
                         perms="r", owner=False) for i in range(101)]
    source = tmp_path / "ten-seconds.jsonl"
    _write(source, events)
    bootstrap = ["-b", broker.bootstrap_servers]

    started = time.monotonic()
    _cli("replay", str(source), "--speed", "1.0", "--profile", profile, "--no-progress",
         *bootstrap)
    took = time.monotonic() - started
    assert 9.0 <= took <= 11.0, f"--speed 1.0 replay of 10 s took {took:.2f} s"

    started = time.monotonic()
    _cli("replay", str(source), "--speed", "5", "--profile", profile, "--no-progress",
         *bootstrap)
    took = time.monotonic() - started
    assert 1.5 <= took <= 3.0, f"--speed 5 replay of 10 s took {took:.2f} s"

    started = time.monotonic()
    _cli("replay", str(source), "--speed", "max", "--profile", profile, "--no-progress",
         *bootstrap)
    assert time.monotonic() - started < 2.0
    assert len(_snapshot(broker, profile)) == 303


def test_live_record_follows_new_events_until_bounded(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"live-{uuid.uuid4().hex[:8]}"
    ready = threading.Event()
    results = []

    def _record() -> None:
        results.append(record_topics(
            broker.settings(), parse_topics("syscall"), tmp_path / "live.jsonl",
            until=parse_until("20s"), max_events=300, on_ready=ready.set,
        ))

    worker = threading.Thread(target=_record)
    worker.start()
    assert ready.wait(15)
    producer = EventProducer(broker.settings(), batch_size=50)
    # Newest first: the recording must come out sorted anyway.
    producer.publish_many(make_event("syscall", ts=T0 + (300 - i) * S, profile=profile,
                                     name=f"s{i % 30}") for i in range(300))
    producer.flush()
    worker.join(25)
    assert not worker.is_alive()
    (result,) = results
    assert result.events == 300
    recorded = list(read_events(tmp_path / "live.jsonl"))
    assert [e["profile"] for e in recorded] == [profile] * 300
    assert [e["ts"] for e in recorded] == sorted(e["ts"] for e in recorded)


def test_until_duration_stops_an_idle_live_recording(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = record_topics(broker.settings(), parse_topics("mount"),
                           tmp_path / "idle.jsonl", until=parse_until("1.5s"))
    took = time.monotonic() - started
    assert 1.4 <= took <= 5.0
    assert (tmp_path / "idle.jsonl").exists()
    assert result.events == len(list(read_events(tmp_path / "idle.jsonl")))


def test_until_a_past_instant_snapshots_up_to_that_time(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"past-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(broker.settings())
    producer.publish_many(make_event("exec", ts=T0 + i * S, profile=profile, path=f"/bin/{i}")
                          for i in range(10))
    producer.flush()
    bound = datetime.fromtimestamp(T0 / S + 4.5, tz=UTC).isoformat()
    out = tmp_path / "until.jsonl"
    text = _cli("record", "--from-beginning", "--topics", "exec", "--until", bound,
                "--out", str(out), "--no-progress", "-b", broker.bootstrap_servers)
    assert "stamped after --until" in text
    kept = [e["path"] for e in read_events(out) if e["profile"] == profile]
    assert kept == [f"/bin/{i}" for i in range(5)]


def test_spill_sorter_merges_runs_stably(tmp_path: Path) -> None:
    rng = random.Random(3)
    events = [{"ts": rng.randrange(100), "seq": i} for i in range(2_000)]
    sorter = SpillSorter(buffer_events=128, directory=tmp_path)
    for e in events:
        sorter.add(e)
    assert len(sorter.runs) == 2_000 // 128
    merged = list(sorter.sorted_events())
    sorter.cleanup()
    assert merged == sorted(events, key=lambda e: e["ts"])  # sorted() is stable too
    assert not list(tmp_path.iterdir())


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    source = tmp_path / "x.jsonl"
    _write(source, [make_event("exec", ts=1, profile="p", path="/bin/x")])
    result = CliRunner().invoke(app, ["replay", str(source), "--speed", "0"])
    assert result.exit_code != 0 and "must be > 0" in _flat(result.output)
    result = CliRunner().invoke(app, ["replay", str(source), "--rebase-ts", "yesterday"])
    assert result.exit_code != 0 and "ISO 8601" in _flat(result.output)
    result = CliRunner().invoke(app, ["record", "--topics", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "neither an event kind" in _flat(result.output)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sigterm_ends_a_live_recording_and_keeps_what_was_read(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"term-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "live.jsonl.zst"
    proc = subprocess.Popen(
        [sys.executable, "-m", "armorflow.cli", "record", "--topics", "capability",
         "--out", str(out), "--no-progress", "-b", broker.bootstrap_servers],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # The recorder says when its partitions are assigned; wait for it (a loaded
        # machine may take seconds to start Python), then publish.
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "Ctrl-C stops" in first, first
        producer = EventProducer(broker.settings(), batch_size=10)
        seq = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for _ in range(10):
                producer.publish(make_event("capability", ts=T0 - seq, profile=profile,
                                            pid=seq, name="chown"))
                seq += 1
            producer.flush()
            time.sleep(0.25)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    recorded = list(read_events(out))
    pids = sorted(e["pid"] for e in recorded)
    # Everything published after the recorder said it was ready is in the recording.
    assert pids == list(range(seq)), output
    assert f"recorded {len(pids):,} events" in output
    assert [e["ts"] for e in recorded] == sorted(e["ts"] for e in recorded)


def test_unreachable_brokers_are_a_clear_error(tmp_path: Path) -> None:
    from armorflow.broker import free_port
    from armorflow.config import KafkaSettings
    from armorflow.users.topicread import BrokerUnreachable

    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=r"cannot read topics from 127\.0\.0\.1:"):
        TopicReader(nowhere, list(EVENT_TOPICS), timeout_s=1.0)
    assert time.monotonic() - started < 10
