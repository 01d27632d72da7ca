"""An operator restart in the middle of modeling neither restarts the window nor loses the
next change: what was told to the pipeline is read back from the policy's status.

In-process services (``OperatorService``) against the project's Kubernetes API emulator and
a real embedded broker; one service at a time, as the chart runs one replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from kubernetes import client

from armorflow.broker import EmbeddedBroker
from armorflow.control import Control, decode_control
from armorflow.kafka import make_consumer
from armorflow.operator.kube import Kube
from armorflow.operator.service import OperatorService
from armorflow.topics import CONTROL_TOPIC
from support.kube import KubeEmulator, kube_emulator
from support.waiting import wait_for

pytestmark = pytest.mark.broker

PROFILE = "varmor-cluster-varmor-restart"
POLICY = {
    "apiVersion": "crd.varmor.org/v1beta1", "kind": "VarmorClusterPolicy",
    "metadata": {"name": "restart"},
    "spec": {
        "target": {"kind": "Deployment", "selector": {"matchLabels": {"app": "restart"}}},
        "policy": {"enforcer": "AppArmor", "mode": "BehaviorModeling",
                   "modelingOptions": {"duration": 30}},
    },
}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    yield from kube_emulator(workdir=tmp_path_factory.mktemp("kube"))



def controls(broker: EmbeddedBroker) -> list[Control]:
    """Every control of the profile so far: each partition read from 0 to its end."""
    consumer = make_consumer(broker.settings(), f"restart-{time.time_ns()}")
    out: list[Control] = []
    try:
        meta = consumer.list_topics(CONTROL_TOPIC, timeout=10).topics[CONTROL_TOPIC]
        ends = {}
        for p in meta.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(CONTROL_TOPIC, p), timeout=10)
            if high > 0:
                ends[p] = high
        consumer.assign([TopicPartition(CONTROL_TOPIC, p, 0) for p in ends])
        left = dict(ends)
        deadline = time.monotonic() + 20
        while left and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            if msg.key() == PROFILE.encode():
                out.append(decode_control(msg.value() or b""))
            if (msg.offset() or 0) + 1 >= left.get(msg.partition() or 0, 0):
                left.pop(msg.partition() or 0, None)
    finally:
        consumer.close()
    return out


def test_restart_keeps_the_window_and_catches_up(
    kube: KubeEmulator, broker: EmbeddedBroker
) -> None:
    custom = client.CustomObjectsApi(kube.api_client())
    args = ("crd.varmor.org", "v1beta1", "varmorclusterpolicies")

    def status() -> dict[str, Any]:
        obj = custom.get_cluster_custom_object(*args, "restart")
        return dict(obj.get("status") or {})

    first = OperatorService(Kube(kube.api_client()), broker.settings(), resync_s=1).start()
    try:
        custom.create_cluster_custom_object(*args, POLICY)
        wait_for("Modeling", lambda: status().get("phase") == "Modeling")
        assert first.synced.wait(10)
    finally:
        first.stop()
    before = status()
    assert [c.type for c in controls(broker)] == ["start"]

    # Changed while no operator runs: the next one must notice from the status alone.
    custom.patch_cluster_custom_object(
        *args, "restart", {"spec": {"policy": {"modelingOptions": {"duration": 1}}}})
    second = OperatorService(Kube(kube.api_client()), broker.settings(), resync_s=1).start()
    try:
        assert second.synced.wait(10)
        wait_for("the duration recorded", lambda: status()["modeling"]["duration"] == 1)
        time.sleep(2.5)  # two more resyncs: nothing else may happen
        assert second.counters.by_type == {"update": 1}
    finally:
        second.stop()
    seen = controls(broker)
    assert [c.type for c in seen] == ["start", "update"]
    assert seen[1].duration_s == 60
    after = status()
    assert after["modeling"]["startTs"] == before["modeling"]["startTs"] == seen[0].start_ts
    assert after["phase"] == "Modeling" and after["ready"] is True
