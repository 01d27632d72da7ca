"""Pipeline throughput and memory, against the embedded broker, from one run.

Loads N events (and then 10 x N) of a realistic mix, batched into array messages as the
agents send them, into a fresh embedded broker; then measures:

* the floor: a plain confluent-kafka consumer that only decodes the same messages with
  orjson (what any Python consumer must pay);
* the pipeline: one ``armorflow pipeline`` worker process, from "Worker ready" until its
  status reports every event counted;
* the ratio pipeline / floor, and the worker's peak RSS (VmHWM) for N and 10 x N;
* whether the broker honours the consumer's fetch size limits: one plain aiokafka fetch
  with a 1 MiB limit per request and per partition. A broker that ignores them sends a
  partition's whole backlog in one response, and every Kafka client then holds that
  backlog in memory, so the worker's peak RSS grows with N whatever it does itself;
* the worker's peak RSS when the events stream in while it runs (N, then 10 x N, produced
  at ``--stream-rate`` events/s, below the worker's throughput), as agents send them in
  a cluster. The broker then never holds a backlog to answer with, so this measures the
  worker's own memory whatever the broker does with fetch limits.

Usage: python bench/pipeline_throughput.py [--events N] [--profiles P] [--broker noida|tansu]
                                          [--stream-rate EVENTS_PER_S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiokafka
import orjson
from confluent_kafka import Consumer, KafkaError

from armorflow.broker import EmbeddedBroker
from armorflow.control import make_control
from armorflow.events import Event, make_event
from armorflow.kafka import EventProducer
from armorflow.topics import CONTROL_TOPIC, EVENT_TOPICS, STATUS_TOPIC

ARMORFLOW = str(Path(sys.executable).parent / "armorflow")


def make_events(n: int, profiles: list[str], t0: int, seed: int = 1) -> Iterator[Event]:
    """A mix shaped like deduplicated agent output: many distinct library files and
    syscalls, some execs and sockets, and a stream of temp files with random names as
    Python's tempfile and mkstemp(3) make them (every one new to the classifier).
    Generated lazily: ten million events as dicts would not fit in memory."""
    rng = random.Random(seed)
    alnum = string.ascii_letters + string.digits
    temp_names = tempfile._get_candidate_names()
    for i in range(n):
        p = profiles[i % len(profiles)]
        base = dict(ts=t0 + i, node=f"node-{i % 3}", profile=p, namespace="default",
                    pod=f"pod-{i % 6}", container="c0", container_id="cid", pid=1000 + i % 50,
                    comm="app")
        r = i % 50
        if r < 20:
            path = f"/usr/lib/python3/dist-packages/mod{rng.randrange(2000)}/__init__.py"
            yield make_event("file", **base, path=path, perms="r", owner=False)
        elif r == 20:
            path = f"/tmp/tmp{next(temp_names)}"
            yield make_event("file", **base, path=path, perms="rw", owner=True)
        elif r == 21:
            path = "/tmp/php" + "".join(rng.choice(alnum) for _ in range(6))
            yield make_event("file", **base, path=path, perms="rw", owner=True)
        elif r < 40:
            yield make_event("syscall", **base, name=f"sys_{rng.randrange(120)}")
        elif r < 45:
            yield make_event("exec", **base, path=f"/usr/bin/tool{rng.randrange(30)}")
        else:
            yield make_event("network", **base, family="inet", sock_type="stream", protocol=6)


def paced(events: Iterator[Event], rate: float) -> Iterator[Event]:
    """``events`` at no more than ``rate`` per second (checked every 1,000)."""
    start = time.perf_counter()
    for i, event in enumerate(events):
        if i % 1000 == 0:
            ahead = i / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
        yield event


def load(broker: EmbeddedBroker, n: int, profiles: list[str], rate: float | None = None,
         with_starts: bool = True) -> int:
    producer = EventProducer(broker.settings(), batch_size=500)
    t0 = time.time_ns()
    events = make_events(n, profiles, t0)
    if with_starts:
        start_windows(producer, profiles, t0)
    producer.publish_many(paced(events, rate) if rate else events)
    producer.flush(120)
    return producer.sent_messages


def start_windows(producer: EventProducer, profiles: list[str], t0: int) -> None:
    for p in profiles:
        c = make_control("start", p, duration_s=3600, start_ts=t0 - 1)
        producer.produce_raw(CONTROL_TOPIC, p, c.encode())


def fetch_probe(broker: EmbeddedBroker) -> float:
    """MiB returned by one fetch that asks for at most 1 MiB (request and partition)."""
    limit = 1024 * 1024

    async def first_fetch() -> int:
        consumer = aiokafka.AIOKafkaConsumer(
            *EVENT_TOPICS, bootstrap_servers=broker.bootstrap_servers, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
            max_partition_fetch_bytes=limit, fetch_max_bytes=limit,
        )
        await consumer.start()
        try:
            for _ in range(20):
                batch = await consumer.getmany(timeout_ms=1000)
                if batch:
                    return sum(len(m.value or b"") for msgs in batch.values() for m in msgs)
            return 0
        finally:
            await consumer.stop()

    return asyncio.run(first_fetch()) / limit


def floor(broker: EmbeddedBroker, expect: int) -> tuple[float, float]:
    """(events/s, messages/s) of a plain decode-only consumer."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": f"floor-{time.time_ns()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        # noida answers with a partition's whole backlog whatever the fetch limits say
        # (170 MB per partition at 10M events), beyond librdkafka's default 100 MB cap.
        "receive.message.max.bytes": 2**31 - 1,
    })
    consumer.subscribe(list(EVENT_TOPICS))
    events = messages = 0
    started = 0.0
    while events < expect:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(msg.error())
            if not started:
                started = time.perf_counter()
            decoded = orjson.loads(msg.value())
            events += len(decoded) if isinstance(decoded, list) else 1
            messages += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return events / elapsed, messages / elapsed


def counted(broker: EmbeddedBroker, app_id: str, group: str, consumer: Consumer) -> dict[str, int]:
    latest: dict[str, int] = {}
    for msg in consumer.consume(1000, timeout=0.2):
        if msg.error():
            continue
        doc = orjson.loads(msg.value())
        if doc.get("source") == app_id:
            latest[doc["profile"]] = int(doc["counts"].get("events", 0))
    return latest


def pipeline(
    broker: EmbeddedBroker, expect: int, messages: int, workdir: Path, classify: bool,
    feed: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Run one worker until its status counts ``expect`` events; ``feed``, when given,
    produces the events in a thread once the worker is ready."""
    app_id = f"bench-{time.time_ns()}"
    log_path = workdir / f"{app_id}.log"
    with log_path.open("wb") as log:
        wrap = os.environ.get("BENCH_WORKER_WRAP", "").split()
        proc = subprocess.Popen(
            [*wrap, ARMORFLOW, "pipeline", "-b", broker.bootstrap_servers, "--app-id", app_id,
             "--status-every-s", "0.5", "--no-render", "--data-dir", str(workdir / app_id),
             *(["--fetch-pacing"] if broker.impl == "noida" else []),
             "--classify" if classify else "--no-classify"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "ARMORFLOW_STATE_DIR": str(workdir)},
        )
    status = Consumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": f"s-{app_id}",
        "auto.offset.reset": "latest", "enable.auto.commit": False,
    })
    status.subscribe([STATUS_TOPIC])
    try:
        while "Worker ready" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"worker died, log: {log_path}")
            status.consume(10, timeout=0.1)
        ready = time.perf_counter()
        feeder = threading.Thread(target=feed, daemon=True) if feed else None
        if feeder is not None:
            feeder.start()
        # Timed like the floor, from the first events through: the first status that
        # counts any (statuses come every 0.5 s) starts the clock, and what it counted
        # is left out. Joining the group and recovering tables is reported apart.
        totals: dict[str, int] = {}
        first: tuple[float, int] | None = None
        while sum(totals.values()) < expect:
            totals.update(counted(broker, app_id, app_id, status))
            if first is None and sum(totals.values()) > 0:
                first = (time.perf_counter(), sum(totals.values()))
            if proc.poll() is not None:
                raise RuntimeError(f"worker died, log: {log_path}")
        assert first is not None
        done = time.perf_counter()
        elapsed = done - first[0]
        timed_events = expect - first[1]
        startup = first[0] - ready
        rss_kb = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss_kb = int(line.split()[1])
    finally:
        status.close()
        # A wrapping profiler writes its report on SIGINT.
        proc.send_signal(signal.SIGINT if wrap else signal.SIGTERM)
        proc.wait(30)
    return {"events_per_s": timed_events / elapsed,
            "messages_per_s": messages * timed_events / expect / elapsed,
            "seconds": elapsed, "startup_s": startup, "peak_rss_mb": rss_kb / 1024}


def run(
    n: int, n_profiles: int, workdir: Path, classify: bool, impl: str
) -> dict[str, float]:
    profiles = [f"bench-{i}" for i in range(n_profiles)]
    with EmbeddedBroker(impl=impl) as broker:
        messages = load(broker, n, profiles)
        fetched_mib = fetch_probe(broker)
        floor_eps, floor_mps = floor(broker, n)
        result = pipeline(broker, n, messages, workdir, classify)
    result |= {"floor_events_per_s": floor_eps, "floor_messages_per_s": floor_mps,
               "messages": messages, "events": n, "fetched_mib": fetched_mib}
    result["ratio"] = result["events_per_s"] / floor_eps
    return result


def run_streamed(
    n: int, n_profiles: int, workdir: Path, classify: bool, impl: str, rate: float
) -> dict[str, float]:
    """The worker's peak RSS while ``n`` events stream in at ``rate`` events/s."""
    profiles = [f"bench-{i}" for i in range(n_profiles)]
    with EmbeddedBroker(impl=impl) as broker:
        producer = EventProducer(broker.settings())
        start_windows(producer, profiles, time.time_ns() - 10**9)
        producer.flush(30)

        def feed() -> None:
            load(broker, n, profiles, rate=rate, with_starts=False)

        return pipeline(broker, n, 0, workdir, classify, feed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="N (then 10 x N)")
    parser.add_argument("--profiles", type=int, default=8)
    parser.add_argument("--broker", choices=("noida", "tansu"), default="noida",
                        help="embedded broker implementation")
    parser.add_argument("--no-classify", action="store_true", help="literal paths only")
    parser.add_argument("--stream-rate", type=float, default=100_000,
                        help="events/s of the streamed RSS runs (0: skip them)")
    args = parser.parse_args()
    # Kept when a run fails, so that the worker's log can be read.
    tmp = tempfile.mkdtemp(prefix="armorflow-bench-")
    small = run(args.events, args.profiles, Path(tmp), not args.no_classify, args.broker)
    large = run(args.events * 10, args.profiles, Path(tmp), not args.no_classify, args.broker)
    shutil.rmtree(tmp, ignore_errors=True)
    for label, r in (("N", small), ("10xN", large)):
        print(f"[{label}] events={int(r['events']):,} messages={int(r['messages']):,}")
        print(f"  pipeline: {r['events_per_s']:,.0f} events/s, {r['messages_per_s']:,.0f} msg/s"
              f" ({r['seconds']:.1f} s; {r['startup_s']:.1f} s from ready to the first events)")
        print(f"  floor:    {r['floor_events_per_s']:,.0f} events/s,"
              f" {r['floor_messages_per_s']:,.0f} msg/s (confluent-kafka + orjson)")
        print(f"  ratio pipeline/floor: {r['ratio']:.2f}")
        print(f"  peak RSS of the worker: {r['peak_rss_mb']:.0f} MiB")
        honoured = "limits honoured" if r["fetched_mib"] <= 2 else "limits ignored by the broker"
        print(f"  one fetch limited to 1 MiB returned {r['fetched_mib']:,.1f} MiB ({honoured})")
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    print(f"broker: {args.broker}; peak RSS growth from N to 10xN (backlog): {growth * 100:+.1f}%")
    if args.stream_rate:
        tmp = tempfile.mkdtemp(prefix="armorflow-bench-")
        streamed = [run_streamed(n, args.profiles, Path(tmp), not args.no_classify,
                                 args.broker, args.stream_rate)
                    for n in (args.events, args.events * 10)]
        shutil.rmtree(tmp, ignore_errors=True)
        for label, n, r in (("N", args.events, streamed[0]),
                            ("10xN", args.events * 10, streamed[1])):
            print(f"[streamed {label}] events={n:,} at {args.stream_rate:,.0f} events/s:"
                  f" worker peak RSS {r['peak_rss_mb']:.0f} MiB"
                  f" (kept up: {r['events_per_s']:,.0f} events/s)")
        growth = streamed[1]["peak_rss_mb"] / streamed[0]["peak_rss_mb"] - 1
        print(f"peak RSS growth from N to 10xN (streamed): {growth * 100:+.1f}%")


if __name__ == "__main__":
    main()
