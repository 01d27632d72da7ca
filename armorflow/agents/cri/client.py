"""Attribution from the container runtime: a small client of the Kubernetes CRI (v1).

On a node the kubelet drives containerd (or cri-o) through the CRI gRPC API, and the
runtime keeps what the kubelet told it about each container: the pod's name, namespace,
uid, labels and annotations live on the pod sandbox, the container's name on the
container. Asking the runtime's socket instead of the API server keeps the agent working
when the API server is away, and costs no API server load per node.

The messages and the service stub are generated from ``api.proto`` (beside this file) by
grpcio-tools; this module turns the runtime's answers into :class:`PodSandbox` and
:class:`Container` values and the node's :class:`Workload` list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import Message

from armorflow.agents.attribution import ListingResolver, Workload
from armorflow.agents.cri import api_pb2 as api
from armorflow.agents.cri.api_pb2_grpc import RuntimeServiceStub

#: containerd's socket on a kubelet node (cri-o: ``unix:///var/run/crio/crio.sock``).
DEFAULT_CRI_ENDPOINT: Final = "unix:///run/containerd/containerd.sock"
#: Largest answer accepted (a node with many pods lists more than gRPC's default 4 MiB).
MAX_MESSAGE_BYTES: Final = 16 << 20
#: Sandbox labels the kubelet adds to the pod's own labels; not part of the pod's labels.
KUBELET_LABEL_PREFIX: Final = "io.kubernetes."

Reply = TypeVar("Reply", bound=Message)


class CriError(RuntimeError):
    """The runtime could not be reached or refused a call."""


# --- the runtime's view ---------------------------------------------------------------------


@dataclass(frozen=True)
class PodSandbox:
    """``runtime.v1.PodSandbox``: a pod as the runtime knows it."""

    id: str
    name: str
    namespace: str
    uid: str
    ready: bool
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_message(cls, msg: api.PodSandbox) -> PodSandbox:
        meta = msg.metadata
        return cls(id=msg.id, name=meta.name, uid=meta.uid, namespace=meta.namespace,
                   ready=msg.state == api.SANDBOX_READY,
                   labels=dict(msg.labels), annotations=dict(msg.annotations))


@dataclass(frozen=True)
class Container:
    """``runtime.v1.Container``: one container of a sandbox."""

    id: str
    sandbox_id: str
    name: str
    running: bool
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_message(cls, msg: api.Container) -> Container:
        return cls(id=msg.id, sandbox_id=msg.pod_sandbox_id, name=msg.metadata.name,
                   running=msg.state == api.CONTAINER_RUNNING,
                   labels=dict(msg.labels), annotations=dict(msg.annotations))


class CriClient:
    """``runtime.v1.RuntimeService`` over a unix socket; :meth:`call` serves any method."""

    def __init__(self, endpoint: str = DEFAULT_CRI_ENDPOINT, timeout_s: float = 5.0):
        if endpoint.startswith("/"):
            endpoint = "unix://" + endpoint
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        #: The generated stub, one callable per RPC (``stub.RunPodSandbox(request)``);
        #: grpcio-tools writes it without annotations.
        self.stub: Any = RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., Reply], request: Message,
             timeout_s: float | None = None) -> Reply:
        """One unary call (``client.call(client.stub.Version, request)``), errors as
        :class:`CriError` naming the method and the endpoint."""
        try:
            return method(request, timeout=self.timeout_s if timeout_s is None else timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            name = type(request).__name__.removesuffix("Request")
            raise CriError(f"CRI {name} at {self.endpoint}: {code}: {details}") from None

    def version(self) -> dict[str, str]:
        resp = self.call(self.stub.Version, api.VersionRequest(version="v1"))
        return {"version": resp.version, "runtime_name": resp.runtime_name,
                "runtime_version": resp.runtime_version,
                "runtime_api_version": resp.runtime_api_version}

    def list_pod_sandboxes(self) -> list[PodSandbox]:
        resp = self.call(self.stub.ListPodSandbox, api.ListPodSandboxRequest())
        return [PodSandbox.from_message(m) for m in resp.items]

    def list_containers(self, *, running_only: bool = True) -> list[Container]:
        request = api.ListContainersRequest()
        if running_only:
            request.filter.state.state = api.CONTAINER_RUNNING
        resp = self.call(self.stub.ListContainers, request)
        return [Container.from_message(m) for m in resp.containers]


def workloads_from_runtime(sandboxes: Iterable[PodSandbox],
                           containers: Iterable[Container]) -> list[Workload]:
    """Join containers to their sandboxes; the kubelet's own sandbox labels are dropped."""
    by_id = {s.id: s for s in sandboxes}
    out = []
    for c in containers:
        sandbox = by_id.get(c.sandbox_id)
        if sandbox is None:
            continue  # created between the two list calls; the next refresh has it
        labels = {k: v for k, v in sandbox.labels.items()
                  if not k.startswith(KUBELET_LABEL_PREFIX)}
        out.append(Workload(
            container_id=c.id, namespace=sandbox.namespace, pod=sandbox.name,
            container=c.name, pod_uid=sandbox.uid, labels=labels,
            annotations=dict(sandbox.annotations),
        ))
    return out


class CriResolver(ListingResolver):
    """Container ids of this node's containers, from the runtime.

    Containers in every state are listed: one just created (its process already in its
    cgroup) or just exited (its last events still queued) must resolve too; the kubelet's
    garbage collection keeps that list short. Sandbox (pause) containers have ids too and
    are never workloads: the listing names them, so scanning them causes no listing.

    Labels and annotations are the pod's as the kubelet passed them when it created the
    sandbox, as vArmor's webhook sees them; a label added to a running pod later is not
    seen here (``KubeResolver``'s listing has it after its next refresh).
    """

    def __init__(self, client: CriClient, min_refresh_s: float = 2.0, **waits: float):
        super().__init__(min_refresh_s, **waits)
        self.client = client

    def list_node(self) -> tuple[list[Workload], set[str]]:
        sandboxes = self.client.list_pod_sandboxes()
        containers = self.client.list_containers(running_only=False)
        return workloads_from_runtime(sandboxes, containers), {s.id for s in sandboxes}
