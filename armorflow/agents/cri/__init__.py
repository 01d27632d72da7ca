"""The container runtime's view of the node, through the Kubernetes CRI (runtime.v1).

``api.proto`` is the subset of the CRI that armorflow speaks; ``api_pb2*`` are generated
from it by grpcio-tools (``make cri-stubs``) and committed. :mod:`.client` wraps them.
"""

from armorflow.agents.cri.client import (
    DEFAULT_CRI_ENDPOINT,
    KUBELET_LABEL_PREFIX,
    Container,
    CriClient,
    CriError,
    CriResolver,
    PodSandbox,
    workloads_from_runtime,
)

__all__ = [
    "DEFAULT_CRI_ENDPOINT",
    "KUBELET_LABEL_PREFIX",
    "Container",
    "CriClient",
    "CriError",
    "CriResolver",
    "PodSandbox",
    "workloads_from_runtime",
]
