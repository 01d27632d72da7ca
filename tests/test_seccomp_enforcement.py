"""Enforcement after modeling (#17 item 3): a policy that opts in with
``modelingOptions.enforceSeccompWhenCompleted`` gets its learned Seccomp profile set in
its target workloads once Completed, and every node's agent keeps the profile where the
kubelet reads it.

The planning is checked on plain objects; the operator, the installer and ``armorflow
agent --seccomp-root`` against the project's Kubernetes API emulator over HTTP, with
models written by the real k8s sink. tests/test_enforce_operator_cri.py runs the whole
path into a real container runtime.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from armorflow.agents.installer import SeccompInstaller, kube_model_lister
from armorflow.broker import EmbeddedBroker
from armorflow.model import BehaviourModel
from armorflow.operator.enforcement import COND_SECCOMP, plan_seccomp_enforcement
from armorflow.operator.kube import Kube
from armorflow.operator.policy import parse_policy
from armorflow.operator.reconcile import plan_reconcile
from armorflow.operator.service import OperatorService
from armorflow.operator.workloads import DEFAULT_MATCH_LABEL, ENABLE_LABEL
from armorflow.pipeline.sink import CompletedModel, PolicyRef
from armorflow.pipeline.sink.k8s import KubernetesSink
from armorflow.render import render_apparmor, render_seccomp
from armorflow.render.seccomp import seccomp_json
from armorflow.resource import GROUP, PLURAL, VERSION, read_resource
from support import CHART_CRDS, KubeEmulator
from support.waiting import wait_for

NOW = 1_700_000_000_000_000_000
LOCALHOST = "armorflow/varmor-shop-web.json"
ARMORFLOW = str(Path(sys.executable).parent / "armorflow")


def policy_obj(*, opt_in: Any = True, enforcer: str = "AppArmorSeccomp",
               phase: str = "Completed", kind: str = "Deployment") -> dict[str, Any]:
    options: dict[str, Any] = {"duration": 5}
    if opt_in is not None:
        options["enforceSeccompWhenCompleted"] = opt_in
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VarmorPolicy",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-web", "generation": 1},
        "spec": {"target": {"kind": kind, "selector": {"matchLabels": {"app": "web"}}},
                 "policy": {"enforcer": enforcer, "mode": "BehaviorModeling",
                            "modelingOptions": options}},
    }
    if phase:
        obj["status"] = {"phase": phase, "ready": phase == "Completed",
                         "profileName": "varmor-shop-web", "acceptedMode": "BehaviorModeling",
                         "modeling": {"startTs": NOW - 1, "duration": 5}}
    return obj


def deployment(name: str, *, opted_in: bool = True, labels: dict[str, str] | None = None,
               seccomp: dict[str, Any] | None = None, sidecar: bool = False,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment; ``seccomp`` is its container ``c0``'s own seccompProfile."""
    meta_labels = {"app": "web", **(labels or {})}
    if opted_in:
        meta_labels[ENABLE_LABEL] = "true"
    container: dict[str, Any] = {"name": "c0", "image": "busybox",
                                 "command": ["/bin/sh", "-c", "sleep 3600"]}
    if seccomp is not None:
        container["securityContext"] = {"runAsUser": 1000, "seccompProfile": seccomp}
    containers = [container]
    if sidecar:
        containers.append({"name": "proxy", "image": "busybox"})
    pod_spec: dict[str, Any] = {
        "initContainers": [{"name": "setup", "image": "busybox"}], "containers": containers}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": meta_labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"},
                                           "annotations": annotations or {}},
                              "spec": pod_spec}},
    }


def plan(obj: dict[str, Any], objects: list[dict[str, Any]], problem: str | None = None) -> Any:
    return plan_seccomp_enforcement(parse_policy(obj), LOCALHOST, problem, objects,
                                    DEFAULT_MATCH_LABEL, NOW)


# --- the decision, on plain objects ---------------------------------------------------------


def test_the_field_is_validated() -> None:
    assert parse_policy(policy_obj()).enforce_seccomp is True
    assert parse_policy(policy_obj(opt_in=None)).enforce_seccomp is False
    wrong = parse_policy(policy_obj(opt_in="yes"))
    assert not wrong.enforce_seccomp
    assert any("enforceSeccompWhenCompleted must be true or false" in p for p in wrong.problems)
    no_seccomp = parse_policy(policy_obj(enforcer="AppArmor"))
    assert any("needs an enforcer that models Seccomp" in p for p in no_seccomp.problems)


def test_only_a_completed_opted_in_policy_is_enforced() -> None:
    targets = [deployment("web-a")]
    assert plan(policy_obj(opt_in=None), targets).empty
    assert plan(policy_obj(opt_in=False), targets).empty
    assert plan(policy_obj(phase="Modeling"), targets).empty
    assert plan(policy_obj(phase=""), targets).empty
    assert plan(policy_obj(enforcer="AppArmor"), targets).empty  # a problem: never acted on


def patched(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The object after a JSON patch, as the API server applies it."""
    import jsonpatch

    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops, in_place=False)
    return result


def test_targets_are_patched_once_and_others_left_alone() -> None:
    wanted = {"type": "Localhost", "localhostProfile": LOCALHOST}
    objects = [deployment("web-a"), deployment("web-b", seccomp=wanted),
               deployment("web-c", seccomp={"type": "RuntimeDefault"}),
               deployment("not-opted", opted_in=False), deployment("other", labels={"app": "x"})]
    first = plan(policy_obj(), objects)
    assert [r.name for r, _ops in first.patch] == ["web-a", "web-c"]  # RuntimeDefault replaced
    assert first.status is not None
    record = first.status["seccompEnforcement"]
    assert record == {"localhostProfile": LOCALHOST, "workloads": [
        "Deployment shop/web-a", "Deployment shop/web-b", "Deployment shop/web-c"],
        "containers": ["Deployment shop/web-a: c0", "Deployment shop/web-b: c0",
                       "Deployment shop/web-c: c0"]}
    (cond,) = first.status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (COND_SECCOMP, "True", "Enforced")

    # The patches do exactly that: the container's own context is kept beside the profile,
    # the init container and the pod-level context are not touched.
    after = {ref.name: patched(objects[0 if ref.name == "web-a" else 2], ops)
             for ref, ops in first.patch}
    spec_c = after["web-c"]["spec"]["template"]["spec"]
    assert spec_c["containers"][0]["securityContext"] == {"runAsUser": 1000,
                                                          "seccompProfile": wanted}
    spec_a = after["web-a"]["spec"]["template"]["spec"]
    assert spec_a["containers"][0]["securityContext"] == {"seccompProfile": wanted}
    assert "securityContext" not in spec_a and "securityContext" not in (
        spec_a["initContainers"][0])

    # After the patch and the status write, the same state asks for nothing: no second
    # rollout at every resync.
    obj = policy_obj()
    obj["status"].update(first.status)
    now = [after["web-a"], objects[1], after["web-c"], *objects[3:]]
    assert plan(obj, now).empty
    # A workload created later is patched at the next resync; the record grows.
    later = plan(obj, [*now, deployment("web-d")])
    assert [r.name for r, _ops in later.patch] == ["web-d"]
    assert later.status is not None and len(later.status["seccompEnforcement"]["workloads"]) == 4


def test_a_test_op_guards_each_container() -> None:
    """A template whose containers were reordered since it was read fails the patch
    instead of confining the wrong container."""
    import jsonpatch

    out = plan(policy_obj(), [deployment("web-a", sidecar=True)])
    ((_ref, ops),) = out.patch
    assert ops[0] == {"op": "test", "path": "/spec/template/spec/containers/0/name",
                      "value": "c0"}
    reordered = deployment("web-a", sidecar=True)
    containers = reordered["spec"]["template"]["spec"]["containers"]
    containers.reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(reordered, ops)


def test_only_modeled_containers_get_the_profile() -> None:
    wanted = {"type": "Localhost", "localhostProfile": LOCALHOST}
    # every regular container when the policy names none
    ((_ref, ops),) = plan(policy_obj(), [deployment("web-a", sidecar=True)]).patch
    spec = patched(deployment("web-a", sidecar=True), ops)["spec"]["template"]["spec"]
    assert [c.get("securityContext") for c in spec["containers"]] == [
        {"seccompProfile": wanted}, {"seccompProfile": wanted}]
    # target.containers: only those were modeled
    only = policy_obj()
    only["spec"]["target"]["containers"] = ["proxy"]
    ((_ref, ops),) = plan(only, [deployment("web-a", sidecar=True)]).patch
    spec = patched(deployment("web-a", sidecar=True), ops)["spec"]["template"]["spec"]
    assert [c.get("securityContext") for c in spec["containers"]] == [
        None, {"seccompProfile": wanted}]
    # a container opted out of Seccomp modeling (vArmor's annotation) is left alone
    opted_out = deployment("web-a", sidecar=True, annotations={
        "container.seccomp.security.beta.varmor.org/c0": "unconfined"})
    out = plan(policy_obj(), [opted_out])
    ((_ref, ops),) = out.patch
    spec = patched(opted_out, ops)["spec"]["template"]["spec"]
    assert [c.get("securityContext") for c in spec["containers"]] == [
        None, {"seccompProfile": wanted}]
    assert out.status is not None
    assert out.status["seccompEnforcement"]["containers"] == ["Deployment shop/web-a: proxy"]
    # a workload with no container left to enforce is not counted as under the profile
    alone = deployment("web-a", annotations={
        "container.seccomp.security.beta.varmor.org/c0": "unconfined"})
    out = plan(policy_obj(), [alone])
    assert out.patch == [] and out.status is not None
    assert out.status["conditions"][0]["reason"] == "NoWorkloads"


def test_a_model_that_cannot_be_enforced_patches_nothing() -> None:
    out = plan(policy_obj(), [deployment("web-a")], problem="the model is not Completed")
    assert out.patch == [] and out.status is not None
    (cond,) = out.status["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "ProfileNotEnforceable")
    assert cond["message"] == "the model is not Completed"
    assert out.status["seccompEnforcement"]["workloads"] == []


def test_pods_cannot_be_patched_and_say_so() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-0", "namespace": "shop",
                        "labels": {"app": "web", ENABLE_LABEL: "true"}},
           "spec": {"containers": [{"name": "c0", "image": "busybox"}]}}
    out = plan(policy_obj(kind="Pod"), [pod])
    assert out.patch == [] and out.status is not None
    assert out.status["seccompEnforcement"]["podsNotUnderProfile"] == ["Pod shop/web-0"]
    cond = out.status["conditions"][0]
    assert cond["reason"] == "PodTarget" and "recreate Pod shop/web-0" in cond["message"]


def test_no_target_yet_is_reported() -> None:
    out = plan(policy_obj(), [])
    assert out.status is not None and out.status["conditions"][0]["reason"] == "NoWorkloads"


def test_reconciles_keep_the_enforcement_condition() -> None:
    """A Completed policy's reconcile rewrites Ready/Accepted; it must keep
    SeccompEnforced, or the two writers would undo each other forever."""
    obj = policy_obj()
    obj["status"]["conditions"] = []
    settled = plan_reconcile(parse_policy(obj), NOW)
    if settled.status is not None:
        obj["status"] = settled.status
    enforced = plan(obj, [deployment("web-a")])
    assert enforced.status is not None
    obj["status"].update(enforced.status)
    again = plan_reconcile(parse_policy(obj), NOW + 10)
    assert again.status is None, again.status


# --- against the API emulator ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    with KubeEmulator([CHART_CRDS]) as emulator:
        emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        api = emulator.api_client()
        for ns in ("varmor", "shop", "other"):
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        yield emulator


def learned_model() -> BehaviourModel:
    return BehaviourModel.from_dynamic_result({
        "apparmor": {"executions": ["/bin/cat"],
                     "files": [{"path": "/etc/hostname", "permissions": ["r"], "owner": True}]},
        "seccomp": {"syscalls": ["read", "write", "openat", "close", "exit_group", "clone"],
                    "namespaceFlags": {"clone": [0]}},
    })


def write_model(kube: KubeEmulator, name: str, namespace: str = "shop", *,
                seccomp: dict[str, Any] | None = None,
                model: BehaviourModel | None = None) -> dict[str, Any]:
    """An ArmorProfileModel as the pipeline's k8s sink writes it (Completed)."""
    model = model or learned_model()
    sink = KubernetesSink(kube.api_client())
    sink.write(CompletedModel(
        profile=name, namespace=namespace, policy=PolicyRef("VarmorPolicy", namespace, "web"),
        enforcer="AppArmorSeccomp", model=model, apparmor=render_apparmor(name, model).text,
        seccomp=seccomp if seccomp is not None else render_seccomp(model)))
    sink.close()
    return seccomp if seccomp is not None else render_seccomp(model)


def stored_seccomp(kube: KubeEmulator, name: str, namespace: str) -> dict[str, Any]:
    stored = read_resource(client.CustomObjectsApi(kube.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name))
    assert stored.seccomp is not None
    return stored.seccomp


def set_model_ready(kube: KubeEmulator, name: str, namespace: str, ready: bool) -> None:
    client.CustomObjectsApi(kube.api_client()).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": {"ready": ready}})


def delete_model(kube: KubeEmulator, name: str, namespace: str) -> None:
    client.CustomObjectsApi(kube.api_client()).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)


def test_installer_keeps_completed_profiles_on_the_node(
    kube: KubeEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "kubelet" / "seccomp"
    installer = SeccompInstaller(kube_model_lister(kube.api_client()), root)
    good = write_model(kube, "inst-good")
    write_model(kube, "inst-later")
    set_model_ready(kube, "inst-later", "shop", False)  # still modeling
    # a profile from before namespace filters: allows clone with any flag
    write_model(kube, "inst-old", seccomp={"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["clone", "read"], "action": "SCMP_ACT_ALLOW"}]})
    # one name claimed in two namespaces: neither may decide what pods get
    write_model(kube, "inst-twice", "shop")
    write_model(kube, "inst-twice", "other")

    with caplog.at_level(logging.WARNING, logger="armorflow.agents.installer"):
        installer.sync()
        installer.sync()
    folder = root / "armorflow"
    assert sorted(p.name for p in folder.iterdir()) == ["inst-good.json"]
    path = folder / "inst-good.json"
    assert path.read_text() == seccomp_json(good)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    c = installer.counters
    assert (c.installed, c.unchanged, c.not_ready, c.skipped, c.conflicts) == (1, 1, 2, 2, 2)
    warnings = [r.getMessage() for r in caplog.records]
    # each problem said once, not at every sync
    assert sum("inst-old" in w and "without namespace filters" in w for w in warnings) == 1
    assert sum("claimed in several namespaces (other, shop)" in w for w in warnings) == 1

    # Completed later: installed; a model written again with other content: replaced.
    set_model_ready(kube, "inst-later", "shop", True)
    wider = BehaviourModel.from_dynamic_result({"seccomp": {"syscalls": ["read", "sendfile"]}})
    write_model(kube, "inst-good", model=wider)  # a second node's model: merged
    newer = stored_seccomp(kube, "inst-good", "shop")
    assert "sendfile" in json.dumps(newer)
    installer.sync()
    assert (folder / "inst-later.json").is_file()
    assert path.read_text() == seccomp_json(newer) != seccomp_json(good), installer.stats()
    assert not list(folder.glob(".*.tmp"))  # the atomic write left no temporary file

    # A deleted model's file stays: a running pod's next container start reads it.
    delete_model(kube, "inst-later", "shop")
    installer.sync()
    assert (folder / "inst-later.json").is_file()
    for name, namespace in (("inst-good", "shop"), ("inst-old", "shop"),
                            ("inst-twice", "shop"), ("inst-twice", "other")):
        delete_model(kube, name, namespace)


def test_installer_refuses_hostile_names(tmp_path: Path) -> None:
    """The API server refuses such names; an installer pointed at something else must
    still never write outside its folder."""
    good = render_seccomp(learned_model())
    import base64

    def resource(name: str) -> dict[str, Any]:
        return {"kind": "ArmorProfileModel", "metadata": {"name": name, "namespace": "shop"},
                "data": {"profile": {"seccompContent": base64.b64encode(
                    seccomp_json(good).encode()).decode(), "enforcer": "Seccomp"}},
                "status": {"ready": True}}

    names = ["../../etc/cron.d/x", "/etc/passwd", "a/b", "..", ".", "", "x\n", "a\x00b",
             "ok-one"]
    root = tmp_path / "root"
    installer = SeccompInstaller(lambda: [resource(n) for n in names], root)
    installer.sync()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["root/armorflow/ok-one.json"]
    assert installer.counters.skipped == len(names) - 1


def test_installer_survives_an_api_server_that_goes_away(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky() -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("connection refused")
        return []

    installer = SeccompInstaller(flaky, tmp_path, interval_s=0.05).start()
    try:
        wait_for("a second listing", lambda: calls["n"] >= 3, timeout_s=10)
    finally:
        installer.stop()
    assert installer.counters.errors == 1 and installer.counters.syncs >= 2


def test_agent_cli_installs_profiles(kube: KubeEmulator, broker: EmbeddedBroker,
                                     tmp_path: Path) -> None:
    seccomp = write_model(kube, "cli-model")
    root = tmp_path / "seccomp"
    env = {**os.environ, "ARMORFLOW_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    done = subprocess.run(
        [ARMORFLOW, "agent", "--no-audit", "--no-targets-topic", "--state-dir",
         str(tmp_path / "state"), "--kubeconfig", str(kube.kubeconfig_path),
         "--seccomp-root", str(root), "--duration", "3"],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "armorflow" / "cli-model.json").read_text() == seccomp_json(seccomp)
    stats = json.loads(done.stderr.strip().splitlines()[-1])
    assert stats["seccomp_installer"]["installed"] == 1, stats
    delete_model(kube, "cli-model", "shop")


def test_operator_sets_the_profile_in_its_targets(
    kube: KubeEmulator, broker: EmbeddedBroker
) -> None:
    """The operator service against the emulator: a Completed, opted-in policy's
    Deployments get the Localhost profile (a workload created later too); a model
    without namespace filters is refused with a clear condition and patches nothing."""
    api = kube.api_client()
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    policy = policy_obj(phase="")
    for name in ("web-a", "web-b"):
        apps.create_namespaced_deployment("shop", deployment(name))
    apps.create_namespaced_deployment("shop", deployment("bystander", opted_in=False))
    custom.create_namespaced_custom_object(GROUP, VERSION, "shop", "varmorpolicies", policy)
    completed_status = copy.deepcopy(policy_obj()["status"])
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "shop", "varmorpolicies", "web", {"status": completed_status})
    write_model(kube, "varmor-shop-web")

    service = OperatorService(Kube(api), broker.settings(), resync_s=1.0,
                              status_group=f"enforce-{time.time_ns()}").start()
    try:
        def template_seccomp(name: str) -> Any:
            obj = apps.read_namespaced_deployment(name, "shop")
            assert obj.spec.template.spec.security_context is None  # the pod's: untouched
            context = obj.spec.template.spec.containers[0].security_context
            profile = context.seccomp_profile if context is not None else None
            return None if profile is None else (profile.type, profile.localhost_profile)

        def policy_status() -> dict[str, Any]:
            got = custom.get_namespaced_custom_object(GROUP, VERSION, "shop",
                                                      "varmorpolicies", "web")
            return dict(got.get("status") or {})

        want = ("Localhost", "armorflow/varmor-shop-web.json")
        wait_for("the targets patched", lambda: template_seccomp("web-a") == want
                 and template_seccomp("web-b") == want, timeout_s=30)
        assert template_seccomp("bystander") is None
        status = wait_for("the enforcement recorded",
                          lambda: policy_status().get("seccompEnforcement") and policy_status(),
                          timeout_s=30)
        assert status["seccompEnforcement"]["workloads"] == [
            "Deployment shop/web-a", "Deployment shop/web-b"]
        cond = {c["type"]: c for c in status["conditions"]}[COND_SECCOMP]
        assert cond["status"] == "True", cond
        patched_generation = apps.read_namespaced_deployment("web-a", "shop").metadata.generation

        # a Deployment created later is put under the profile at the next resync
        apps.create_namespaced_deployment("shop", deployment("web-c"))
        wait_for("the later target patched", lambda: template_seccomp("web-c") == want,
                 timeout_s=30)
        time.sleep(2.5)  # two more resyncs: nothing is patched again
        assert apps.read_namespaced_deployment("web-a", "shop").metadata.generation == (
            patched_generation)
        assert service.counters.seccomp_patches == 3

        # A model rendered before namespace filters is refused: the condition says why
        # and a new target is left alone.
        delete_model(kube, "varmor-shop-web", "shop")
        write_model(kube, "varmor-shop-web", seccomp={
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["clone", "read"], "action": "SCMP_ACT_ALLOW"}]})
        apps.create_namespaced_deployment("shop", deployment("web-d"))
        cond = wait_for("the refusal", lambda: next(
            (c for c in policy_status().get("conditions", [])
             if c["type"] == COND_SECCOMP and c["status"] == "False"), None), timeout_s=30)
        assert cond["reason"] == "ProfileNotEnforceable"
        assert "without namespace filters" in cond["message"]
        assert template_seccomp("web-d") is None
        assert service.healthy()
    finally:
        service.stop()
