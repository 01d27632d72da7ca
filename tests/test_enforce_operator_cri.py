"""From a policy to an enforced container, with every part real (#17 item 3).

A Deployment and a VarmorPolicy with ``enforceSeccompWhenCompleted`` in the project's
Kubernetes API emulator; the operator service publishes the window and the targets; the
agent follows the targets topic, finds the workload's container in a real containerd and
traces it with the eBPF tracer; a real ``armorflow pipeline`` worker models it and writes
the ArmorProfileModel through its k8s sink; the operator marks the policy Completed and
sets the profile in the Deployment's pod template; the agent's installer writes the
profile where the kubelet reads it. Then the test does the kubelet's part: it starts the
Deployment's pod template over CRI, with the Seccomp profile the template names, and
runs the workload with another input (it succeeds) and the namespace and mount probes
(refused).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from armorflow.agents.agent import Agent, TargetsFeed, TracerFeed
from armorflow.agents.attribution import Attributor, TargetSet
from armorflow.agents.cri import CriClient, CriResolver
from armorflow.agents.installer import SeccompInstaller, kube_model_lister
from armorflow.agents.publish import Publisher
from armorflow.broker import EmbeddedBroker
from armorflow.operator.kube import USER_AGENT, Kube
from armorflow.operator.service import OperatorService
from armorflow.operator.workloads import ENABLE_LABEL
from armorflow.resource import GROUP, VERSION
from support import CHART_CRDS, KubeEmulator
from support.containerd import Containerd
from support.pipeline import WorkerProcess
from support.waiting import wait_for
from test_enforce_seccomp_cri import (  # noqa: F401  (fixtures)
    PROBES,
    WORKLOAD,
    containerd,
    gated,
    run_to_end,
    tracer,
    wait_for_pid,
)
from test_operator_e2e import _rbac_request

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.broker]

PROFILE = "varmor-shop-web"
REPO = Path(__file__).resolve().parents[1]
AGENT_USER_AGENT = "armorflow-agent-installer-test"
NODE = "node-operator-cri"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    with KubeEmulator([CHART_CRDS]) as emulator:
        emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        for ns in ("varmor", "shop"):
            client.CoreV1Api(emulator.api_client()).create_namespace(
                {"metadata": {"name": ns}})
        yield emulator


def web_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop",
                     "labels": {"app": "enforced", ENABLE_LABEL: "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "enforced"}},
                 "template": {"metadata": {"labels": {"app": "enforced"}},
                              "spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
    }


def web_policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VarmorPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"target": {"kind": "Deployment",
                            "selector": {"matchLabels": {"app": "enforced"}}},
                 "policy": {"enforcer": "AppArmorSeccomp", "mode": "BehaviorModeling",
                            "modelingOptions": {"duration": 30,
                                                "enforceSeccompWhenCompleted": True}}},
    }


def kubelet_seccomp_file(template: dict[str, Any], root: Path,
                         container: str = "app") -> Path | None:
    """What a kubelet hands the runtime for one container of a pod template: the
    container's own Seccomp profile, else the pod's (a Localhost one under its root)."""
    spec = template.get("spec") or {}
    (own,) = [c for c in spec.get("containers") or [] if c.get("name") == container]
    profile = ((own.get("securityContext") or {}).get("seccompProfile")
               or (spec.get("securityContext") or {}).get("seccompProfile"))
    if not profile or profile.get("type") != "Localhost":
        return None
    relative = str(profile["localhostProfile"])
    assert not relative.startswith("/") and ".." not in relative.split("/")
    return root / relative


def chart_role(component: str) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the chart's ClusterRole of ``component`` allows."""
    chart = subprocess.run(
        [str(REPO / ".tools" / "bin" / "helm"), "template", "varmor", str(REPO / "helm" /
         "armorflow"), "--namespace", "varmor", "--show-only", f"templates/{component}.yaml"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    (role,) = [d for d in yaml.safe_load_all(chart) if d and d["kind"] == "ClusterRole"]
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def pod_template(apps: Any) -> dict[str, Any]:
    """The Deployment's pod template as the API serves it (JSON field names)."""
    template: dict[str, Any] = client.ApiClient().sanitize_for_serialization(
        apps.read_namespaced_deployment("web", "shop").spec.template)
    return template


@contextlib.contextmanager
def traced_agent(daemon: Containerd, running_tracer: Any, broker: EmbeddedBroker,
                 spool: Path) -> Iterator[Agent]:
    """The agent as the chart runs it, minus the audit source: the operator's targets
    topic, CRI attribution, the eBPF tracer."""
    targets = TargetSet([])
    attributor = Attributor(targets, CriResolver(CriClient(daemon.endpoint)))
    feed = TracerFeed(running_tracer, attributor, NODE, rescan_s=0.2, owns_tracer=False)
    agent = Agent(node=NODE, publisher=Publisher(broker.settings(), spool), sources=[],
                  attributor=attributor, targets=targets,
                  targets_feed=TargetsFeed(broker.settings(), NODE), event_sources=[feed])
    try:
        yield agent
    finally:
        agent.close()


def test_policy_to_enforced_container(
    kube: KubeEmulator, containerd: Containerd, tracer: Any,  # noqa: F811
    noida_broker: EmbeddedBroker, tmp_path: Path,
) -> None:
    broker = noida_broker
    api = kube.api_client()
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    root = tmp_path / "kubelet" / "seccomp"

    worker = WorkerProcess(broker, app_id=f"enforce-{time.time_ns()}", workdir=tmp_path,
                           grace_s=1.0,
                           extra=["--sink", f"k8s://?kubeconfig={kube.kubeconfig_path}"]).start()
    # the operator's own client: its requests carry its user agent, the test's do not
    service = OperatorService(Kube(kube.api_client()), broker.settings(), resync_s=1.0,
                              status_group=f"enforce-cri-{time.time_ns()}")
    try:
        worker.wait_ready()
        service.start()
        apps.create_namespaced_deployment("shop", web_deployment())
        custom.create_namespaced_custom_object(GROUP, VERSION, "shop", "varmorpolicies",
                                               web_policy())

        def status() -> dict[str, Any]:
            got = custom.get_namespaced_custom_object(GROUP, VERSION, "shop",
                                                      "varmorpolicies", "web")
            return dict(got.get("status") or {})

        wait_for("Modeling", lambda: status().get("phase") == "Modeling", timeout_s=30)
        time.sleep(2)  # the worker has taken the start control before the events arrive

        # Run 1, modeled: the Deployment's pod, started as a kubelet would (no profile yet).
        assert kubelet_seccomp_file(pod_template(apps), root) is None
        script = gated(WORKLOAD.format(file="/etc/hostname", word="one", n=1))
        pod = containerd.run_pod("web-1", "shop", labels={"app": "enforced"})
        try:
            cid = containerd.run_container(pod, "app", ["/bin/sh", "-c", script])
            pid = wait_for_pid(containerd, cid)
            with traced_agent(containerd, tracer, broker, tmp_path / "spool") as agent:
                feed = agent.event_sources[0]
                wait_for("the agent tracing the pod from the operator's targets",
                         lambda: (agent.step(0.1), feed.stats()["containers"] == 1)[1],
                         timeout_s=30)
                Path(f"/proc/{pid}/root/tmp/go").touch()
                wait_for("the modeled run", lambda: (
                    agent.step(0.1), Path(f"/proc/{pid}/root/tmp/finished").exists())[1],
                    timeout_s=30)
                for _ in range(5):
                    agent.step(0.2)
                assert agent.counters.published > 0, agent.stats()
        finally:
            containerd.remove_pod(pod)

        # End the window early, as the seed does by lowering the duration.
        time.sleep(2)
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "shop", "varmorpolicies", "web",
            {"spec": {"policy": {"modelingOptions": {"duration": 0}}}})
        done = wait_for("Completed", lambda: status().get("phase") == "Completed" and status(),
                        timeout_s=90, proc=worker.proc)
        assert done["profileName"] == PROFILE

        # The operator puts the Deployment under the profile...
        wait_for("the Deployment patched", lambda: (status().get("seccompEnforcement") or {})
                 .get("workloads") == ["Deployment shop/web"], timeout_s=30)
        profile_file = kubelet_seccomp_file(pod_template(apps), root)
        assert profile_file == root / "armorflow" / f"{PROFILE}.json"
        # ...and the node's agent writes it where the kubelet looks.
        agent_api = kube.api_client()
        agent_api.user_agent = AGENT_USER_AGENT
        installer = SeccompInstaller(kube_model_lister(agent_api), root)
        installer.sync()
        # (the worker also completes the windows other tests left on a shared broker)
        assert installer.counters.profiles.get(PROFILE) == f"shop/{PROFILE}"
        assert profile_file.is_file()
    finally:
        service.stop()
        worker.stop()

    # Every request the operator and the installer made is one the chart's roles allow
    # (the emulator does not enforce RBAC: its request log is checked against them).
    requests = kube.call(lambda: list(kube.handler))
    for component, agent_name in (("operator", USER_AGENT), ("agent", AGENT_USER_AGENT)):
        made = {_rbac_request(r.method.value, r.url.path, dict(r.params)) for r in requests
                if r.headers.get("User-Agent") == agent_name}
        allowed = chart_role(component)
        assert made and made <= allowed, (component, sorted(made - allowed))
        if component == "operator":
            assert {("crd.varmor.org", "armorprofilemodels", "get"),
                    ("apps", "deployments", "patch")} <= made
        else:
            assert made == {("crd.varmor.org", "armorprofilemodels", "list")}

    # Run 2: the patched template's pod, under its profile, with another input.
    pod = containerd.run_pod("web-2", "shop", labels={"app": "enforced"})
    try:
        workload = WORKLOAD.format(file="/etc/passwd", word="two", n=2)
        code, lines = run_to_end(containerd, pod, "work", workload, profile_file)
        assert code == 0, lines
        assert lines[0] == "root:x:0:0:root:/:/bin/sh" and "two" in lines, lines
        assert lines[-1] == "work 2 ok", lines
        script = "; ".join(f"{command} 2>&1" for command in PROBES) + "; echo probed"
        code, lines = run_to_end(containerd, pod, "probes", script, profile_file)
        assert code == 0 and lines[-1] == "probed", lines
        assert lines[:-1] == list(PROBES.values())
    finally:
        containerd.remove_pod(pod)
