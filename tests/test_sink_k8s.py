"""The k8s:// and file:// sinks against the Kubernetes API emulator over HTTP (official
client), and the walkthrough's step 6 through the real kubectl."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import orjson
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from armorflow.model import BehaviourModel
from armorflow.pipeline.sink import CompletedModel, PolicyRef, completed_from_window, open_sink
from armorflow.render import render_apparmor, render_seccomp
from armorflow.resource import (
    GROUP,
    PLURAL,
    STORAGE_INTERNAL,
    STORAGE_LOCAL_DISK,
    STORED_GZIP,
    STORED_LOCAL,
    STORED_PLAIN,
    VERSION,
    read_resource,
)
from support import CHART_CRDS, KubeEmulator
from support.apparmor_check import compile_check
from test_resource import demo_model, library_model

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp")


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    with KubeEmulator([CHART_CRDS]) as emulator:
        emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        api = emulator.api_client()
        for ns in ("varmor", "shop"):
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        yield emulator


@pytest.fixture(scope="module")
def custom(kube: KubeEmulator) -> Any:
    return client.CustomObjectsApi(kube.api_client())


@pytest.fixture
def sink_url(kube: KubeEmulator, tmp_path: Path) -> str:
    return f"k8s://?kubeconfig={kube.kubeconfig_path}&modelDir={tmp_path / 'models'}"


def cluster_policy(custom: Any, name: str) -> PolicyRef:
    """A real VarmorClusterPolicy in the emulator (its uid becomes the owner)."""
    made = custom.create_cluster_custom_object(GROUP, VERSION, "varmorclusterpolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VarmorClusterPolicy",
        "metadata": {"name": name},
        "spec": {"target": {"kind": "Deployment", "selector": {"matchLabels": {"app": name}}},
                 "policy": {"enforcer": "AppArmorSeccomp", "mode": "BehaviorModeling",
                            "modelingOptions": {"duration": 3}}},
    })
    return PolicyRef("VarmorClusterPolicy", "", name, uid=made["metadata"]["uid"])


def completed(profile: str, model: BehaviourModel, policy: PolicyRef,
              namespace: str = "varmor") -> CompletedModel:
    return CompletedModel(
        profile=profile, namespace=namespace, policy=policy, enforcer="AppArmorSeccomp",
        model=model, apparmor=render_apparmor(profile, model).text,
        seccomp=render_seccomp(model))


def fetch(custom: Any, name: str, namespace: str = "varmor") -> dict[str, Any]:
    found: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return found


def other_node_model() -> BehaviourModel:
    return BehaviourModel.from_dynamic_result({
        "apparmor": {"executions": ["/usr/bin/curl"],
                     "files": [{"path": "/etc/hosts", "permissions": ["r"], "owner": True}]},
        "seccomp": {"syscalls": ["connect", "socket"]},
    })


def test_create_writes_resource_status_and_owner(custom: Any, sink_url: str) -> None:
    policy = cluster_policy(custom, "demo-4")
    name = "varmor-cluster-varmor-demo-4"
    model = demo_model()
    sink = open_sink(sink_url)
    # As the pipeline calls it: the synchronous client in a thread.
    result = asyncio.run(asyncio.to_thread(sink.write, completed(name, model, policy)))
    assert (result.location, result.stored, result.merged, result.attempts) == (
        f"k8s://varmor/{name}", STORED_PLAIN, False, 1)
    stored = fetch(custom, name)
    assert stored["metadata"]["ownerReferences"][0]["uid"] == policy.uid
    assert stored["metadata"]["resourceVersion"] == result.resource_version
    assert stored["status"]["ready"] is True
    assert (stored["status"]["desiredNumber"], stored["status"]["completedNumber"]) == (2, 2)
    back = read_resource(stored)
    assert back.apparmor == render_apparmor(name, model).text
    assert back.seccomp == render_seccomp(model)
    assert back.model == model and stored["storageType"] == STORAGE_INTERNAL
    sink.close()


def test_second_node_merges_instead_of_overwriting(custom: Any, sink_url: str,
                                                   apparmor_parser: str) -> None:
    policy = cluster_policy(custom, "merge")
    name = "varmor-cluster-varmor-merge"
    sink = open_sink(sink_url)
    first = sink.write(completed(name, demo_model(), policy))
    second = sink.write(completed(name, other_node_model(), policy))
    assert second.merged and not first.merged
    assert int(second.resource_version or 0) > int(first.resource_version or 0)
    stored = fetch(custom, name)
    back = read_resource(stored)
    union = demo_model()
    union.merge(other_node_model())
    assert back.model == union
    assert stored["metadata"]["generation"] == 2
    # The profiles were re-rendered from the union: both nodes' rules, and they compile.
    assert "/usr/bin/curl ix," in (back.apparmor or "") and "/usr/bin/id ix," in (
        back.apparmor or "")
    assert back.seccomp is not None
    allowed = {name for rule in back.seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for name in rule["names"]}
    assert {"connect", "unshare"} <= allowed  # unshare in a rule of its own, flags filtered
    compile_check(back.apparmor or "")
    # Writing the same model again changes nothing.
    again = sink.write(completed(name, other_node_model(), policy))
    assert again.resource_version == fetch(custom, name)["metadata"]["resourceVersion"]
    assert read_resource(fetch(custom, name)).model == union


def test_conflict_is_retried_with_the_concurrent_write_merged(
        kube: KubeEmulator, custom: Any, sink_url: str) -> None:
    policy = cluster_policy(custom, "race")
    name = "varmor-cluster-varmor-race"
    sink = open_sink(sink_url)
    sink.write(completed(name, demo_model(), policy))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/varmor/{PLURAL}/{name}"
    concurrent = BehaviourModel.from_dynamic_result(
        {"apparmor": {"capabilities": ["net_raw"]}, "seccomp": {"syscalls": ["ptrace"]}})
    interfered: list[int] = []

    async def concurrent_writer(request: kmock.Request) -> None:
        """Before the sink's PUT lands, another node writes (bumping resourceVersion)."""
        current = json.loads(await (await kube.handler.get(path)).read())
        union = BehaviourModel.from_dynamic_result(current["data"]["dynamicResult"])
        union.merge(concurrent)
        patch = {"data": {"dynamicResult": union.to_dynamic_result()}}
        response = await kube.handler.patch(
            path, data=orjson.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"})
        interfered.append(response.status)
        # None: let the PUT go on to the store, which now holds a newer resourceVersion.

    kube.call(lambda: kube.handler[kmock.method.PUT, kmock.path(path)] << concurrent_writer)
    result = sink.write(completed(name, other_node_model(), policy))
    assert interfered == [200]
    assert result.attempts == 2 and result.merged
    union = demo_model()
    union.merge(other_node_model())
    union.merge(concurrent)
    assert read_resource(fetch(custom, name)).model == union  # nobody's entries were lost


def test_concurrent_first_writes_from_two_nodes_both_land(custom: Any, sink_url: str) -> None:
    """Two sinks race to create the same new resource: the loser's 409 becomes a merge."""
    policy = cluster_policy(custom, "twins")
    name = "varmor-cluster-varmor-twins"
    models = [demo_model(), other_node_model()]
    sinks = [open_sink(sink_url), open_sink(sink_url)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def write(i: int) -> None:
        barrier.wait()
        results[i] = sinks[i].write(completed(name, models[i], policy))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r is not None for r in results)
    union = demo_model()
    union.merge(other_node_model())
    assert read_resource(fetch(custom, name)).model == union
    assert sorted(r.merged for r in results) == [False, True]


@pytest.mark.slow
def test_four_mib_models_keep_their_profiles(custom: Any, sink_url: str, tmp_path: Path,
                                             apparmor_parser: str) -> None:
    policy = cluster_policy(custom, "big")
    sink = open_sink(sink_url)
    for suffix, random_names, expected in (("gz", False, STORED_GZIP),
                                           ("disk", True, STORED_LOCAL)):
        name = f"varmor-cluster-varmor-big-{suffix}"
        model = library_model(45_000 if random_names else 40_000, random_names)
        plain_size = len(orjson.dumps(model.to_dynamic_result()))
        assert plain_size > 4 * 1024 * 1024 * 0.8
        result = sink.write(completed(name, model, policy))
        assert result.stored == expected and result.size < 1_500_000
        stored = fetch(custom, name)
        assert stored["storageType"] == (STORAGE_LOCAL_DISK if random_names else
                                         STORAGE_INTERNAL)
        back = read_resource(stored)
        assert back.model == model  # from the gzip field or the referenced file
        assert back.apparmor == render_apparmor(name, model).text
        compile_check(back.apparmor or "")
        assert stored["status"]["ready"] is True
    # The same model sent plainly is what the limits refuse.
    raw = copy.deepcopy(fetch(custom, "varmor-cluster-varmor-big-disk"))
    raw["metadata"] = {"name": "plain-big", "namespace": "varmor"}
    raw["data"] = {"profile": raw["data"]["profile"],
                   "dynamicResult": library_model(45_000, True).to_dynamic_result()}
    raw["storageType"] = STORAGE_INTERNAL
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, "varmor", PLURAL, raw)
    assert refused.value.status in (413, 500)


@pytest.mark.slow
def test_a_server_limit_below_the_budget_moves_the_model_out(
        custom: Any, kube: KubeEmulator, tmp_path: Path) -> None:
    """With a budget above etcd's limit, the server's refusal decides: no lost profiles."""
    policy = cluster_policy(custom, "overbudget")
    name = "varmor-cluster-varmor-overbudget"
    model = library_model(45_000, True)  # 1.33 MB gzipped: 1.77 MB as base64
    sink = open_sink(f"k8s://?kubeconfig={kube.kubeconfig_path}&modelDir={tmp_path}"
                     f"&budget=5000000")
    result = sink.write(completed(name, model, policy))
    assert result.stored == STORED_LOCAL and result.attempts == 2
    back = read_resource(fetch(custom, name))
    assert back.model == model and back.apparmor == render_apparmor(name, model).text


def strip_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(resource)
    for key in SERVER_SET:
        clean["metadata"].pop(key, None)
    for condition in clean.get("status", {}).get("conditions", []):
        condition.pop("lastTransitionTime", None)
    return clean


def test_file_sink_writes_the_same_resource(custom: Any, sink_url: str,
                                            tmp_path: Path) -> None:
    policy = cluster_policy(custom, "files")
    name = "varmor-cluster-varmor-files"
    model = demo_model()
    done = completed(name, model, policy)
    open_sink(sink_url).write(done)
    result = open_sink(f"file://{tmp_path / 'out'}").write(done)
    written = yaml.safe_load(Path(result.location).read_text())
    assert strip_server_fields(written) == strip_server_fields(fetch(custom, name))
    folder = tmp_path / "out" / "varmor"
    assert BehaviourModel.from_dict(json.loads((folder / f"{name}.model.json").read_text())) \
        == model
    assert (folder / f"{name}.apparmor").read_text() == done.apparmor
    assert json.loads((folder / f"{name}.seccomp.json").read_text()) == done.seccomp
    # A second write merges with the file, as the k8s sink merges with the cluster.
    open_sink(f"file://{tmp_path / 'out'}").write(completed(name, other_node_model(), policy))
    union = demo_model()
    union.merge(other_node_model())
    assert read_resource(yaml.safe_load(Path(result.location).read_text())).model == union


def test_file_sink_sets_an_unreadable_file_aside(tmp_path: Path) -> None:
    name = "varmor-shop-p"
    policy = PolicyRef("VarmorPolicy", "shop", "p")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / f"{name}.yaml").write_text("kind: ArmorProfileModel\ndata: [\n")
    result = open_sink(f"file://{tmp_path}").write(completed(name, demo_model(), policy, "shop"))
    assert not result.merged
    assert read_resource(yaml.safe_load(Path(result.location).read_text())).model == \
        demo_model()
    (aside,) = (tmp_path / "shop").glob(f"{name}.yaml.unreadable-*")
    assert aside.read_text().endswith("data: [\n")


def test_walkthrough_step_6_with_kubectl(kube: KubeEmulator, custom: Any,
                                         sink_url: str) -> None:
    policy = cluster_policy(custom, "kubectl")
    name = "varmor-cluster-varmor-kubectl"
    done = completed(name, demo_model(), policy)
    open_sink(sink_url).write(done)
    base = f"{KUBECTL} --kubeconfig {kube.kubeconfig_path}"
    apparmor = subprocess.run(
        f"{base} get ArmorProfileModel -n varmor {name} "
        "-o jsonpath='{.data.profile.content}' | base64 -d",
        shell=True, capture_output=True, text=True, timeout=60, check=True).stdout
    assert apparmor == done.apparmor
    seccomp = subprocess.run(
        f"{base} get ArmorProfileModel -n varmor {name} "
        "-o jsonpath='{.data.profile.seccompContent}' | base64 -d",
        shell=True, capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(seccomp) == done.seccomp
    as_yaml = subprocess.run(f"{base} get ArmorProfileModel -n varmor {name} -o yaml",
                             shell=True, capture_output=True, text=True, timeout=60,
                             check=True).stdout
    assert yaml.safe_load(as_yaml) == fetch(custom, name)
    table = subprocess.run(f"{base} get ArmorProfileModel -n varmor {name}", shell=True,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    header, row = (line.split() for line in table.splitlines())
    assert header == ["NAME", "STORAGE-TYPE", "DESIRED", "COMPLETED", "READY", "AGE"]
    assert row[:5] == [name, "CRDInternal", "2", "2", "true"]


def test_sink_urls() -> None:
    with pytest.raises(ValueError, match="unknown sink URL"):
        open_sink("s3://bucket")
    with pytest.raises(ValueError, match="unknown k8s sink parameters"):
        open_sink("k8s://?kubeconfg=/x")
    with pytest.raises(ValueError, match="directory"):
        open_sink("file://")


def test_a_closed_window_becomes_a_completed_model(tmp_path: Path) -> None:
    from armorflow.pipeline.stages import ClosedWindow

    model = demo_model()
    name = "varmor-cluster-varmor-window"
    window = ClosedWindow(
        profile=name, namespace="", enforcer="AppArmor", start_ts=1, end_ts=2, model=model,
        policy={"kind": "VarmorClusterPolicy", "namespace": "", "name": "window", "uid": ""},
        apparmor=render_apparmor(name, model).text, seccomp=None)
    done = completed_from_window(window)
    assert done.namespace == "varmor" and done.policy.name == "window"
    result = open_sink(f"file://{tmp_path}").write(done)
    written = yaml.safe_load(Path(result.location).read_text())
    assert "ownerReferences" not in written["metadata"]  # the uid is not known yet
    assert written["status"]["desiredNumber"] == written["status"]["completedNumber"] == 1
    assert "seccompContent" not in written["data"]["profile"]
