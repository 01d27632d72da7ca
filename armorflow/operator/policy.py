"""Typed views of VarmorPolicy / VarmorClusterPolicy objects, their validation, and the
profile name each policy models into.

The Kubernetes API hands us plain dicts; everything the operator decides reads them
through :func:`parse_policy`, so that a malformed object becomes a list of clear problems
(reported in the policy's status) instead of a ``KeyError`` deep in a reconcile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from armorflow.control import ENFORCERS, MAX_DURATION_S, PolicyRef
from armorflow.selector import LabelSelector

GROUP: Final = "crd.varmor.org"
VERSION: Final = "v1beta1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

PolicyKind = Literal["VarmorPolicy", "VarmorClusterPolicy"]
KIND_POLICY: Final = "VarmorPolicy"
KIND_CLUSTER_POLICY: Final = "VarmorClusterPolicy"
PLURALS: Final[dict[str, str]] = {
    KIND_POLICY: "varmorpolicies",
    KIND_CLUSTER_POLICY: "varmorclusterpolicies",
}

MODE_BEHAVIOR_MODELING: Final = "BehaviorModeling"
MODES: Final = frozenset(
    {"AlwaysAllow", "RuntimeDefault", "EnhanceProtect", MODE_BEHAVIOR_MODELING, "DefenseInDepth"}
)
TARGET_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet", "Pod")

#: Namespace vArmor (and armorflow's chart) is installed in: cluster policies' profiles are
#: named after it and their ArmorProfileModel lives there.
DEFAULT_SYSTEM_NAMESPACE: Final = "varmor"

#: The opt-in field (under ``spec.policy.modelingOptions``) that has the operator put a
#: Completed model's Seccomp profile into force on the policy's target workloads.
ENFORCE_SECCOMP_FIELD: Final = "enforceSeccompWhenCompleted"

#: Longest Kubernetes object name (DNS subdomain): the profile names an ArmorProfileModel.
MAX_PROFILE_NAME: Final = 253


class PolicyError(ValueError):
    """An object that is not a VarmorPolicy / VarmorClusterPolicy at all."""


@dataclass(frozen=True)
class PolicyTarget:
    kind: str
    name: str | None
    selector: LabelSelector | None
    containers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "selector": self.selector.to_json() if self.selector is not None else None,
            "containers": list(self.containers),
        }


@dataclass(frozen=True)
class PolicyStatus:
    """The parts of ``.status`` the operator reads back (it wrote them all)."""

    profile_name: str = ""
    ready: bool = False
    phase: str = ""
    accepted_mode: str = ""
    start_ts: int | None = None
    duration: int | None = None
    target_digest: str = ""
    workloads_restarted: int | None = None
    completed_ts: int | None = None
    observed_generation: int | None = None
    conditions: tuple[dict[str, Any], ...] = ()
    #: ``status.seccompEnforcement`` as the operator last wrote it (see :mod:`enforcement`)
    seccomp_enforcement: dict[str, Any] | None = None


@dataclass(frozen=True)
class Policy:
    """One policy object, parsed; ``problems`` lists what is wrong with its spec."""

    kind: PolicyKind
    name: str
    namespace: str  # "" for a cluster policy
    uid: str
    generation: int | None
    deleting: bool
    enforcer: str
    mode: str
    duration: int | None  # minutes
    update_existing_workloads: bool
    #: ``modelingOptions.enforceSeccompWhenCompleted``: once Completed, the operator sets
    #: the learned Seccomp profile (``Localhost``) in the targets' pod templates.
    enforce_seccomp: bool
    target: PolicyTarget
    status: PolicyStatus
    problems: tuple[str, ...]

    @property
    def cluster_wide(self) -> bool:
        return self.kind == KIND_CLUSTER_POLICY

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(kind=self.kind, namespace=self.namespace, name=self.name, uid=self.uid)

    def describe(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


def profile_name(kind: str, namespace: str, name: str,
                 system_namespace: str = DEFAULT_SYSTEM_NAMESPACE) -> str:
    """The name of a policy's profile (and of its ArmorProfileModel), as vArmor names it."""
    if kind == KIND_CLUSTER_POLICY:
        return f"varmor-cluster-{system_namespace}-{name}"
    return f"varmor-{namespace}-{name}"


def model_namespace(policy: Policy, system_namespace: str = DEFAULT_SYSTEM_NAMESPACE) -> str:
    """Where the ArmorProfileModel of a policy lives."""
    return system_namespace if policy.cluster_wide else policy.namespace


def target_digest(policy: Policy, pods: dict[str, Any] | None = None) -> str:
    """A short fingerprint of what the agents are told to capture for this policy."""
    blob = orjson.dumps(
        {"target": policy.target.to_json(), "enforcer": policy.enforcer, "pods": pods},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(blob).hexdigest()[:16]


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_status(raw: Any) -> PolicyStatus:
    if not isinstance(raw, dict):
        return PolicyStatus()
    modeling = raw.get("modeling") if isinstance(raw.get("modeling"), dict) else {}
    assert isinstance(modeling, dict)
    conditions = raw.get("conditions")
    return PolicyStatus(
        profile_name=str(raw.get("profileName") or ""),
        ready=raw.get("ready") is True,
        phase=str(raw.get("phase") or ""),
        accepted_mode=str(raw.get("acceptedMode") or ""),
        start_ts=_opt_int(modeling.get("startTs")),
        duration=_opt_int(modeling.get("duration")),
        target_digest=str(modeling.get("targetDigest") or ""),
        workloads_restarted=_opt_int(modeling.get("workloadsRestarted")),
        completed_ts=_opt_int(modeling.get("completedTs")),
        observed_generation=_opt_int(raw.get("observedGeneration")),
        conditions=tuple(c for c in conditions if isinstance(c, dict))
        if isinstance(conditions, list) else (),
        seccomp_enforcement=raw.get("seccompEnforcement")
        if isinstance(raw.get("seccompEnforcement"), dict) else None,
    )


def _parse_selector(raw: Any, problems: list[str]) -> LabelSelector:
    selector, found = LabelSelector.parse(raw, "target.selector")
    problems.extend(found)
    if selector.empty and not found:
        problems.append("target.selector is empty: it would match every workload")
    return selector


def _parse_target(raw: Any, problems: list[str]) -> PolicyTarget:
    if not isinstance(raw, dict):
        problems.append("spec.target is required")
        return PolicyTarget(kind="", name=None, selector=None, containers=())
    kind = raw.get("kind")
    if kind not in TARGET_KINDS:
        problems.append(f"target.kind {kind!r} is not one of {', '.join(TARGET_KINDS)}")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        problems.append("target.name must be a non-empty string")
        name = None
    selector_raw = raw.get("selector")
    selector = _parse_selector(selector_raw, problems) if selector_raw is not None else None
    if name is not None and selector_raw is not None:
        problems.append("target.name and target.selector are mutually exclusive: set one")
    elif name is None and selector_raw is None:
        problems.append("target needs a name or a selector")
    containers_raw = raw.get("containers") or []
    containers: tuple[str, ...] = ()
    if not isinstance(containers_raw, list) or not all(
        isinstance(c, str) and c for c in containers_raw
    ):
        problems.append("target.containers must be a list of container names")
    else:
        containers = tuple(containers_raw)
    return PolicyTarget(kind=str(kind or ""), name=name, selector=selector, containers=containers)


def _parse_enforce_seccomp(options: Any, enforcer: str, problems: list[str]) -> bool:
    raw = options.get(ENFORCE_SECCOMP_FIELD, False) if isinstance(options, dict) else False
    if not isinstance(raw, bool):
        problems.append(f"policy.modelingOptions.{ENFORCE_SECCOMP_FIELD} must be true or false")
        return False
    if raw and "Seccomp" not in enforcer:
        problems.append(f"policy.modelingOptions.{ENFORCE_SECCOMP_FIELD} needs an enforcer "
                        f"that models Seccomp, not {enforcer or 'none'}")
        return False
    return raw


def parse_policy(obj: Any, system_namespace: str = DEFAULT_SYSTEM_NAMESPACE) -> Policy:
    """Read one policy object; spec problems are collected, never raised."""
    if not isinstance(obj, dict):
        raise PolicyError("a policy object is a JSON object")
    kind = obj.get("kind")
    if kind not in PLURALS:
        raise PolicyError(f"kind {kind!r} is not VarmorPolicy or VarmorClusterPolicy")
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise PolicyError(f"{kind} without metadata.name")
    name: str = meta["name"]
    namespace = str(meta.get("namespace") or "") if kind == KIND_POLICY else ""
    if kind == KIND_POLICY and not namespace:
        raise PolicyError(f"VarmorPolicy {name} without metadata.namespace")
    problems: list[str] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        problems.append("spec is required")
        spec = {}
    target = _parse_target(spec.get("target"), problems)
    pol = spec.get("policy")
    if not isinstance(pol, dict):
        problems.append("spec.policy is required")
        pol = {}
    enforcer = str(pol.get("enforcer") or "")
    mode = str(pol.get("mode") or "")
    if mode not in MODES:
        problems.append(f"policy.mode {mode!r} is not one of {sorted(MODES)}")
    duration: int | None = None
    enforce_seccomp = False
    if mode == MODE_BEHAVIOR_MODELING:
        if enforcer not in ENFORCERS:
            problems.append(f"policy.enforcer {enforcer!r} is not one of {sorted(ENFORCERS)}")
        elif "AppArmor" not in enforcer and "Seccomp" not in enforcer:
            problems.append(
                f"policy.enforcer {enforcer}: BehaviorModeling models AppArmor and Seccomp only"
            )
        options = pol.get("modelingOptions")
        raw_duration = options.get("duration") if isinstance(options, dict) else None
        duration = _opt_int(raw_duration)
        if duration is None or duration < 0:
            problems.append(
                "policy.modelingOptions.duration (minutes, >= 0) is required in BehaviorModeling"
            )
            duration = None
        elif duration * 60 > MAX_DURATION_S:
            problems.append(f"policy.modelingOptions.duration {duration} is longer than "
                            f"{MAX_DURATION_S / 60:.0f} minutes (a year)")
            duration = None
        enforce_seccomp = _parse_enforce_seccomp(options, enforcer, problems)
    update = spec.get("updateExistingWorkloads", False)
    if not isinstance(update, bool):
        problems.append("updateExistingWorkloads must be true or false")
        update = False
    profile = profile_name(kind, namespace, name, system_namespace)
    if len(profile) > MAX_PROFILE_NAME:
        problems.append(f"profile name {profile[:40]}... is longer than {MAX_PROFILE_NAME}")
    return Policy(
        kind=kind,
        name=name,
        namespace=namespace,
        uid=str(meta.get("uid") or ""),
        generation=_opt_int(meta.get("generation")),
        deleting=bool(meta.get("deletionTimestamp")),
        enforcer=enforcer,
        mode=mode,
        duration=duration,
        update_existing_workloads=update,
        enforce_seccomp=enforce_seccomp,
        target=target,
        status=_parse_status(obj.get("status")),
        problems=tuple(problems),
    )
