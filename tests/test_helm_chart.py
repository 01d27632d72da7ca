"""The Helm chart, rendered by the real ``helm`` binary and validated against the
Kubernetes OpenAPI schemas (``kubernetes-validate --strict``) and, for custom resources,
against the chart's own CRD schemas (jsonschema)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "armorflow"
HELM = REPO / ".tools" / "bin" / "helm"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: the appArmorProfile
#: field is 1.30+), validated with that version's schemas.
K8S_VERSION = "1.30.0"

#: The walkthrough's `helm upgrade` flags, plus its optional audit-log search order.
SEED_SETS = [
    "--set", "image.registry=elkeid-cn-beijing.cr.volces.com",
    "--set", "behaviorModeling.enabled=true",
    "--set", "agent.args={--auditLogPaths=/var/log/audit/audit.log|/var/log/kern.log}",
]
#: The walkthrough's comment on the opt-in label: "disable the feature with --set
#: 'manager.args={--webhookMatchLabel=}'".
NO_OPT_IN_SETS = ["--set", "manager.args={--webhookMatchLabel=}"]
SMALL_CLUSTER_SETS = [
    "--set", "broker.embedded.enabled=true",
    "--set", "broker.embedded.storage.persistent=true",
    "--set", "kafka.tls.enabled=true", "--set", "kafka.tls.secretName=kafka-ca",
    "--set", "kafka.tls.certKey=user.crt", "--set", "kafka.tls.keyKey=user.key",
    "--set", "kafka.sasl.enabled=true", "--set", "kafka.sasl.secretName=kafka-user",
    "--set", "agent.sysAdmin=true",
    "--set", "pipeline.modelStorageClaim=armorflow-models",
]
SEED_HEADER = [
    "NAME", "ENFORCER", "MODE", "TARGET-KIND", "TARGET-NAME", "TARGET-SELECTOR",
    "PROFILE-NAME", "READY", "STATUS", "AGE",
]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"helm missing at {HELM}: run make setup")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)


def render(*sets: str) -> list[dict[str, Any]]:
    done = helm("template", "varmor", str(CHART), "--namespace", "varmor", "--include-crds",
                *sets)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def agent_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = by_kind(docs, "DaemonSet")
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def crd_schemas() -> dict[str, dict[str, Any]]:
    """kind -> openAPIV3Schema of every CRD file the chart installs."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def seed_policy() -> dict[str, Any]:
    """Step 2 of the walkthrough."""
    return {
        "apiVersion": "crd.varmor.org/v1beta1",
        "kind": "VarmorClusterPolicy",
        "metadata": {"name": "demo-4"},
        "spec": {
            "updateExistingWorkloads": True,
            "target": {"kind": "Deployment", "selector": {"matchLabels": {"app": "demo-4"}}},
            "policy": {"enforcer": "AppArmorSeccomp", "mode": "BehaviorModeling",
                       "modelingOptions": {"duration": 30}},
        },
    }


def test_lint_strict() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    for sets in (SEED_SETS, SMALL_CLUSTER_SETS):
        done = helm("lint", "--strict", str(CHART), *sets)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("sets", [[], SEED_SETS, SMALL_CLUSTER_SETS],
                         ids=["defaults", "seed", "small-cluster-tls-sasl"])
def test_every_manifest_validates(sets: list[str]) -> None:
    docs = render(*sets)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "DaemonSet", "ClusterRole",
            "ClusterRoleBinding", "ServiceAccount", "Job"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    crds = {d["spec"]["names"]["kind"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert crds == {"VarmorPolicy", "VarmorClusterPolicy", "ArmorProfileModel"}
    deployments = {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    assert deployments == {"varmor-armorflow-operator", "varmor-armorflow-pipeline"}


def test_strict_validation_can_fail() -> None:
    """The validator is not a rubber stamp: a misspelt field is refused."""
    container = agent_container(render())
    bad = copy.deepcopy(container)
    bad["securityContext"]["privilegd"] = True
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [bad]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_agent_runs_without_privileged() -> None:
    for sets in ([], SEED_SETS, SMALL_CLUSTER_SETS):
        docs = render(*sets)
        (ds,) = by_kind(docs, "DaemonSet")
        spec = ds["spec"]["template"]["spec"]
        assert spec["hostPID"] is True
        container = agent_container(docs)
        sc = container["securityContext"]
        assert sc.get("privileged") is not True
        assert sc["capabilities"]["drop"] == ["ALL"]
        added = set(sc["capabilities"]["add"])
        assert {"BPF", "PERFMON", "SYS_RESOURCE", "AUDIT_READ"} <= added
        assert ("SYS_ADMIN" in added) == (sets is SMALL_CLUSTER_SETS)  # only when asked
        # The API server's own rule, beyond the schema: no_new_privs excludes SYS_ADMIN.
        assert not (sc["allowPrivilegeEscalation"] is False and "SYS_ADMIN" in added)
        assert sc["allowPrivilegeEscalation"] is ("SYS_ADMIN" in added)
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/sys/kernel/debug", "/sys/kernel/tracing", "/sys/fs/bpf", "/sys/kernel/btf",
                "/var/log", "/host/proc", "/run/containerd"} <= mounts
        for doc in docs:
            text = yaml.safe_dump(doc)
            assert "privileged: true" not in text, doc["metadata"]["name"]


def test_seed_values_reach_the_pods() -> None:
    docs = render(*SEED_SETS)
    container = agent_container(docs)
    # vArmor's spelling reaches the agent as its own option name
    assert container["args"] == [
        "agent", "--cri-endpoint=unix:///run/containerd/containerd.sock", "--kube", "--tracer",
        "--seccomp-root=/var/lib/kubelet/seccomp", "--metrics-port=8081",
        "--audit-log-paths=/var/log/audit/audit.log|/var/log/kern.log"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "500Mi"}, "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert container["image"] == "elkeid-cn-beijing.cr.volces.com/armorflow/armorflow:0.1.0"
    (op,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("operator")]
    args = op["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--system-namespace=varmor" in args
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ARMORFLOW_BOOTSTRAP_SERVERS"] == "my-cluster-kafka-bootstrap.kafka.svc:9092"


def test_behavior_modeling_cannot_be_switched_off() -> None:
    done = helm("template", "varmor", str(CHART), "--set", "behaviorModeling.enabled=false")
    assert done.returncode != 0
    assert "BehaviorModeling mode only" in done.stderr


def test_embedded_broker_and_kafka_security() -> None:
    docs = render(*SMALL_CLUSTER_SETS)
    (sts,) = by_kind(docs, "StatefulSet")
    assert sts["metadata"]["name"] == "varmor-armorflow-broker"
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["port"] == 9092
    container = agent_container(docs)
    env = {e["name"]: e for e in container["env"]}
    assert env["ARMORFLOW_BOOTSTRAP_SERVERS"]["value"] == (
        "varmor-armorflow-broker.varmor.svc:9092")
    options = env["ARMORFLOW_KAFKA_OPTIONS"]["value"].split(";")
    assert "security.protocol=SASL_SSL" in options
    assert "sasl.password=$(ARMORFLOW_KAFKA_SASL_PASSWORD)" in options
    assert "ssl.ca.location=/etc/armorflow/kafka-tls/ca.crt" in options
    assert "ssl.key.location=/etc/armorflow/kafka-tls/user.key" in options
    ref = env["ARMORFLOW_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kafka-user", "key": "password"}
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    names = [e["name"] for e in container["env"]]
    assert names.index("ARMORFLOW_KAFKA_SASL_PASSWORD") < names.index("ARMORFLOW_KAFKA_OPTIONS")
    assert "/etc/armorflow/kafka-tls" in {m["mountPath"] for m in container["volumeMounts"]}
    (pipeline,) = [d for d in by_kind(docs, "Deployment")
                   if d["metadata"]["name"].endswith("pipeline")]
    volumes = {v["name"]: v for v in pipeline["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "armorflow-models"}
    # default: no broker, plain connection
    default = render()
    assert by_kind(default, "StatefulSet") == []
    env = {e["name"] for e in agent_container(default)["env"]}
    assert "ARMORFLOW_KAFKA_OPTIONS" not in env


def test_rbac_is_least_privilege() -> None:
    docs = render()
    roles = {d["metadata"]["name"]: d["rules"] for d in by_kind(docs, "ClusterRole")}
    for name, rules in roles.items():
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], name
            assert "delete" not in rule["verbs"], name
            assert "secrets" not in rule["resources"], name
    operator = roles["varmor-armorflow-operator"]
    writes = {(r, v) for rule in operator for r in rule["resources"] for v in rule["verbs"]
              if v in ("patch", "update", "create")}
    assert writes == {
        ("varmorpolicies/status", "patch"), ("varmorclusterpolicies/status", "patch"),
        ("deployments", "patch"), ("statefulsets", "patch"), ("daemonsets", "patch"),
    }
    agent = roles["varmor-armorflow-agent"]
    assert agent == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                     {"apiGroups": ["crd.varmor.org"], "resources": ["armorprofilemodels"],
                      "verbs": ["list"]}]
    reads = {(r, v) for rule in operator for r in rule["resources"] for v in rule["verbs"]}
    assert ("armorprofilemodels", "get") in reads
    # without the kubelet's seccomp directory the agent reads no models
    roles = {d["metadata"]["name"]: d["rules"] for d in
             by_kind(render("--set", "agent.kubeletSeccompDir="), "ClusterRole")}
    assert roles["varmor-armorflow-agent"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    pipeline = {(r, v) for rule in roles["varmor-armorflow-pipeline"]
                for r in rule["resources"] for v in rule["verbs"]}
    assert pipeline == {("armorprofilemodels", "get"), ("armorprofilemodels", "create"),
                        ("armorprofilemodels", "update"), ("armorprofilemodels/status", "patch")}


def test_policy_crds_agree_and_accept_the_seed_policy() -> None:
    schemas = crd_schemas()
    cluster, namespaced = schemas["VarmorClusterPolicy"], schemas["VarmorPolicy"]
    assert cluster == namespaced  # one shape, two scopes
    jsonschema.validate(seed_policy(), cluster)
    ns_policy = seed_policy()
    ns_policy["kind"] = "VarmorPolicy"
    ns_policy["metadata"]["namespace"] = "demo"
    jsonschema.validate(ns_policy, namespaced)
    # a status the operator writes is valid too
    with_status = seed_policy()
    with_status["status"] = {
        "profileName": "varmor-cluster-varmor-demo-4", "ready": True, "phase": "Modeling",
        "acceptedMode": "BehaviorModeling",
        "modeling": {"startTs": 1, "duration": 30, "targetDigest": "ab"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Modeling",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }
    jsonschema.validate(with_status, cluster)
    bad = seed_policy()
    bad["spec"]["policy"]["modelingOptions"]["duration"] = "30m"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, cluster)
    bad = seed_policy()
    bad["spec"]["target"]["kind"] = "CronJob"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, cluster)


def test_printer_columns_match_the_seed() -> None:
    for path in ("varmorpolicies.yaml", "varmorclusterpolicies.yaml"):
        crd = yaml.safe_load((CHART / "crds" / path).read_text())
        (version,) = crd["spec"]["versions"]
        header = ["NAME"] + [c["name"] for c in version["additionalPrinterColumns"]]
        assert header == SEED_HEADER
        assert version["subresources"] == {"status": {}}
    scopes = {yaml.safe_load((CHART / "crds" / p).read_text())["spec"]["names"]["shortNames"][0]:
              yaml.safe_load((CHART / "crds" / p).read_text())["spec"]["scope"]
              for p in ("varmorpolicies.yaml", "varmorclusterpolicies.yaml")}
    assert scopes == {"vpol": "Namespaced", "vcpol": "Cluster"}


@pytest.mark.parametrize("sets", [[], SEED_SETS, NO_OPT_IN_SETS],
                         ids=["defaults", "seed", "no-opt-in"])
def test_the_cli_accepts_the_rendered_arguments(sets: list[str]) -> None:
    """Every container's args parse with the real `armorflow` command line."""
    import typer.main

    from armorflow.cli import app

    group = typer.main.get_command(app)
    verbs = group.commands  # type: ignore[attr-defined]
    docs = render(*sets)
    pods = [d["spec"]["template"]["spec"] for d in docs
            if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")]
    checked = 0
    for pod in pods:
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            verb, *args = container["args"]
            command = verbs.get(verb)
            assert command is not None, f"no verb {verb!r}"
            with command.make_context(verb, list(args)) as ctx:
                assert ctx.params  # parsed, not run
            checked += 1
    # operator, pipeline, agent, topics; the first three's wait-for-topics
    assert checked == 7


def test_the_pipeline_sink_url_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered --sink URL is one the pipeline's sink factory accepts, model dir included
    (a kubeconfig parameter stands in for the pod's in-cluster credentials)."""
    from armorflow.pipeline.sink import open_sink
    from armorflow.pipeline.sink.k8s import KubernetesSink

    (pipeline,) = [d for d in by_kind(render(), "Deployment")
                   if d["metadata"]["name"].endswith("pipeline")]
    (url,) = [a.removeprefix("--sink=")
              for a in pipeline["spec"]["template"]["spec"]["containers"][0]["args"]
              if a.startswith("--sink=")]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    joiner = "&" if "?" in url else "?"
    sink = open_sink(f"{url}{joiner}kubeconfig={kubeconfig}")
    try:
        assert isinstance(sink, KubernetesSink)
        assert sink.model_dir == Path("/var/lib/armorflow/models")
    finally:
        sink.close()


def test_varmor_match_label_flag_reaches_the_operator() -> None:
    import typer.main

    from armorflow.cli import app

    def operator_args(*sets: str) -> list[str]:
        (op,) = [d for d in by_kind(render(*sets), "Deployment")
                 if d["metadata"]["name"].endswith("operator")]
        args: list[str] = op["spec"]["template"]["spec"]["containers"][0]["args"]
        return args

    def parsed_match_label(args: list[str]) -> str:
        command = typer.main.get_command(app).commands["operator"]  # type: ignore[attr-defined]
        with command.make_context("operator", args[1:]) as ctx:
            return str(ctx.params["match_label"])

    default = operator_args()
    assert [a for a in default if a.startswith("--match-label")] == [
        "--match-label=sandbox.varmor.org/enable=true"]
    assert parsed_match_label(default) == "sandbox.varmor.org/enable=true"
    # vArmor's flag comes after the default, and the later one wins
    assert parsed_match_label(operator_args(*NO_OPT_IN_SETS)) == ""


def test_agent_asks_the_runtime_socket_the_chart_mounts() -> None:
    def cri_args(*sets: str) -> tuple[list[str], dict[str, str]]:
        docs = render(*sets)
        container = agent_container(docs)
        (ds,) = by_kind(docs, "DaemonSet")
        volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["containerd"] == "/run/containerd"
        host = volumes["containerd"]["hostPath"]["path"]
        return [a for a in container["args"] if a.startswith("--cri-endpoint")], {"host": host}

    assert cri_args() == (["--cri-endpoint=unix:///run/containerd/containerd.sock"],
                          {"host": "/run/containerd"})
    # cri-o: its socket directory mounted where the agent looks, under its own name
    assert cri_args("--set", "agent.containerdSocketDir=/var/run/crio",
                    "--set", "agent.criSocket=crio.sock") == (
        ["--cri-endpoint=unix:///run/containerd/crio.sock"], {"host": "/var/run/crio"})
    assert cri_args("--set", "agent.criSocket=")[0] == []  # the API server only


def test_agent_writes_profiles_where_the_kubelet_reads_them() -> None:
    """The agent's --seccomp-root is the host's kubelet seccomp directory, writable, and
    goes away with the value."""
    def seccomp(*sets: str) -> tuple[list[str], str | None, Any]:
        docs = render(*sets)
        container = agent_container(docs)
        (ds,) = by_kind(docs, "DaemonSet")
        volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        args = [a for a in container["args"] if a.startswith("--seccomp-root")]
        mount = mounts.get("kubelet-seccomp")
        volume = volumes.get("kubelet-seccomp")
        if mount is not None:
            assert not mount.get("readOnly") and args == [
                f"--seccomp-root={mount['mountPath']}"]
        return args, volume and volume["hostPath"]["path"], mount

    args, host, _ = seccomp()
    assert args == ["--seccomp-root=/var/lib/kubelet/seccomp"]
    assert host == "/var/lib/kubelet/seccomp"
    # a kubelet with another --root-dir
    assert seccomp("--set", "agent.kubeletSeccompDir=/data/kubelet/seccomp")[1] == (
        "/data/kubelet/seccomp")
    assert seccomp("--set", "agent.kubeletSeccompDir=") == ([], None, None)


# --- metrics, probes, topics, Kafka address (issue #18 items 5 and 9) ------------------------


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """component -> pod template of the operator, pipeline and agent."""
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]
            for d in docs if d["kind"] in ("Deployment", "DaemonSet")}


def test_every_component_serves_metrics_and_probes_on_its_port() -> None:
    """Each component gets --metrics-port, a named port, /healthz liveness, /readyz
    readiness (startup probes for the slow starters) and the prometheus.io annotations;
    the port parses as the CLI's own option."""
    import typer.main

    from armorflow.cli import app

    verbs = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for component, template in workloads(render()).items():
        (container,) = template["spec"]["containers"]
        assert "--metrics-port=8081" in container["args"], component
        verb, *args = container["args"]
        with verbs[verb].make_context(verb, list(args)) as ctx:
            assert ctx.params["metrics_port"] == 8081
        assert container["ports"] == [
            {"name": "metrics", "containerPort": 8081, "protocol": "TCP"}], component
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        startup = container.get("startupProbe")
        assert (startup is not None) == (component in ("agent", "pipeline")), component
        if startup:
            assert startup["httpGet"]["path"] == "/healthz"
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        assert template["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true", "prometheus.io/port": "8081",
            "prometheus.io/path": "/metrics"}, component


def test_metrics_port_zero_turns_metrics_and_probes_off() -> None:
    for component, template in workloads(render("--set", "metrics.port=0")).items():
        (container,) = template["spec"]["containers"]
        assert not [a for a in container["args"] if a.startswith("--metrics-port")], component
        for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
            assert key not in container, (component, key)
        assert "annotations" not in template["metadata"]
    # annotations alone can go
    for template in workloads(render("--set", "metrics.podAnnotations=false")).values():
        assert "annotations" not in template["metadata"]
        assert template["spec"]["containers"][0]["ports"][0]["containerPort"] == 8081


def test_the_operators_former_health_port_still_sets_its_port() -> None:
    templates = workloads(render("--set", "operator.healthPort=9100"))
    (operator,) = templates["operator"]["spec"]["containers"]
    assert "--metrics-port=9100" in operator["args"]
    assert operator["ports"][0]["containerPort"] == 9100
    assert templates["operator"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    (agent,) = templates["agent"]["spec"]["containers"]
    assert "--metrics-port=8081" in agent["args"]  # the others keep metrics.port


@pytest.mark.parametrize("sets", [[], SMALL_CLUSTER_SETS], ids=["defaults", "tls-sasl"])
def test_components_wait_for_the_topics_the_job_creates(sets: list[str]) -> None:
    """Every component's init container runs `armorflow topics --wait` with the same Kafka
    settings as the component; the Job that creates the topics is no hook (helm --wait
    would wait for the pods before running it) and is new at every revision."""
    docs = render(*sets)
    for component, template in workloads(docs).items():
        (init,) = template["spec"]["initContainers"]
        (main,) = template["spec"]["containers"]
        assert init["args"][:2] == ["topics", "--wait=0"], component
        assert init["image"] == main["image"]
        assert init["env"] == [e for e in main["env"]
                               if e["name"].startswith("ARMORFLOW_KAFKA")
                               or e["name"] == "ARMORFLOW_BOOTSTRAP_SERVERS"], component
        assert init["securityContext"]["runAsNonRoot"] is True
        tls = [m for m in main.get("volumeMounts", []) if m["name"] == "kafka-tls"]
        assert [m for m in init.get("volumeMounts", []) if m["name"] == "kafka-tls"] == tls
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["name"] == "varmor-armorflow-topics-1"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics", "--create"]
    # without createTopics the components still wait (for topics someone else creates)
    docs = render("--set", "kafka.createTopics=false")
    assert by_kind(docs, "Job") == []
    assert all(t["spec"]["initContainers"] for t in workloads(docs).values())


def test_topics_wait_waits_for_topics_created_later(tmp_path: Path) -> None:
    """What the init container runs, against a real broker that has no topics yet: it
    waits, says which are missing, and returns once `armorflow topics --create` made
    them."""
    import sys

    from armorflow.broker import EmbeddedBroker

    broker = EmbeddedBroker(impl="noida", data_dir=tmp_path / "broker").start(create=False)
    cli = [sys.executable, "-m", "armorflow.cli", "topics", "-b", broker.bootstrap_servers]
    try:
        check = subprocess.run([*cli, "--check"], capture_output=True, text=True, timeout=60)
        assert check.returncode == 1
        assert "armorflow.control missing" in check.stderr
        waiter = subprocess.Popen([*cli, "--wait=120"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                waiter.wait(4)  # still waiting: nothing created the topics
            made = subprocess.run([*cli, "--create"], capture_output=True, text=True,
                                  timeout=60)
            assert made.returncode == 0, made.stderr
            out, err = waiter.communicate(timeout=30)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        assert waiter.returncode == 0, err
        assert "all topics ready" in out
        assert "armorflow.events.exec missing" in err
        assert subprocess.run([*cli, "--check"], capture_output=True,
                              timeout=60).returncode == 0
    finally:
        broker.cleanup()


def rendered_notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as Helm renders it. `helm template` leaves NOTES.txt out and `helm install
    --dry-run` needs a cluster, so a copy of the chart renders the same file as the data
    of a ConfigMap through the real helm."""
    import shutil

    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_notes.tpl").write_text(
            '{{- define "test.notes" -}}\n' + notes + '{{- end -}}\n')
        (chart / "templates" / "zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            "  notes: {{ include \"test.notes\" . | toJson }}\n")
    done = helm("template", "varmor", str(chart), "--namespace", "varmor",
                "--show-only", "templates/zz-notes.yaml", *sets)
    assert done.returncode == 0, done.stderr
    text: str = yaml.safe_load(done.stdout)["data"]["notes"]
    return text


def test_the_example_kafka_address_is_warned_about_and_an_empty_one_refused(
    tmp_path: Path
) -> None:
    default = rendered_notes(tmp_path)
    assert "WARNING: kafka.bootstrapServers is the chart's example address" in default
    assert "--set kafka.bootstrapServers=HOST:PORT" in default
    for sets in (["--set", "kafka.bootstrapServers=kafka.prod.svc:9093"],
                 ["--set", "broker.embedded.enabled=true"]):
        assert "WARNING" not in rendered_notes(tmp_path, *sets), sets
    for empty in ("", " "):
        done = helm("template", "varmor", str(CHART), "--set",
                    f"kafka.bootstrapServers={empty}")
        assert done.returncode != 0
        assert "kafka.bootstrapServers is required" in done.stderr
    done = helm("template", "varmor", str(CHART), "--set", "kafka.bootstrapServers=",
                "--set", "broker.embedded.enabled=true")
    assert done.returncode == 0, done.stderr


def test_notes_explain_crd_upgrades_and_a_clash_with_varmor(tmp_path: Path) -> None:
    notes = rendered_notes(tmp_path)
    assert "never upgrades or deletes them" in notes
    assert "kubectl apply --server-side -f <chart>/crds/" in notes
    assert "vArmor" in notes and "Helm skips them" in notes
    assert "port 8081" in notes
    assert "varmor-armorflow-topics-1" in notes
    assert "Metrics:" not in rendered_notes(tmp_path, "--set", "metrics.port=0")


def test_the_pipeline_rule_budget_is_a_value() -> None:
    """pipeline.maxRules reaches the worker as --max-rules (memory per open window)."""
    def pipeline_args(*sets: str) -> list[str]:
        (deploy,) = [d for d in render(*sets) if d["kind"] in ("Deployment", "StatefulSet")
                     and d["metadata"]["name"].endswith("pipeline")]
        args: list[str] = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        return args

    assert "--max-rules=100000" in pipeline_args()
    assert "--max-rules=5000" in pipeline_args("--set", "pipeline.maxRules=5000")
