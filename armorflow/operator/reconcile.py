"""What the operator does about one policy, decided from the object alone.

Reconciling is level-triggered: the policy's ``.status`` records what the operator last
told the pipeline (``acceptedMode``, ``modeling.startTs``, ``modeling.duration``,
``modeling.targetDigest``), so comparing spec and status says what is left to do, however
many events were missed or repeated. These functions are pure; :mod:`service` carries
the plans out (publish first, then write the status, so a crash re-sends rather than
loses a control event).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Final

from armorflow.control import (
    ENFORCERS,
    PHASE_COMPLETED,
    PHASE_FAILED,
    PHASE_MODELING,
    Control,
    make_control,
)

from .policy import (
    DEFAULT_SYSTEM_NAMESPACE,
    MODE_BEHAVIOR_MODELING,
    Policy,
    model_namespace,
    profile_name,
    target_digest,
)
from .workloads import PodScope, pod_scope

PHASE_ERROR: Final = "Error"
PHASE_UNSUPPORTED: Final = "Unsupported"

COND_READY: Final = "Ready"
COND_ACCEPTED: Final = "Accepted"

NS_PER_MINUTE: Final = 60 * 1_000_000_000


@dataclass
class Plan:
    """The actions one reconcile asks for; an empty plan means the policy is settled."""

    controls: list[Control] = field(default_factory=list)
    #: The value to publish on the targets topic (key: the profile name).
    targets: dict[str, Any] | None = None
    #: The complete new ``.status``, or None when it is already right.
    status: dict[str, Any] | None = None
    #: Rolling-restart the matched workloads, then record how many in
    #: ``status.modeling.workloadsRestarted`` (done once, after the start is recorded).
    restart: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.controls or self.targets is not None or self.status or self.restart)


def rfc3339(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def condition(
    previous: tuple[dict[str, Any], ...], type_: str, status: bool, reason: str, message: str,
    now_ns: int,
) -> dict[str, Any]:
    """A condition; its transition time moves only when its status flips."""
    value = "True" if status else "False"
    since = rfc3339(now_ns)
    for old in previous:
        same = old.get("type") == type_ and old.get("status") == value
        if same and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
    return {
        "type": type_, "status": value, "lastTransitionTime": since, "reason": reason,
        "message": message,
    }


def agent_enforcers(enforcer: str) -> list[str]:
    """The enforcers whose behaviour the agents capture (BPF is not modeled)."""
    return [name for name, part in (("apparmor", "AppArmor"), ("seccomp", "Seccomp"))
            if part in enforcer]


def targets_value(
    policy: Policy, profile: str, *, active: bool, scope: PodScope | None = None
) -> dict[str, Any]:
    """What the agents read from ``armorflow.targets`` (docs/operator.md).

    ``selector``/``namespaces``/``containers``/``enforcers`` are what the agents match pods
    with; ``target``/``policy``/``enforcer`` say where they come from.
    """
    scope = scope or pod_scope(policy)
    return {
        "v": 1,
        "profile": profile,
        "policy": policy.ref.to_json(),
        "target": policy.target.to_json(),
        "enforcer": policy.enforcer,
        "enforcers": agent_enforcers(policy.enforcer),
        **scope.to_json(),
        "containers": list(policy.target.containers),
        "active": active,
    }


def _status_dict(policy: Policy, profile: str, **changes: Any) -> dict[str, Any]:
    """The policy's current status as a dict, with ``changes`` applied."""
    st = policy.status
    modeling: dict[str, Any] = {}
    for key, value in (
        ("startTs", st.start_ts), ("duration", st.duration), ("targetDigest", st.target_digest),
        ("workloadsRestarted", st.workloads_restarted), ("completedTs", st.completed_ts),
    ):
        if value not in (None, ""):
            modeling[key] = value
    modeling.update(changes.pop("modeling", {}))
    out: dict[str, Any] = {
        "profileName": st.profile_name or profile,
        "ready": st.ready,
        "phase": st.phase,
        "acceptedMode": st.accepted_mode,
        "conditions": list(st.conditions),
    }
    if st.observed_generation is not None:
        out["observedGeneration"] = st.observed_generation
    if modeling:
        out["modeling"] = modeling
    out.update(changes)
    return out


def _observed(policy: Policy) -> dict[str, Any]:
    """The spec generation a reconcile has looked at (``kubectl wait`` style)."""
    return {} if policy.generation is None else {"observedGeneration": policy.generation}


def _same_status(policy: Policy, new: dict[str, Any], profile: str) -> bool:
    return _status_dict(policy, profile) == new


def plan_reconcile(
    policy: Policy, now_ns: int, system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
    scope: PodScope | None = None,
) -> Plan:
    """Bring one live (not deleted) policy to its desired state.

    ``scope`` is the target's pods as resolved from the cluster (needed for a target by
    name); without it a named target captures nothing until it is resolved.
    """
    profile = profile_name(policy.kind, policy.namespace, policy.name, system_namespace)
    scope = scope or pod_scope(policy)
    digest = target_digest(policy, scope.to_json())
    st = policy.status
    plan = Plan()
    previous = st.conditions

    if not st.accepted_mode:
        if policy.problems:
            message = "; ".join(policy.problems)
            new = _status_dict(
                policy, profile, **_observed(policy), ready=False, phase=PHASE_ERROR, conditions=[
                    condition(previous, COND_READY, False, "InvalidSpec", message, now_ns),
                    condition(previous, COND_ACCEPTED, False, "InvalidSpec", message, now_ns),
                ],
            )
            plan.notes.append(f"{policy.describe()} refused: {message}")
        elif policy.mode != MODE_BEHAVIOR_MODELING:
            message = (
                f"armorflow implements the BehaviorModeling mode only; mode {policy.mode} "
                "is not enforced"
            )
            new = _status_dict(
                policy, profile, **_observed(policy), ready=False, phase=PHASE_UNSUPPORTED,
                acceptedMode=policy.mode, conditions=[
                    condition(previous, COND_READY, False, "UnsupportedMode", message, now_ns),
                    condition(previous, COND_ACCEPTED, True, "Accepted", "", now_ns),
                ],
            )
            plan.notes.append(f"{policy.describe()}: {message}")
        else:
            assert policy.duration is not None  # parse_policy reports a missing duration
            plan.controls.append(make_control(
                "start", profile, policy=policy.ref,
                namespace=model_namespace(policy, system_namespace),
                enforcer=policy.enforcer, duration_s=policy.duration * 60, start_ts=now_ns,
                ts=now_ns,
            ))
            plan.targets = targets_value(policy, profile, active=True, scope=scope)
            message = f"modeling for {policy.duration} minute(s)"
            new = _status_dict(
                policy, profile, **_observed(policy), profileName=profile, ready=True,
                phase=PHASE_MODELING, acceptedMode=MODE_BEHAVIOR_MODELING,
                modeling={
                    "startTs": now_ns, "duration": policy.duration, "targetDigest": digest,
                },
                conditions=[
                    condition(previous, COND_READY, True, "Modeling", message, now_ns),
                    condition(previous, COND_ACCEPTED, True, "Accepted", "", now_ns),
                ],
            )
            plan.notes.append(f"{policy.describe()}: start modeling {profile}, {message}")
        plan.status = None if _same_status(policy, new, profile) else new
        return plan

    ready_cond = next((c for c in previous if c.get("type") == COND_READY), None)
    kept = [ready_cond] if ready_cond is not None else []
    # Conditions other parts own (enforcement's SeccompEnforced) stay, after these two.
    others = [c for c in previous if c.get("type") not in (COND_READY, COND_ACCEPTED)]

    if policy.mode != st.accepted_mode:
        message = (
            f"switching the mode from {st.accepted_mode} to {policy.mode} is refused: "
            f"delete the policy and create it again to use {policy.mode}"
        )
        new = _status_dict(policy, profile, **_observed(policy), conditions=[
            *kept, condition(previous, COND_ACCEPTED, False, "ModeSwitchRefused", message, now_ns),
            *others,
        ])
        plan.status = None if _same_status(policy, new, profile) else new
        if plan.status is not None:
            plan.notes.append(f"{policy.describe()}: {message}")
        return plan

    accepted = condition(previous, COND_ACCEPTED, True, "Accepted", "", now_ns)
    if st.accepted_mode != MODE_BEHAVIOR_MODELING:
        # An unsupported mode, already reported: only a resolved refusal is cleared.
        new = _status_dict(policy, profile, **_observed(policy),
                           conditions=[*kept, accepted, *others])
        plan.status = None if _same_status(policy, new, profile) else new
        return plan

    if policy.problems:
        message = "the change is not applied: " + "; ".join(policy.problems)
        new = _status_dict(policy, profile, **_observed(policy), conditions=[
            *kept, condition(previous, COND_ACCEPTED, False, "InvalidSpec", message, now_ns),
            *others,
        ])
        plan.status = None if _same_status(policy, new, profile) else new
        return plan

    modeling: dict[str, Any] = {}
    if st.phase == PHASE_MODELING:
        assert policy.duration is not None
        if policy.duration != st.duration:
            namespace = model_namespace(policy, system_namespace)
            if policy.duration == 0:
                plan.controls.append(make_control(
                    "stop", profile, policy=policy.ref, namespace=namespace,
                    enforcer=policy.enforcer, ts=now_ns,
                ))
                plan.notes.append(f"{policy.describe()}: duration 0, stop modeling now")
            else:
                plan.controls.append(make_control(
                    "update", profile, policy=policy.ref, namespace=namespace,
                    enforcer=policy.enforcer, duration_s=policy.duration * 60, ts=now_ns,
                ))
                plan.notes.append(
                    f"{policy.describe()}: duration {st.duration} -> {policy.duration} minute(s)"
                )
            modeling["duration"] = policy.duration
        if digest != st.target_digest:
            plan.targets = targets_value(policy, profile, active=True, scope=scope)
            modeling["targetDigest"] = digest
            plan.notes.append(f"{policy.describe()}: target changed, republished")
        # Rolled once, after the start is recorded: a failed or interrupted restart is
        # retried without opening the window again.
        plan.restart = policy.update_existing_workloads and st.workloads_restarted is None
    new = _status_dict(policy, profile, **_observed(policy), modeling=modeling,
                       conditions=[*kept, accepted, *others])
    plan.status = None if _same_status(policy, new, profile) else new
    return plan


def plan_completion(
    policy: Policy, status_ts: int, counts: dict[str, int], now_ns: int,
    system_namespace: str = DEFAULT_SYSTEM_NAMESPACE, *, failed: str | None = None,
) -> Plan:
    """The pipeline reported the profile's model written: the policy is Completed; or
    (``failed``: the pipeline's reason) the model could not be written: it is Failed.

    A report older than this policy's modeling start belongs to an earlier policy of the
    same name (status is a compacted topic, read from the beginning) and is ignored.
    Either way modeling has ended, so the agents stop capturing.
    """
    plan = Plan()
    st = policy.status
    if st.phase != PHASE_MODELING or st.start_ts is None or status_ts < st.start_ts:
        return plan
    profile = profile_name(policy.kind, policy.namespace, policy.name, system_namespace)
    conditions = [
        c for c in st.conditions if c.get("type") not in (COND_READY,)
    ]
    modeling: dict[str, Any] = {"completedTs": status_ts}
    if counts:
        modeling["counts"] = dict(counts)
    if failed is None:
        message = "the behaviour model is written to the ArmorProfileModel " + profile
        conditions.insert(0, condition(st.conditions, COND_READY, True, "Completed", message,
                                       now_ns))
        plan.status = _status_dict(policy, profile, phase=PHASE_COMPLETED, ready=True,
                                   modeling=modeling, conditions=conditions)
        plan.notes.append(f"{policy.describe()}: modeling of {profile} completed")
    else:
        message = f"the behaviour model of {profile} could not be written: {failed}"
        conditions.insert(0, condition(st.conditions, COND_READY, False, "ModelingFailed",
                                       message, now_ns))
        plan.status = _status_dict(policy, profile, phase=PHASE_FAILED, ready=False,
                                   modeling=modeling, conditions=conditions)
        plan.notes.append(f"{policy.describe()}: modeling of {profile} failed: {failed}")
    plan.targets = targets_value(policy, profile, active=False)
    return plan


def plan_deletion(
    policy: Policy, now_ns: int, system_namespace: str = DEFAULT_SYSTEM_NAMESPACE
) -> Plan:
    """The policy is gone: the pipeline forgets the window, the agents stop capturing."""
    plan = Plan()
    if policy.status.accepted_mode not in ("", MODE_BEHAVIOR_MODELING):
        return plan
    if not policy.status.accepted_mode and policy.mode != MODE_BEHAVIOR_MODELING:
        return plan
    profile = profile_name(policy.kind, policy.namespace, policy.name, system_namespace)
    plan.controls.append(make_control(
        "delete", profile, policy=policy.ref, namespace=model_namespace(policy, system_namespace),
        enforcer=policy.enforcer if policy.enforcer in ENFORCERS else "AppArmorSeccomp", ts=now_ns,
    ))
    plan.targets = targets_value(policy, profile, active=False)
    plan.notes.append(f"{policy.describe()} deleted: forget {profile}")
    return plan
