"""The operator's decisions on plain policy objects: validation, profile names, plans."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from armorflow.control import decode_control
from armorflow.operator.policy import PolicyError, parse_policy, profile_name
from armorflow.operator.reconcile import (
    plan_completion,
    plan_deletion,
    plan_reconcile,
)
from armorflow.operator.workloads import matched_workloads, restart_patch

NOW = 1_700_000_000_000_000_000
MINUTE = 60 * 1_000_000_000


def seed_cluster_policy(**spec_changes: Any) -> dict[str, Any]:
    """The walkthrough's step 2 policy."""
    obj: dict[str, Any] = {
        "apiVersion": "crd.varmor.org/v1beta1",
        "kind": "VarmorClusterPolicy",
        "metadata": {"name": "demo-4", "uid": "u-1", "generation": 1},
        "spec": {
            "updateExistingWorkloads": True,
            "target": {"kind": "Deployment", "selector": {"matchLabels": {"app": "demo-4"}}},
            "policy": {
                "enforcer": "AppArmorSeccomp",
                "mode": "BehaviorModeling",
                "modelingOptions": {"duration": 30},
            },
        },
    }
    obj["spec"].update(spec_changes)
    return obj


def with_status(obj: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if status is not None:
        out["status"] = status
    return out


def started(obj: dict[str, Any]) -> dict[str, Any]:
    """The object after the operator's first reconciles wrote its status (and, when asked,
    rolled the workloads)."""
    plan = plan_reconcile(parse_policy(obj), NOW)
    assert plan.status is not None
    obj = with_status(obj, plan.status)
    if plan_reconcile(parse_policy(obj), NOW).restart:
        obj["status"]["modeling"]["workloadsRestarted"] = 2
    return obj


def test_profile_names_follow_varmor() -> None:
    assert profile_name("VarmorClusterPolicy", "", "demo-4") == "varmor-cluster-varmor-demo-4"
    assert profile_name("VarmorPolicy", "demo", "web") == "varmor-demo-web"
    assert profile_name("VarmorClusterPolicy", "", "x", "armorflow") == "varmor-cluster-armorflow-x"


def test_seed_policy_parses_clean() -> None:
    policy = parse_policy(seed_cluster_policy())
    assert policy.problems == ()
    assert policy.cluster_wide and policy.duration == 30 and policy.enforcer == "AppArmorSeccomp"
    assert policy.target.selector is not None
    assert policy.target.selector.match_labels == {"app": "demo-4"}


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ({"kind": "Deployment", "name": "a", "selector": {"matchLabels": {"a": "b"}}},
         "mutually exclusive"),
        ({"kind": "Deployment"}, "needs a name or a selector"),
        ({"kind": "CronJob", "name": "a"}, "target.kind"),
        ({"kind": "Deployment", "selector": {}}, "empty"),
        ({"kind": "Deployment", "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         "needs values"),
        ({"kind": "Deployment", "name": "a", "containers": "c0"}, "containers"),
    ],
)
def test_bad_targets_are_reported(target: dict[str, Any], needle: str) -> None:
    policy = parse_policy(seed_cluster_policy(target=target))
    assert any(needle in p for p in policy.problems), policy.problems
    plan = plan_reconcile(policy, NOW)
    assert plan.controls == [] and plan.targets is None and not plan.restart
    assert plan.status is not None
    assert plan.status["phase"] == "Error" and plan.status["ready"] is False
    ready = plan.status["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec" and needle in ready["message"]


def test_missing_duration_and_bpf_only_enforcer_are_refused() -> None:
    no_duration = seed_cluster_policy(
        policy={"enforcer": "AppArmor", "mode": "BehaviorModeling"})
    assert any("duration" in p for p in parse_policy(no_duration).problems)
    bpf = seed_cluster_policy(policy={"enforcer": "BPF", "mode": "BehaviorModeling",
                                      "modelingOptions": {"duration": 3}})
    assert any("AppArmor and Seccomp only" in p for p in parse_policy(bpf).problems)


def test_not_a_policy_raises() -> None:
    with pytest.raises(PolicyError):
        parse_policy({"kind": "Deployment", "metadata": {"name": "x"}})
    with pytest.raises(PolicyError):
        parse_policy({"kind": "VarmorPolicy", "metadata": {"name": "x"}})  # no namespace


def test_create_starts_modeling() -> None:
    plan = plan_reconcile(parse_policy(seed_cluster_policy()), NOW)
    assert [c.type for c in plan.controls] == ["start"]
    start = decode_control(plan.controls[0].encode())
    assert start.profile == "varmor-cluster-varmor-demo-4"
    assert start.duration_s == 30 * 60 and start.start_ts == NOW
    assert start.namespace == "varmor" and start.enforcer == "AppArmorSeccomp"
    assert start.policy.kind == "VarmorClusterPolicy" and start.policy.uid == "u-1"
    assert plan.restart is False  # only once the start is recorded
    assert plan.targets is not None
    assert plan.targets["active"] is True and plan.targets["namespaces"] is None
    assert plan.targets["target"]["selector"] == {"matchLabels": {"app": "demo-4"}}
    st = plan.status
    assert st is not None
    assert (st["phase"], st["ready"], st["profileName"]) == (
        "Modeling", True, "varmor-cluster-varmor-demo-4")
    assert st["acceptedMode"] == "BehaviorModeling"
    assert st["modeling"]["startTs"] == NOW and st["modeling"]["duration"] == 30


def test_workloads_roll_once_after_the_start_is_recorded() -> None:
    obj = seed_cluster_policy()
    first = plan_reconcile(parse_policy(obj), NOW)
    assert first.status is not None and not first.restart
    obj = with_status(obj, first.status)
    second = plan_reconcile(parse_policy(obj), NOW + 1)
    assert second.restart and second.controls == [] and second.status is None
    obj["status"]["modeling"]["workloadsRestarted"] = 0  # none matched: still done
    assert plan_reconcile(parse_policy(obj), NOW + 2).empty
    no_roll = seed_cluster_policy(updateExistingWorkloads=False)
    no_roll = with_status(no_roll, plan_reconcile(parse_policy(no_roll), NOW).status)
    assert plan_reconcile(parse_policy(no_roll), NOW + 1).empty


def test_reconcile_is_idempotent_once_started() -> None:
    obj = started(seed_cluster_policy())
    for later in (NOW + 1, NOW + 5 * MINUTE):
        plan = plan_reconcile(parse_policy(obj), later)
        assert plan.empty, plan


def test_namespaced_policy_targets_its_namespace() -> None:
    obj = seed_cluster_policy()
    obj["kind"] = "VarmorPolicy"
    obj["metadata"]["namespace"] = "demo"
    plan = plan_reconcile(parse_policy(obj), NOW)
    assert plan.controls[0].profile == "varmor-demo-demo-4"
    assert plan.controls[0].namespace == "demo"
    assert plan.targets is not None and plan.targets["namespaces"] == ["demo"]


def test_duration_patch_becomes_update_and_zero_becomes_stop() -> None:
    obj = started(seed_cluster_policy())
    obj["spec"]["policy"]["modelingOptions"]["duration"] = 1
    plan = plan_reconcile(parse_policy(obj), NOW + 3 * MINUTE)
    assert [c.type for c in plan.controls] == ["update"]
    assert plan.controls[0].duration_s == 60
    assert plan.controls[0].start_ts is None
    assert plan.status is not None and plan.status["modeling"]["duration"] == 1
    assert plan.status["modeling"]["startTs"] == NOW  # the window keeps its start
    assert not plan.restart and plan.targets is None
    obj = with_status(obj, plan.status)
    assert plan_reconcile(parse_policy(obj), NOW + 4 * MINUTE).empty
    obj["spec"]["policy"]["modelingOptions"]["duration"] = 0
    plan = plan_reconcile(parse_policy(obj), NOW + 4 * MINUTE)
    assert [c.type for c in plan.controls] == ["stop"]


@pytest.mark.parametrize(("before", "after"), [
    ("BehaviorModeling", "DefenseInDepth"), ("DefenseInDepth", "BehaviorModeling"),
])
def test_mode_switch_is_refused(before: str, after: str) -> None:
    obj = seed_cluster_policy()
    obj["spec"]["policy"]["mode"] = before
    obj = started(obj)
    phase = obj["status"]["phase"]
    obj["spec"]["policy"]["mode"] = after
    plan = plan_reconcile(parse_policy(obj), NOW + MINUTE)
    assert plan.controls == [] and plan.targets is None
    assert plan.status is not None and plan.status["phase"] == phase
    accepted = next(c for c in plan.status["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "ModeSwitchRefused"
    assert f"from {before} to {after} is refused" in accepted["message"]
    # switching back clears the refusal without restarting anything
    obj = with_status(obj, plan.status)
    obj["spec"]["policy"]["mode"] = before
    plan = plan_reconcile(parse_policy(obj), NOW + 2 * MINUTE)
    assert plan.controls == [] and plan.status is not None
    accepted = next(c for c in plan.status["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "True"


def test_other_modes_are_reported_unsupported() -> None:
    obj = seed_cluster_policy()
    obj["spec"]["policy"] = {"enforcer": "AppArmor", "mode": "EnhanceProtect"}
    plan = plan_reconcile(parse_policy(obj), NOW)
    assert plan.controls == [] and plan.status is not None
    assert plan.status["phase"] == "Unsupported" and plan.status["ready"] is False


def test_target_change_republishes_targets() -> None:
    obj = started(seed_cluster_policy())
    obj["spec"]["target"]["containers"] = ["c1"]
    plan = plan_reconcile(parse_policy(obj), NOW + MINUTE)
    assert plan.controls == []
    assert plan.targets is not None and plan.targets["target"]["containers"] == ["c1"]


def test_completion_needs_a_report_newer_than_the_start() -> None:
    obj = started(seed_cluster_policy())
    policy = parse_policy(obj)
    assert plan_completion(policy, NOW - 1, {}, NOW + MINUTE).empty  # an earlier policy's
    plan = plan_completion(policy, NOW + MINUTE, {"exec": 3}, NOW + MINUTE)
    assert plan.status is not None
    assert plan.status["phase"] == "Completed" and plan.status["ready"] is True
    assert plan.status["modeling"]["counts"] == {"exec": 3}
    assert plan.targets is not None and plan.targets["active"] is False
    done = with_status(obj, plan.status)
    assert plan_completion(parse_policy(done), NOW + 2 * MINUTE, {}, NOW).empty
    # a duration patch after completion does not reopen anything
    done["spec"]["policy"]["modelingOptions"]["duration"] = 1
    assert plan_reconcile(parse_policy(done), NOW + 3 * MINUTE).controls == []


def test_deletion_publishes_delete() -> None:
    plan = plan_deletion(parse_policy(started(seed_cluster_policy())), NOW)
    assert [c.type for c in plan.controls] == ["delete"]
    assert plan.targets is not None and plan.targets["active"] is False
    other = seed_cluster_policy()
    other["spec"]["policy"] = {"enforcer": "AppArmor", "mode": "EnhanceProtect"}
    assert plan_deletion(parse_policy(started(other)), NOW).empty


def _deployment(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}}


def test_workload_matching() -> None:
    enabled = {"sandbox.varmor.org/enable": "true"}
    objs = [
        _deployment("default", "demo-4", {"app": "demo-4", **enabled}),
        _deployment("demo", "demo-4", {"app": "demo-4", **enabled}),
        _deployment("demo", "other", {"app": "other", **enabled}),
        _deployment("demo", "not-opted-in", {"app": "demo-4"}),
    ]
    cluster = parse_policy(seed_cluster_policy())
    got = [(w.namespace, w.name) for w in matched_workloads(cluster, "Deployment", objs)]
    assert got == [("default", "demo-4"), ("demo", "demo-4")]
    assert matched_workloads(cluster, "StatefulSet", objs) == []
    ns_obj = seed_cluster_policy(target={"kind": "Deployment", "name": "other"})
    ns_obj["kind"] = "VarmorPolicy"
    ns_obj["metadata"]["namespace"] = "demo"
    got = [(w.namespace, w.name) for w in matched_workloads(parse_policy(ns_obj), "Deployment",
                                                            objs)]
    assert got == [("demo", "other")]
    expr = parse_policy(seed_cluster_policy(target={"kind": "Deployment", "selector": {
        "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["demo-4"]}]}}))
    assert [w.name for w in matched_workloads(expr, "Deployment", objs)] == ["other"]
    patch = restart_patch("2026-01-01T00:00:00+00:00")
    assert patch["spec"]["template"]["metadata"]["annotations"] == {
        "armorflow.io/restartedAt": "2026-01-01T00:00:00+00:00"}


def test_targets_are_what_the_agents_parse() -> None:
    """The operator's targets value, read by the agents' own parser, covers the seed's pods."""
    import orjson

    from armorflow.agents.attribution import Target, Workload

    plan = plan_reconcile(parse_policy(seed_cluster_policy()), NOW)
    assert plan.targets is not None
    assert plan.targets["enforcers"] == ["apparmor", "seccomp"]
    target = Target.from_json("varmor-cluster-varmor-demo-4", orjson.dumps(plan.targets))
    opt_out = {"container.apparmor.security.beta.varmor.org/c0": "unconfined",
               "container.seccomp.security.beta.varmor.org/c0": "unconfined"}

    def pod(ns: str, container: str, app: str, annotations: dict[str, str] | None = None
            ) -> Workload:
        return Workload(container_id="0" * 64, namespace=ns, pod=f"{app}-x", container=container,
                        labels={"app": app}, annotations=annotations or {})

    assert target.enforcers_for(pod("default", "c0", "demo-4")) == {"apparmor", "seccomp"}
    assert target.enforcers_for(pod("demo", "c0", "demo-4", opt_out)) == frozenset()
    assert target.enforcers_for(pod("demo", "c1", "demo-4", opt_out)) == {"apparmor", "seccomp"}
    assert target.enforcers_for(pod("demo", "c0", "other")) == frozenset()
    done = plan_completion(parse_policy(started(seed_cluster_policy())), NOW + 1, {}, NOW + 1)
    assert done.targets is not None
    assert not Target.from_json("varmor-cluster-varmor-demo-4",
                                orjson.dumps(done.targets)).active


def test_named_targets_resolve_to_the_workloads_pod_selector() -> None:
    from armorflow.operator.workloads import MATCHES_NOTHING, pod_scope

    obj = seed_cluster_policy(target={"kind": "Deployment", "name": "web", "containers": ["c1"]})
    obj["kind"] = "VarmorPolicy"
    obj["metadata"]["namespace"] = "demo"
    policy = parse_policy(obj)
    unresolved = plan_reconcile(policy, NOW)
    assert unresolved.targets is not None
    assert unresolved.targets["selector"] == MATCHES_NOTHING  # never "every pod"
    web = {"metadata": {"namespace": "demo", "name": "web",
                        "labels": {"sandbox.varmor.org/enable": "true"}},
           "spec": {"selector": {"matchLabels": {"run": "web"}}}}
    scope = pod_scope(policy, [web])
    assert scope.selector == {"matchLabels": {"run": "web"}} and scope.namespaces == ("demo",)
    resolved = plan_reconcile(policy, NOW, scope=scope)
    assert resolved.targets is not None
    assert resolved.targets["selector"] == {"matchLabels": {"run": "web"}}
    assert resolved.targets["containers"] == ["c1"]
    # once started unresolved, the workload appearing republishes the targets
    obj = with_status(obj, unresolved.status)
    later = plan_reconcile(parse_policy(obj), NOW + MINUTE, scope=scope)
    assert later.controls == [] and later.targets is not None
    assert later.targets["selector"] == {"matchLabels": {"run": "web"}}


def test_observed_generation_follows_the_spec() -> None:
    obj = started(seed_cluster_policy())
    assert obj["status"]["observedGeneration"] == 1
    obj["metadata"]["generation"] = 2
    obj["spec"]["updateExistingWorkloads"] = False  # a change with nothing else to do
    plan = plan_reconcile(parse_policy(obj), NOW + MINUTE)
    assert plan.controls == [] and plan.status is not None
    assert plan.status["observedGeneration"] == 2
    assert plan_reconcile(parse_policy(with_status(obj, plan.status)), NOW + MINUTE).empty


def test_pod_targets_require_the_opt_in_label_on_the_pod() -> None:
    from armorflow.operator.workloads import pod_scope

    policy = parse_policy(seed_cluster_policy(
        target={"kind": "Pod", "selector": {"matchLabels": {"app": "demo-4"}}}))
    assert pod_scope(policy).selector == {
        "matchLabels": {"app": "demo-4", "sandbox.varmor.org/enable": "true"}}
    deployment = parse_policy(seed_cluster_policy())
    assert pod_scope(deployment).selector == {"matchLabels": {"app": "demo-4"}}


def test_match_label_is_configurable() -> None:
    from armorflow.operator.workloads import label_selector, parse_match_label, pod_scope

    assert parse_match_label("sandbox.varmor.org/enable=true") == (
        "sandbox.varmor.org/enable", "true")
    assert parse_match_label("team") == ("team", "true")
    assert parse_match_label("") is None and label_selector(None) is None
    with pytest.raises(ValueError):
        parse_match_label("=x")
    policy = parse_policy(seed_cluster_policy())
    plain = [_deployment("default", "demo-4", {"app": "demo-4"})]
    assert matched_workloads(policy, "Deployment", plain) == []
    assert [w.name for w in matched_workloads(policy, "Deployment", plain, None)] == ["demo-4"]
    team = [_deployment("default", "demo-4", {"app": "demo-4", "team": "a"})]
    assert len(matched_workloads(policy, "Deployment", team, ("team", "a"))) == 1
    pods = parse_policy(seed_cluster_policy(
        target={"kind": "Pod", "selector": {"matchLabels": {"app": "demo-4"}}}))
    assert pod_scope(pods, None, None).selector == {"matchLabels": {"app": "demo-4"}}
