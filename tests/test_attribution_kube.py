"""Container ids to pods through a Kubernetes API server (kmock's emulator over HTTP)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from armorflow.agents.agent import kube_pod_lister
from armorflow.agents.attribution import (
    SECCOMP_OPT_OUT,
    Attributor,
    KubeResolver,
    LabelSelector,
    Target,
    TargetSet,
)


class ApiServer:
    """A Kubernetes API emulator in a thread, reachable over HTTP with a kubeconfig."""

    def __init__(self, workdir: Path):
        import kmock

        self.emulator = kmock.KubernetesEmulator()
        self.emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
        self.server = kmock.Server(self.emulator)
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        started = threading.Event()

        async def main() -> None:
            self.stopping = asyncio.Event()
            async with self.emulator, self.server:
                started.set()
                await self.stopping.wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),),
                                       daemon=True)
        self.thread.start()
        assert started.wait(10), "emulator did not start"
        self.url = str(self.server.url).rstrip("/")
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e",
            "clusters": [{"name": "e", "cluster": {"server": self.url}}],
            "users": [{"name": "e", "user": {"token": "t"}}],
            "contexts": [{"name": "e", "context": {"cluster": "e", "user": "e"}}],
        }))

    def create_pod(self, pod: dict[str, Any]) -> None:
        ns = pod["metadata"]["namespace"]
        request = urllib.request.Request(
            f"{self.url}/api/v1/namespaces/{ns}/pods", data=orjson.dumps(pod), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201)

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path)
    yield server
    server.stop()


def pod(name: str, ns: str, node: str, containers: dict[str, str],
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                     "labels": {"app": "demo-4"}, "annotations": annotations or {}},
        "spec": {"nodeName": node, "containers": [{"name": c, "image": "debian:10"}
                                                  for c in containers]},
        "status": {"containerStatuses": [{"name": c, "containerID": f"containerd://{cid}"}
                                         for c, cid in containers.items()]},
    }


def test_resolver_lists_this_nodes_pods_and_refreshes_on_a_miss(
    api: ApiServer, tmp_path: Path
) -> None:
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    api.create_pod(pod("demo-4-x", "default", "node-a", {"c0": a}))
    api.create_pod(pod("demo-4-y", "demo", "node-a", {"c0": b, "c1": c},
                       {SECCOMP_OPT_OUT + "c1": "unconfined"}))
    api.create_pod(pod("demo-4-z", "default", "node-b", {"c0": d}))
    resolver = KubeResolver(kube_pod_lister("node-a", api.kubeconfig), min_refresh_s=0.0)
    target = Target("varmor-cluster-varmor-demo-4", selector=LabelSelector({"app": "demo-4"}))
    attributor = Attributor(TargetSet([target]), resolver)

    found = attributor.for_container(a)
    assert found is not None and (found.namespace, found.pod, found.container) == (
        "default", "demo-4-x", "c0")
    c1 = attributor.for_container(c)
    assert c1 is not None and c1.enforcers == {"apparmor"}  # seccomp opted out
    assert attributor.for_container(d) is None  # another node's container
    refreshes = resolver.refreshes
    # A pod created after the first listing is found by the refresh a miss triggers.
    e = "e" * 64
    api.create_pod(pod("demo-4-w", "default", "node-a", {"c0": e}))
    late = attributor.for_container(e)
    assert late is not None and late.pod == "demo-4-w"
    assert resolver.refreshes > refreshes


def test_an_unreachable_api_server_keeps_the_known_containers(api: ApiServer) -> None:
    api.create_pod(pod("demo-4-x", "default", "node-a", {"c0": "a" * 64}))
    resolver = KubeResolver(kube_pod_lister("node-a", api.kubeconfig), min_refresh_s=0.0)
    assert resolver.resolve("a" * 64) is not None
    api.stop()
    assert resolver.resolve("f" * 64) is None  # the refresh fails: counted, not raised
    assert resolver.errors == 1
    assert resolver.resolve("a" * 64) is not None


def test_an_id_no_pod_names_does_not_list_the_node_at_every_scan(api: ApiServer) -> None:
    # A pod's pause container has a container cgroup but no pod status names it; the
    # agent scans /proc every two seconds, and must not list the node's pods each time.
    api.create_pod(pod("demo-4-x", "default", "node-a", {"c0": "a" * 64}))
    resolver = KubeResolver(kube_pod_lister("node-a", api.kubeconfig), min_refresh_s=0.0,
                            miss_first_s=0.3, miss_max_s=1.0)
    pause = "9" * 64
    assert resolver.resolve(pause) is None
    listed = resolver.refreshes
    for _ in range(20):
        assert resolver.resolve(pause) is None
    assert resolver.refreshes == listed  # waiting: no listing per lookup
    time.sleep(0.35)
    assert resolver.resolve(pause) is None
    assert resolver.refreshes == listed + 1  # then one, and the wait doubles
    time.sleep(0.35)
    assert resolver.resolve(pause) is None
    assert resolver.refreshes == listed + 1
    # a new container is still found by the listing its own first miss causes
    api.create_pod(pod("demo-4-y", "default", "node-a", {"c0": "b" * 64}))
    found = resolver.resolve("b" * 64)
    assert found is not None and found.pod == "demo-4-y"
