"""Attribution from the container runtime: a small client of the Kubernetes CRI (v1).

On a node the kubelet drives containerd (or cri-o) through the CRI gRPC API, and the
runtime keeps what the kubelet told it about each container: the pod's name, namespace,
uid, labels and annotations live on the pod sandbox, the container's name on the
container. Asking the runtime's socket instead of the API server keeps the agent working
when the API server is away, and costs no API server load per node.

The client speaks gRPC through ``grpcio`` with bytes in and out, and encodes the few
CRI messages it needs itself: the protobuf wire format is small, and generated stubs
would pull protoc into the build for six messages. Field numbers are those of
``runtime.v1`` (k8s.io/cri-api ``pkg/apis/runtime/v1/api.proto``); every helper names
the message and field it writes or reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from armorflow.agents.attribution import ListingResolver, Workload

#: containerd's socket on a kubelet node (cri-o: ``unix:///var/run/crio/crio.sock``).
DEFAULT_CRI_ENDPOINT: Final = "unix:///run/containerd/containerd.sock"
#: Largest answer accepted (a node with many pods lists more than gRPC's default 4 MiB).
MAX_MESSAGE_BYTES: Final = 16 << 20
_SERVICE: Final = "/runtime.v1.RuntimeService/"
#: Sandbox labels the kubelet adds to the pod's own labels; not part of the pod's labels.
KUBELET_LABEL_PREFIX: Final = "io.kubernetes."

# ContainerState and PodSandboxState enum values.
CONTAINER_RUNNING: Final = 1
SANDBOX_READY: Final = 0
# NamespaceMode: share the pod's namespace, the container's own, or the node's.
NAMESPACE_POD: Final = 0
NAMESPACE_CONTAINER: Final = 1
NAMESPACE_NODE: Final = 2


class CriError(RuntimeError):
    """The runtime could not be reached or refused a call."""


# --- protobuf wire format -------------------------------------------------------------------
# Only varint (type 0) and length-delimited (type 2) fields occur in the messages used here;
# the decoder skips fixed 32/64-bit fields so that newer runtimes' additions do no harm.

_VARINT: Final = 0
_FIXED64: Final = 1
_LENGTH: Final = 2
_FIXED32: Final = 5
_U64: Final = (1 << 64) - 1


def _varint(value: int) -> bytes:
    if value < 0:
        value &= _U64  # int64 negatives travel as ten-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value) if value else b""


def bytes_field(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | _LENGTH) + _varint(len(data)) + data


def string_field(number: int, value: str) -> bytes:
    """A string field; proto3 leaves an empty string off the wire."""
    return bytes_field(number, value) if value else b""


def message_field(number: int, *parts: bytes) -> bytes:
    """An embedded message made of already encoded fields (present even when empty)."""
    return bytes_field(number, b"".join(parts))


def repeated_strings(number: int, values: Iterable[str]) -> bytes:
    return b"".join(bytes_field(number, v) for v in values)


def map_field(number: int, mapping: Mapping[str, str]) -> bytes:
    """``map<string, string>``: one entry message (key = 1, value = 2) per item."""
    return b"".join(message_field(number, string_field(1, k), string_field(2, v))
                    for k, v in sorted(mapping.items()))


Fields = dict[int, list[int | bytes]]


def decode(data: bytes) -> Fields:
    """Field number -> values in wire order (ints for varints, bytes for the rest).

    Varints come back as unsigned 64-bit values (the fields read here are enums and
    counts); anything malformed raises :class:`CriError`.
    """
    fields: Fields = {}
    pos, end = 0, len(data)

    def read_varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= end or shift > 63:
                raise CriError("truncated or overlong varint in a CRI message")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result & _U64  # a tenth byte may carry bits past 64: dropped
            shift += 7

    while pos < end:
        key = read_varint()
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise CriError("field number 0 in a CRI message")
        value: int | bytes
        if wire_type == _VARINT:
            value = read_varint()
        elif wire_type == _LENGTH:
            size = read_varint()
            if pos + size > end:
                raise CriError("a CRI message field runs past the message")
            value = data[pos:pos + size]
            pos += size
        elif wire_type in (_FIXED64, _FIXED32):
            pos += 8 if wire_type == _FIXED64 else 4
            if pos > end:
                raise CriError("a fixed-width field runs past the CRI message")
            continue
        else:
            raise CriError(f"unsupported protobuf wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def _last(fields: Fields, number: int) -> int | bytes | None:
    values = fields.get(number)
    return values[-1] if values else None


def get_str(fields: Fields, number: int) -> str:
    value = _last(fields, number)
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else ""


def get_int(fields: Fields, number: int) -> int:
    value = _last(fields, number)
    return value if isinstance(value, int) else 0


def get_message(fields: Fields, number: int) -> Fields:
    value = _last(fields, number)
    return decode(value) if isinstance(value, bytes) else {}


def get_messages(fields: Fields, number: int) -> Iterator[Fields]:
    for value in fields.get(number, []):
        if isinstance(value, bytes):
            yield decode(value)


def get_map(fields: Fields, number: int) -> dict[str, str]:
    return {get_str(entry, 1): get_str(entry, 2) for entry in get_messages(fields, number)}


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
    def from_wire(cls, msg: Fields) -> PodSandbox:
        meta = get_message(msg, 2)  # PodSandbox.metadata: PodSandboxMetadata
        return cls(id=get_str(msg, 1), name=get_str(meta, 1), uid=get_str(meta, 2),
                   namespace=get_str(meta, 3), ready=get_int(msg, 3) == SANDBOX_READY,
                   labels=get_map(msg, 5), annotations=get_map(msg, 6))


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
    def from_wire(cls, msg: Fields) -> Container:
        meta = get_message(msg, 3)  # Container.metadata: ContainerMetadata
        return cls(id=get_str(msg, 1), sandbox_id=get_str(msg, 2), name=get_str(meta, 1),
                   running=get_int(msg, 6) == CONTAINER_RUNNING,
                   labels=get_map(msg, 8), annotations=get_map(msg, 9))


class CriClient:
    """The read side of ``runtime.v1.RuntimeService``; :meth:`call` serves any method."""

    def __init__(self, endpoint: str = DEFAULT_CRI_ENDPOINT, timeout_s: float = 5.0):
        import grpc

        if endpoint.startswith("/"):
            endpoint = "unix://" + endpoint
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._grpc = grpc
        self._channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: bytes, timeout_s: float | None = None) -> Fields:
        """One unary call with an encoded request; the decoded response."""
        # No serializers: grpcio passes bytes through both ways.
        stub: Any = self._channel.unary_unary(_SERVICE + method)
        try:
            response = stub(request, timeout=self.timeout_s if timeout_s is None else timeout_s)
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise CriError(f"CRI {method} at {self.endpoint}: {code}: {details}") from None
        return decode(bytes(response))

    def version(self) -> dict[str, str]:
        resp = self.call("Version", string_field(1, "v1"))
        return {"version": get_str(resp, 1), "runtime_name": get_str(resp, 2),
                "runtime_version": get_str(resp, 3), "runtime_api_version": get_str(resp, 4)}

    def list_pod_sandboxes(self) -> list[PodSandbox]:
        resp = self.call("ListPodSandbox", b"")
        return [PodSandbox.from_wire(m) for m in get_messages(resp, 1)]

    def list_containers(self, *, running_only: bool = True) -> list[Container]:
        # ListContainersRequest.filter (1) -> ContainerFilter.state (2) -> .state (1)
        request = (message_field(1, message_field(2, varint_field(1, CONTAINER_RUNNING)))
                   if running_only else b"")
        resp = self.call("ListContainers", request)
        return [Container.from_wire(m) for m in get_messages(resp, 1)]


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
