"""Anyone who can write to a topic: a real broker, a real worker process, hostile messages
(issue #19). Each case ends with the good data modeled, the bad input counted, and the
worker still modeling after a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from armorflow.broker import EmbeddedBroker
from armorflow.events import Event, make_event
from armorflow.topics import CONTROL_TOPIC, STATUS_TOPIC, event_topic
from support.pipeline import (
    WorkerProcess,
    completed,
    control,
    model_docs,
    publish,
    read_topic_raw,
    unique,
    wait_for_message,
    workload,
)
from support.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
def worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[WorkerProcess]:
    out = tmp_path / "out"
    w = WorkerProcess(broker, unique("hostile"), tmp_path, grace_s=1.0,
                      extra=["--sink", f"file://{out}", "--close-attempts", "3",
                             "--close-retry-s", "0.5", "--status-every-s", "1"]).start()
    w.wait_ready()
    yield w
    w.stop()


def _raw(broker: EmbeddedBroker, messages: list[tuple[str, str, bytes | None]]) -> None:
    """Send (topic, key, value) exactly as given: no armorflow client in the way."""
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers,
                         "partitioner": "murmur2_random"})
    for topic, key, value in messages:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def _file(profile: str, path: str, perms: str, ts: int, **extra: object) -> bytes:
    event = {"v": 1, "kind": "file", "ts": ts, "node": "n", "profile": profile,
             "namespace": "", "pod": "", "container": "", "container_id": "", "pid": 1,
             "comm": "x", "path": path, "perms": perms, "owner": False, **extra}
    return orjson.dumps([event])


def _paths(doc: dict[str, object]) -> set[str]:
    files = doc["model"]["dynamicResult"]["apparmor"]["files"]  # type: ignore[index]
    return {f["path"] for f in files}


def test_hostile_messages_are_skipped_and_modeling_goes_on(
    broker: EmbeddedBroker, worker: WorkerProcess, tmp_path: Path
) -> None:
    good = unique("victim")
    start = time.time_ns()
    control(broker, "start", good, duration_s=4, start_ts=start)
    file_topic = event_topic("file")
    stop_on_event_topic = orjson.dumps({"v": 1, "type": "stop", "profile": good,
                                        "namespace": "varmor", "ts": start + 1})
    huge = b'{"v":1,"type":"start","profile":"' + good.encode() + (
        b'","namespace":"varmor","ts":1,"start_ts":1,"duration_s":1e300}')
    escape = orjson.dumps({"v": 1, "type": "start", "profile": unique("esc"),
                           "namespace": "../../x", "ts": start, "start_ts": start,
                           "duration_s": 1})
    _raw(broker, [
        (file_topic, good, None),                   # tombstones
        (CONTROL_TOPIC, good, None),
        (file_topic, good, stop_on_event_topic),    # control on an event topic: not obeyed
        (CONTROL_TOPIC, good, huge),                # overflowing duration
        (CONTROL_TOPIC, "esc", escape),             # namespace out of the sink's root
        # NUL in the profile: must never reach the victim's model
        (file_topic, good, _file(f"{good}\x00x", "/etc/shadow", "rw", start + 5)),
        (file_topic, good, _file(good, "/etc/hostname", "r", start + 6)),
    ])
    publish(broker, workload(good, start + 10)[:13])
    done = completed(broker, good, timeout_s=60)
    assert done["resource"]["namespace"] == "varmor"
    doc = next(d for d in model_docs(broker, good) if d.get("pipeline") == worker.app_id)
    paths = _paths(doc)
    assert "/etc/hostname" in paths and "/etc/passwd" in paths
    assert "/etc/shadow" not in paths
    # the window ran its own 4 s, not stopped by the control on the event topic
    assert doc["window"]["end_ts"] - doc["window"]["start_ts"] == 4 * 10**9  # type: ignore[index]
    log = worker.log()
    for reason in ("null_value", "control_on_event_topic", "bad_control", "invalid_profile"):
        assert f"[{reason}]" in log, reason
    assert "Traceback" not in log
    assert not (tmp_path / "x").exists() and not Path("/x").exists()

    # Killed and restarted, it reads the same hostile messages again (nothing was lost,
    # nothing poisons it) and goes on modeling a new profile.
    worker.kill()
    worker.start().wait_ready()
    after = unique("after")
    start2 = time.time_ns()
    control(broker, "start", after, duration_s=2, start_ts=start2)
    publish(broker, workload(after, start2 + 1)[:13])
    completed(broker, after, timeout_s=60)
    assert "Traceback" not in worker.log()


def test_a_window_that_cannot_be_written_ends_failed_and_others_complete(
    broker: EmbeddedBroker, worker: WorkerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "blocked").write_text("a file where the sink wants a directory")
    doomed, fine = unique("doomed"), unique("fine")
    start = time.time_ns()
    control(broker, "start", doomed, duration_s=2, start_ts=start, namespace="blocked")
    control(broker, "start", fine, duration_s=2, start_ts=start)
    for profile in (doomed, fine):
        publish(broker, workload(profile, start + 1)[:13])
    completed(broker, fine, timeout_s=60)
    failed = wait_for_message(broker, STATUS_TOPIC, lambda v: v.get("profile") == doomed
                              and v.get("phase") == "Failed", timeout_s=60)
    assert "3 attempts" in failed["message"]
    assert "blocked" in failed["message"]
    attempts = wait_for("the three attempts in the log", lambda: [
        line for line in worker.log().splitlines()
        if "closing the window of " + doomed in line] if worker.log().count(
            "closing the window of " + doomed) >= 3 else None, timeout_s=10)
    assert len(attempts) == 3
    assert worker.log().count("Traceback") <= 1  # the first failure's, not one per retry
    # The failed window stays failed after a restart: no endless retries.
    worker.kill()
    worker.start().wait_ready()
    time.sleep(3)
    assert worker.log().count("closing the window of " + doomed) == 0


def test_null_values_on_every_topic_never_stop_a_worker(
    broker: EmbeddedBroker, worker: WorkerProcess
) -> None:
    profile = unique("tomb")
    topics = [CONTROL_TOPIC, *(event_topic(k) for k in
                               ("exec", "file", "syscall", "capability", "network"))]
    _raw(broker, [(t, profile, None) for t in topics])
    start = time.time_ns()
    control(broker, "start", profile, duration_s=2, start_ts=start)
    publish(broker, [make_event("syscall", ts=start + 1, profile=profile, name="read")])
    completed(broker, profile, timeout_s=60)


def test_noida_loses_its_last_writes_on_sigkill_and_the_worker_reads_on(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """noida-db acknowledges a write before it is on disk: SIGKILLed within a fraction of
    a second of a write, it comes back without it (docs/brokers.md). The worker, which
    may already have applied the lost messages, must not skip the new messages that
    reuse their offsets, and says so when its applied offsets are past the new log end.
    """
    w = WorkerProcess(fresh_broker, unique("crash"), tmp_path, grace_s=1.0,
                      extra=["--status-every-s", "1"]).start()
    try:
        w.wait_ready()
        profile = unique("crash")
        start = time.time_ns()
        control(fresh_broker, "start", profile, duration_s=600, start_ts=start)
        settled = [make_event("syscall", ts=start + i, profile=profile, name=f"a{i}")
                   for i in range(200)]
        publish(fresh_broker, settled, batch=20)
        wait_for_message(fresh_broker, STATUS_TOPIC, lambda v: v.get("profile") == profile
                         and v.get("counts", {}).get("events") == len(settled), timeout_s=60)
        # The loss is a race with noida's flush: it happened in most runs with a kill 0.2 s
        # after the writes, not in all (one CI run kept every write). Up to three tries,
        # each killing sooner after its writes.
        lost: set[str] = set()
        doomed: list[Event] = []
        for attempt, pause in enumerate((0.2, 0.05, 0.0)):
            batch = [make_event("syscall", ts=start + 1_000 + 500 * attempt + i,
                                profile=profile, name=f"d{attempt}x{i}") for i in range(400)]
            doomed += batch
            publish(fresh_broker, batch, batch=20)  # acknowledged ...
            time.sleep(pause)
            fresh_broker.kill()                     # ... and lost
            fresh_broker.start()
            on_topic = {e["name"] for _k, v in read_topic_raw(
                fresh_broker, event_topic("syscall")) for e in orjson.loads(v)
                if e["profile"] == profile}
            lost = {e["name"] for e in doomed} - on_topic
            if lost:
                break
        assert lost, "noida kept every write three times: the documented limit is gone?"
        after = [make_event("syscall", ts=start + 10_000 + i, profile=profile, name=f"b{i}")
                 for i in range(300)]
        publish(fresh_broker, after, batch=20)
        time.sleep(6)  # more than one log-end check
        control(fresh_broker, "update", profile, duration_s=0.001)
        completed(fresh_broker, profile, timeout_s=90)
        doc = next(d for d in model_docs(fresh_broker, profile) if d.get("pipeline") == w.app_id)
        names = set(doc["model"]["dynamicResult"]["seccomp"]["syscalls"])  # type: ignore[index]
        missing = {e["name"] for e in after} - names
        assert not missing, (  # the worker's log says what it saw (seeks, resets, rebalances)
            f"{len(missing)} of {len(after)} messages after the loss were skipped; lost"
            f" {len(lost)} of {len(doomed)}; worker log:\n"
            + "\n".join(line for line in w.log().splitlines()
                        if "armorflow" in line or "offset" in line or "group" in line)[-6000:])
        assert {e["name"] for e in settled} <= names
        noticed = "were lost by the broker" in w.log()
        print(f"noida lost {len(lost)} of {len(doomed)} acknowledged events; the worker "
              f"{'noticed' if noticed else 'had not applied them yet'}")
        assert "Traceback" not in w.log()
    finally:
        w.stop()


def test_a_window_with_no_events_fails_instead_of_writing_deny_all(
    broker: EmbeddedBroker, worker: WorkerProcess, tmp_path: Path
) -> None:
    """A replay without --rebase-ts: every event is stamped before the window opened."""
    profile = unique("empty")
    start = time.time_ns()
    old = [make_event("syscall", ts=start - 3600 * 10**9 + i, profile=profile, name="read")
           for i in range(50)]
    control(broker, "start", profile, duration_s=2, start_ts=start)
    publish(broker, old)
    failed = wait_for_message(broker, STATUS_TOPIC, lambda v: v.get("profile") == profile
                              and v.get("phase") == "Failed", timeout_s=60)
    assert "no event was modeled" in failed["message"] and "--rebase-ts" in failed["message"]
    assert failed["counts"]["droppedOutside"] == 50
    assert not any(d.get("pipeline") == worker.app_id for d in model_docs(broker, profile))
    assert not (tmp_path / "out" / "varmor" / f"{profile}.yaml").exists()


@pytest.mark.parametrize("argv", [
    ["window", "stop", "p"], ["window", "start", "p", "--duration-s", "60"],
    ["topics", "--create"], ["pipeline", "--app-id", "never"]])
def test_no_broker_is_one_line_and_exit_status_3(argv: list[str]) -> None:
    import subprocess
    import sys

    armorflow = str(Path(sys.executable).parent / "armorflow")
    started = time.monotonic()
    done = subprocess.run([armorflow, *argv, "-b", "127.0.0.1:1"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in errors[0]
    assert "ARMORFLOW_BOOTSTRAP_SERVERS" in errors[0]
    assert time.monotonic() - started < 20


def test_replaying_an_old_recording_without_rebase_says_what_will_happen(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    import subprocess
    import sys

    armorflow = str(Path(sys.executable).parent / "armorflow")
    recording = tmp_path / "old.jsonl"
    day_ago = time.time_ns() - 86_400 * 10**9
    recording.write_bytes(b"".join(
        orjson.dumps(make_event("syscall", ts=day_ago + i, profile="old", name="read"))
        + b"\n" for i in range(5)))
    plain = subprocess.run([armorflow, "replay", str(recording), "--no-progress",
                            "-b", broker.bootstrap_servers], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 0
    assert "--rebase-ts now" in plain.stderr and "24.0 h before now" in plain.stderr
    rebased = subprocess.run([armorflow, "replay", str(recording), "--no-progress",
                              "--rebase-ts", "now", "-b", broker.bootstrap_servers],
                             capture_output=True, text=True, timeout=60)
    assert rebased.returncode == 0 and "warning" not in rebased.stderr


def test_a_window_past_its_rule_budget_fails_and_the_others_complete(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A workload whose file names never repeat (a name per request): its model stops at
    the budget and its window ends Failed, saying why; the worker's other windows (and its
    memory) are not taken down with it."""
    w = WorkerProcess(broker, unique("budget"), tmp_path, grace_s=1.0,
                      extra=["--sink", f"file://{tmp_path / 'out'}", "--max-rules", "40",
                             "--status-every-s", "1"]).start()
    try:
        w.wait_ready()
        flood, calm = unique("flood"), unique("calm")
        start = time.time_ns()
        # the flood's window would run 10 minutes: past its budget it ends at once
        control(broker, "start", flood, duration_s=600, start_ts=start)
        control(broker, "start", calm, duration_s=3, start_ts=start)
        publish(broker, [make_event("file", ts=start + i, profile=flood, node="n1",
                                    namespace="default", pod="web-0", container="c0",
                                    path=f"/srv/app/req-{i:06d}-{unique('n')}.json",
                                    perms="w", owner=True) for i in range(200)])
        publish(broker, workload(calm, start + 10)[:13])
        failed = wait_for_message(broker, STATUS_TOPIC, lambda v: v.get("profile") == flood
                                  and v.get("phase") == "Failed", timeout_s=90)
        assert "budget of 40 path rules" in failed["message"]
        assert "--max-rules" in failed["message"]
        assert "most from " in failed["message"] and "/default/web-0/c0" in failed["message"]
        assert failed["counts"]["droppedOverBudget"] >= 150
        completed(broker, calm, timeout_s=90)
        assert not any(d.get("pipeline") == w.app_id for d in model_docs(broker, flood))
        log = w.log()
        assert log.count(f"the model of {flood} reached its budget") == 1
        assert "Traceback" not in log
    finally:
        w.stop()
