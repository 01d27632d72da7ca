"""Putting a Completed policy's Seccomp profile into force on its workloads (opt-in).

A policy with ``spec.policy.modelingOptions.enforceSeccompWhenCompleted: true`` asks the
operator, once its model is Completed, to set the learned profile on every modeled
container of each target workload's pod template::

    spec.template.spec.containers[i].securityContext.seccompProfile:
      type: Localhost
      localhostProfile: armorflow/PROFILE.json

Per container, not for the pod: ``target.containers`` may have limited modeling to some
containers, a container may be opted out of Seccomp modeling, and init containers may
never have been observed; none of those gets a profile that did not see it.

The agents write that file on every node (``armorflow agent --seccomp-root``); changing
the template rolls the pods. Like :mod:`reconcile`, this module only decides: it is pure,
and level-triggered (a workload already under the profile is left alone, one created
later is patched at the next resync). The decision is recorded in the policy's
``status.seccompEnforcement`` and its ``SeccompEnforced`` condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from armorflow.control import PHASE_COMPLETED

from .policy import Policy
from .reconcile import condition
from .workloads import (
    PATCHABLE_KINDS,
    MatchLabel,
    WorkloadRef,
    enforced_containers,
    is_target,
    seccomp_patch,
)

COND_SECCOMP: Final = "SeccompEnforced"


@dataclass
class EnforcementPlan:
    """Workloads to patch (each with its JSON patch), and the status to write (None:
    already right)."""

    patch: list[tuple[WorkloadRef, list[dict[str, Any]]]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.patch or self.status)


def wants_enforcement(policy: Policy) -> bool:
    return (policy.enforce_seccomp and not policy.problems and not policy.deleting
            and policy.status.phase == PHASE_COMPLETED)


def plan_seccomp_enforcement(
    policy: Policy, localhost_profile: str, profile_problem: str | None,
    objects: list[dict[str, Any]], match_label: MatchLabel, now_ns: int,
) -> EnforcementPlan:
    """What to do for a Completed, opted-in policy.

    ``profile_problem`` says why the stored profile cannot be enforced (not there, not
    ready, no Seccomp, no namespace filters): then nothing is patched. ``objects`` are the
    workloads of the target kind that carry the opt-in label.
    """
    plan = EnforcementPlan()
    if not wants_enforcement(policy):
        return plan
    only = policy.target.containers
    under: list[str] = []
    containers: list[str] = []
    pods_not_under: list[str] = []
    if profile_problem is None:
        kind = policy.target.kind
        for obj in sorted(objects, key=_name_of):
            if not is_target(policy, kind, obj, match_label):
                continue
            meta = obj["metadata"]
            ref = WorkloadRef(kind, str(meta.get("namespace") or ""), str(meta["name"]))
            enforced = enforced_containers(kind, obj, only)
            if not enforced:
                continue
            ops = seccomp_patch(enforced, localhost_profile)
            if ops:
                if kind not in PATCHABLE_KINDS:
                    pods_not_under.append(ref.describe())
                    continue
                plan.patch.append((ref, ops))
                plan.notes.append(f"{policy.describe()}: {ref.describe()} now runs under "
                                  f"Seccomp profile {localhost_profile}")
            under.append(ref.describe())
            containers.extend(f"{ref.describe()}: {name}" for _i, name, _ctx in enforced)
    record: dict[str, Any] = {"localhostProfile": localhost_profile, "workloads": under,
                              "containers": containers}
    if pods_not_under:
        record["podsNotUnderProfile"] = pods_not_under
    if profile_problem is not None:
        ok, reason, message = False, "ProfileNotEnforceable", profile_problem
    elif pods_not_under:
        ok, reason = False, "PodTarget"
        message = (f"a Pod's securityContext cannot change once it is created: recreate "
                   f"{', '.join(pods_not_under)} with securityContext.seccompProfile "
                   f"{{type: Localhost, localhostProfile: {localhost_profile}}}")
    elif not under:
        ok, reason = False, "NoWorkloads"
        message = "no target workload to put under the profile (yet)"
    else:
        ok, reason = True, "Enforced"
        message = (f"{len(containers)} container(s) of {len(under)} workload(s) run under "
                   f"Seccomp profile {localhost_profile}")
    kept = [c for c in policy.status.conditions if c.get("type") != COND_SECCOMP]
    new_condition = condition(policy.status.conditions, COND_SECCOMP, ok, reason, message,
                              now_ns)
    old_condition = next((c for c in policy.status.conditions
                          if c.get("type") == COND_SECCOMP), None)
    if record != policy.status.seccomp_enforcement or new_condition != old_condition:
        plan.status = {"seccompEnforcement": record, "conditions": [*kept, new_condition]}
        if not ok:
            plan.notes.append(f"{policy.describe()}: Seccomp not enforced: {message}")
    return plan


def _name_of(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
