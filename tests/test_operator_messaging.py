"""The operator's Kafka side against a real broker: status reports in (bad ones skipped and
counted, good ones around them kept), targets read back, controls out."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from armorflow.broker import EmbeddedBroker
from armorflow.control import decode_control, make_control, make_status
from armorflow.kafka import EventProducer, make_consumer
from armorflow.operator.messaging import (
    ControlPublisher,
    StatusError,
    StatusListener,
    StatusReport,
    parse_status,
)
from armorflow.operator.service import read_active_targets
from armorflow.topics import CONTROL_TOPIC, STATUS_TOPIC

pytestmark = pytest.mark.broker


def test_parse_status_rejects_clearly() -> None:
    good = parse_status(orjson.dumps(
        {"v": 1, "profile": "p", "phase": "Completed", "ts": 5, "counts": {"exec": 2, "bad": "x"}}))
    assert (good.profile, good.phase, good.counts) == ("p", "Completed", {"exec": 2})
    for value, needle in [
        (b"{", "not JSON"), (b"[]", "JSON object"), (b'{"phase":"Completed","ts":1}', "profile"),
        (b'{"profile":"p","phase":"Completed","ts":"1"}', "ts"),
    ]:
        with pytest.raises(StatusError, match=needle):
            parse_status(value)


def test_status_listener_keeps_good_reports_around_bad_ones(broker: EmbeddedBroker) -> None:
    producer = EventProducer(broker.settings())
    producer.produce_raw(STATUS_TOPIC, "a", make_status("a", "Modeling"))
    producer.produce_raw(STATUS_TOPIC, "b", b"not json")
    producer.produce_raw(STATUS_TOPIC, "c", b'{"profile": "c"}')
    producer.produce_raw(STATUS_TOPIC, "d", make_status("d", "Completed", counts={"file": 7}))
    producer.flush()
    seen: list[StatusReport] = []
    got_d = threading.Event()

    def on_report(report: StatusReport) -> None:
        seen.append(report)
        if report.profile == "d":
            got_d.set()

    listener = StatusListener(broker.settings(), on_report, group_id="t-status").start()
    try:
        assert got_d.wait(30), "no report within 30 s"
        time.sleep(0.5)
    finally:
        listener.stop()
    # "a" and "d" live in different partitions: their relative order is not defined.
    assert sorted((r.profile, r.phase) for r in seen) == [("a", "Modeling"), ("d", "Completed")]
    assert next(r for r in seen if r.profile == "d").counts == {"file": 7}
    assert listener.rejected == 2 and listener.received == 2 and listener.error is None


def test_publisher_and_active_targets(broker: EmbeddedBroker) -> None:
    publisher = ControlPublisher(broker.settings())
    publisher.control(make_control("start", "varmor-demo-x", duration_s=60))
    publisher.targets("varmor-demo-x", {"v": 1, "profile": "varmor-demo-x", "active": True})
    publisher.targets("varmor-demo-y", {"v": 1, "profile": "varmor-demo-y", "active": True})
    publisher.targets("varmor-demo-y", {"v": 1, "profile": "varmor-demo-y", "active": False})
    publisher.flush()
    active = read_active_targets(broker.settings())
    assert set(active) == {"varmor-demo-x"}
    consumer = make_consumer(broker.settings(), "t-control")
    consumer.subscribe([CONTROL_TOPIC])
    try:
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() == b"varmor-demo-x":
                found = decode_control(msg.value() or b"")
    finally:
        consumer.close()
    assert found is not None and found.type == "start" and found.duration_s == 60
