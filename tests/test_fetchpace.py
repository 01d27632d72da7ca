"""Fetch pacing against the real embedded broker, which answers empty fetches at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiokafka

from armorflow import fetchpace
from armorflow.broker import EmbeddedBroker


async def _idle_then_new_record(bootstrap: str) -> tuple[int, float]:
    """(fetch requests sent by a caught-up consumer in 2 s, seconds until a new record
    produced after that is consumed)."""
    topic = f"pace-{uuid.uuid4().hex[:8]}"
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    consumer = None
    try:
        await producer.send_and_wait(topic, b"first")
        consumer = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=500,
        )
        await consumer.start()
        got = await consumer.getmany(timeout_ms=5000)
        assert sum(len(v) for v in got.values()) == 1

        client: Any = consumer._client
        sent = 0
        send = client.send

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await send(*args, **kwargs)

        client.send = counting
        assert not await consumer.getmany(timeout_ms=2000)
        idle_requests = sent

        started = time.monotonic()
        await producer.send_and_wait(topic, b"second")
        while not await consumer.getmany(timeout_ms=100):
            assert time.monotonic() - started < 10
        return idle_requests, time.monotonic() - started
    finally:
        if consumer is not None:
            await consumer.stop()
        await producer.stop()


def test_idle_consumer_does_not_spin_and_new_records_still_arrive_promptly(
    noida_broker: EmbeddedBroker,
) -> None:
    was_installed = fetchpace.installed()
    fetchpace.uninstall()
    try:
        # The broker's quirk, as measured: without pacing a caught-up consumer spins.
        unpaced, _ = asyncio.run(_idle_then_new_record(noida_broker.bootstrap_servers))
        assert unpaced > 500, unpaced
        fetchpace.install()
        fetchpace.install()  # idempotent
        paced, latency = asyncio.run(_idle_then_new_record(noida_broker.bootstrap_servers))
    finally:
        # Leave the process as it was found, whatever failed.
        if was_installed:
            fetchpace.install()
        else:
            fetchpace.uninstall()
    # One fetch per 100 ms while idle (a long-polling Kafka broker: one per max wait).
    assert paced <= 40, paced
    assert latency < 1.0, latency
