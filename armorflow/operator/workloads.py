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

from armorflow.agents.attribution import SECCOMP_OPT_OUT

from .policy import Policy

ENABLE_LABEL: Final = "sandbox.varmor.org/enable"
#: The label a workload opts in with (vArmor's ``--webhookMatchLabel``); None: no opt-in.
MatchLabel = tuple[str, str] | None
DEFAULT_MATCH_LABEL: Final[tuple[str, str]] = (ENABLE_LABEL, "true")
RESTART_ANNOTATION: Final = "armorflow.io/restartedAt"
#: Kinds whose pods a rolling restart can replace (a bare Pod cannot be restarted).
RESTARTABLE_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet")
#: Kinds whose objects the operator lists (Pods only to resolve a Pod target by name).
LISTABLE_KINDS: Final = (*RESTARTABLE_KINDS, "Pod")


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


def parse_match_label(text: str) -> MatchLabel:
    """``key=value`` (or ``key``, meaning ``key=true``); empty: workloads need no opt-in."""
    text = text.strip()
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not key.strip():
        raise ValueError(f"match label {text!r} is not key=value")
    return (key.strip(), value.strip() if sep else "true")


def label_selector(match_label: MatchLabel) -> str | None:
    """The API list selector for opted-in workloads (None: every workload)."""
    return None if match_label is None else f"{match_label[0]}={match_label[1]}"


def is_target(policy: Policy, kind: str, obj: dict[str, Any],
              match_label: MatchLabel = DEFAULT_MATCH_LABEL) -> bool:
    """Whether the workload object (of ``kind``) is one of the policy's targets."""
    if kind != policy.target.kind:
        return False
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return False
    if not policy.cluster_wide and meta.get("namespace") != policy.namespace:
        return False
    labels = _labels(obj)
    if match_label is not None and labels.get(match_label[0]) != match_label[1]:
        return False
    if policy.target.name is not None:
        return meta.get("name") == policy.target.name
    return policy.target.selector is not None and policy.target.selector.matches(labels)


def matched_workloads(
    policy: Policy, kind: str, objects: list[dict[str, Any]],
    match_label: MatchLabel = DEFAULT_MATCH_LABEL,
) -> list[WorkloadRef]:
    out: list[WorkloadRef] = []
    for obj in objects:
        if is_target(policy, kind, obj, match_label):
            meta = obj["metadata"]
            out.append(WorkloadRef(kind, str(meta.get("namespace") or ""), str(meta["name"])))
    return sorted(out, key=lambda w: (w.namespace, w.name))


def restart_patch(stamp: str) -> dict[str, Any]:
    """The patch that makes a controller roll its pods."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}


#: A pod selector no pod satisfies: what the agents get for a target whose workload does
#: not exist (yet), instead of an empty selector that would capture every pod.
MATCHES_NOTHING: Final[dict[str, Any]] = {"matchExpressions": [
    {"key": "armorflow.io/unresolved", "operator": "Exists"},
    {"key": "armorflow.io/unresolved", "operator": "DoesNotExist"},
]}


@dataclass(frozen=True)
class PodScope:
    """Which pods the agents capture for a policy: a pod-label selector in namespaces.

    The agents only see pods, so the operator translates the workload-level target.
    """

    selector: dict[str, Any]
    namespaces: tuple[str, ...] | None  # None: every namespace

    def to_json(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "namespaces": list(self.namespaces) if self.namespaces is not None else None,
        }


def _pod_selector_of(kind: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "Pod":
        labels = _labels(obj)
        return {"matchLabels": labels} if labels else None
    spec = obj.get("spec")
    selector = spec.get("selector") if isinstance(spec, dict) else None
    return selector if isinstance(selector, dict) and selector else None


def pod_scope(policy: Policy, objects: list[dict[str, Any]] | None = None,
              match_label: MatchLabel = DEFAULT_MATCH_LABEL) -> PodScope:
    """The pods of a policy's target.

    A selector target selects pods by the same labels (workloads pass their labels to
    their pods, as the walkthrough's do); the opt-in label is on the workload, which the
    agents do not see, except for a Pod target, whose selector requires it. A named
    target becomes the named workload's own pod selector, found among ``objects`` (the
    opted-in workloads of the target kind); if the name is used in several namespaces
    with different selectors, the first namespace's selector, and the namespaces sharing
    it, win.
    """
    own = None if policy.cluster_wide else (policy.namespace,)
    if policy.target.name is None:
        labels = policy.target.selector.to_json() if policy.target.selector else {}
        if labels and policy.target.kind == "Pod" and match_label is not None:
            # A bare pod opts in with its own label, so the agents can check it too.
            key, value = match_label
            labels["matchLabels"] = {**labels.get("matchLabels", {}), key: value}
        return PodScope(labels or MATCHES_NOTHING, own)
    found: dict[str, list[str]] = {}
    first: dict[str, dict[str, Any]] = {}
    for obj in objects or []:
        if not is_target(policy, policy.target.kind, obj, match_label):
            continue
        pods = _pod_selector_of(policy.target.kind, obj)
        if pods is None:
            continue
        key = repr(sorted(pods.items()))
        found.setdefault(key, []).append(str(obj["metadata"].get("namespace") or ""))
        first.setdefault(key, pods)
    if not found:
        return PodScope(MATCHES_NOTHING, own)
    key = min(found, key=lambda k: min(found[k]))
    return PodScope(first[key], tuple(sorted(set(found[key]))))


# --- the learned Seccomp profile in a pod template ------------------------------------------

#: Kinds whose pod template the operator can change; a bare Pod's securityContext is fixed
#: once it is created, so a Pod target is reported, not patched.
PATCHABLE_KINDS: Final = RESTARTABLE_KINDS


def localhost_seccomp(localhost_profile: str) -> dict[str, Any]:
    return {"type": "Localhost", "localhostProfile": localhost_profile}


def _template(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod (template) object: ``metadata`` and ``spec`` of the workload's pods."""
    spec = obj.get("spec")
    if kind == "Pod":
        return obj
    template = spec.get("template") if isinstance(spec, dict) else None
    return template if isinstance(template, dict) else {}


#: One enforced container: its index in the template, its name, its securityContext.
EnforcedContainer = tuple[int, str, dict[str, Any] | None]


def enforced_containers(kind: str, obj: dict[str, Any], only: tuple[str, ...]
                        ) -> list[EnforcedContainer]:
    """The containers the learned profile is for: every regular container, or those
    named in the policy's ``target.containers``, less those opted out of Seccomp modeling
    (the pod annotation the agents' attribution honours). Init containers are left out:
    they may have run before the window opened (pods that were not restarted), never
    observed."""
    template = _template(kind, obj)
    meta = template.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    annotations = annotations if isinstance(annotations, dict) else {}
    spec = template.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    out: list[EnforcedContainer] = []
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, dict) or not isinstance(container.get("name"), str):
            continue
        name = container["name"]
        if (only and name not in only) or annotations.get(SECCOMP_OPT_OUT + name) == (
                "unconfined"):
            continue
        context = container.get("securityContext")
        out.append((index, name, context if isinstance(context, dict) else None))
    return out


def seccomp_patch(enforced: list[EnforcedContainer], localhost_profile: str
                  ) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) of a workload's pod template that puts the ``enforced``
    containers not under the profile yet under it, each guarded by a ``test`` of its name,
    so a template changed meanwhile (containers reordered) fails the patch instead of
    confining another one. Empty when every one is under it already. Changing the
    template rolls the pods."""
    wanted = localhost_seccomp(localhost_profile)
    ops: list[dict[str, Any]] = []
    for index, name, context in enforced:
        if context is not None and context.get("seccompProfile") == wanted:
            continue
        base = f"/spec/template/spec/containers/{index}"
        ops.append({"op": "test", "path": f"{base}/name", "value": name})
        if context is not None:
            ops.append({"op": "add", "path": f"{base}/securityContext/seccompProfile",
                        "value": wanted})
        else:
            ops.append({"op": "add", "path": f"{base}/securityContext",
                        "value": {"seccompProfile": wanted}})
    return ops
