"""Which workloads a policy targets, and how to roll them.

A workload is a target when it carries the opt-in label ``sandbox.varmor.org/enable:
"true"``, has the policy's ``target.kind``, lives in the policy's namespace (any
namespace for a cluster policy) and is named ``target.name`` or has labels matching
``target.selector``. Restarting one means changing its pod template, as
``kubectl rollout restart`` does, so its controller replaces the pods gradually.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .policy import Policy

ENABLE_LABEL: Final = "sandbox.varmor.org/enable"
RESTART_ANNOTATION: Final = "armorflow.io/restartedAt"
#: Kinds whose pods a rolling restart can replace (a bare Pod cannot be restarted).
RESTARTABLE_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    namespace: str
    name: str

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def is_target(policy: Policy, kind: str, obj: dict[str, Any]) -> bool:
    """Whether the workload object (of ``kind``) is one of the policy's targets."""
    if kind != policy.target.kind:
        return False
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return False
    if not policy.cluster_wide and meta.get("namespace") != policy.namespace:
        return False
    labels = _labels(obj)
    if labels.get(ENABLE_LABEL) != "true":
        return False
    if policy.target.name is not None:
        return meta.get("name") == policy.target.name
    return policy.target.selector is not None and policy.target.selector.matches(labels)


def matched_workloads(
    policy: Policy, kind: str, objects: list[dict[str, Any]]
) -> list[WorkloadRef]:
    out: list[WorkloadRef] = []
    for obj in objects:
        if is_target(policy, kind, obj):
            meta = obj["metadata"]
            out.append(WorkloadRef(kind, str(meta.get("namespace") or ""), str(meta["name"])))
    return sorted(out, key=lambda w: (w.namespace, w.name))


def restart_patch(stamp: str) -> dict[str, Any]:
    """The patch that makes a controller roll its pods."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
