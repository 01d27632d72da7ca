"""The Kubernetes API emulator (support), exercised through the official client
over HTTP, and through the real kubectl where kubectl is the point."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException

from support import (
    CHART_CRDS,
    ETCD_TOO_LARGE,
    MAX_REQUEST_BYTES,
    MAX_STORED_BYTES,
    KubeEmulator,
    kube_emulator_fixture,
)

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
GROUP, VERSION, PLURAL = "example.armorflow.io", "v1", "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": PLURAL, "singular": "widget",
                  "shortNames": ["wdg"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "SIZE", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "PHASE", "type": "string", "jsonPath": ".status.phase"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"]},
                            "blob": {"type": "string"},
                            "extra": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                    "status": {"type": "object",
                               "properties": {"phase": {"type": "string"}}},
                },
            }},
        }],
    },
}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    workdir = tmp_path_factory.mktemp("kube")
    crd_file = workdir / "widgets.yaml"
    crd_file.write_text(yaml.safe_dump(WIDGET_CRD))
    with KubeEmulator([CHART_CRDS, crd_file]) as emulator:
        emulator.write_kubeconfig(workdir / "kubeconfig")
        yield emulator


@pytest.fixture(scope="module")
def api(kube: KubeEmulator) -> Any:
    return kube.api_client()


@pytest.fixture(scope="module")
def custom(api: Any) -> Any:
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def core(api: Any) -> Any:
    core = client.CoreV1Api(api)
    for ns in ("varmor", "shop"):
        core.create_namespace({"metadata": {"name": ns}})
    return core


def widget(name: str, size: int = 1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size, **spec}}


def create(custom: Any, body: dict[str, Any], ns: str = "shop") -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body)
    return created


def get(custom: Any, name: str, ns: str = "shop") -> dict[str, Any]:
    found: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return found


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def test_create_sets_server_fields_and_answers_201(custom: Any, core: Any) -> None:
    created = create(custom, widget("w-create"))  # None if the server answered 200
    meta = created["metadata"]
    assert meta["namespace"] == "shop" and meta["generation"] == 1
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    with pytest.raises(ApiException) as exc:
        create(custom, widget("w-create"))
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "AlreadyExists"


def test_resource_version_grows_and_generation_tracks_spec(custom: Any, core: Any) -> None:
    first = create(custom, widget("w-gen"))
    rv1 = int(first["metadata"]["resourceVersion"])
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-gen", {"metadata": {"labels": {"a": "b"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > rv1
    assert labelled["metadata"]["generation"] == 1  # metadata is not spec
    resized = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-gen", {"spec": {"size": 2}})
    assert resized["metadata"]["generation"] == 2
    assert int(resized["metadata"]["resourceVersion"]) > int(
        labelled["metadata"]["resourceVersion"])
    same = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-gen", {"spec": {"size": 2}})
    assert same["metadata"]["resourceVersion"] == resized["metadata"]["resourceVersion"]


def test_replace_with_stale_resource_version_conflicts(custom: Any, core: Any) -> None:
    created = create(custom, widget("w-put"))
    fresh = dict(created, spec={"size": 5})
    replaced = custom.replace_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-put", fresh)
    assert replaced["spec"] == {"size": 5} and replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    stale = dict(created, spec={"size": 6})  # still carries the first resourceVersion
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "w-put", stale)
    body = status_of(exc.value)
    assert exc.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert get(custom, "w-put")["spec"] == {"size": 5}
    unconditional = widget("w-put", 7)  # no resourceVersion: last write wins
    assert custom.replace_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-put", unconditional)["spec"]["size"] == 7
    with pytest.raises(ApiException) as missing:
        custom.replace_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "w-none", widget("w-none"))
    assert missing.value.status == 404


def test_patch_types(custom: Any, core: Any) -> None:
    create(custom, widget("w-patch", color="red", extra={"a": 1, "b": 2}))
    merged = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-patch", {"spec": {"extra": {"a": None, "c": 3}}})
    assert merged["spec"]["extra"] == {"b": 2, "c": 3}  # null deletes, objects merge
    ops = [{"op": "replace", "path": "/spec/size", "value": 4},
           {"op": "add", "path": "/metadata/labels", "value": {"tier": "x"}},
           {"op": "remove", "path": "/spec/color"}]
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-patch", ops,
        _content_type="application/json-patch+json")
    assert patched["spec"]["size"] == 4 and "color" not in patched["spec"]
    assert patched["metadata"]["labels"] == {"tier": "x"}
    with pytest.raises(ApiException) as failed_test_op:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "w-patch",
            [{"op": "test", "path": "/spec/size", "value": 99}],
            _content_type="application/json-patch+json")
    assert failed_test_op.value.status == 422
    with pytest.raises(ApiException) as strategic:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "w-patch", {"spec": {"size": 2}},
            _content_type="application/strategic-merge-patch+json")
    assert strategic.value.status == 415  # as the API server, for custom resources
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"size": 3}}
    with pytest.raises(ApiException) as conflict:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "w-patch", stale)
    assert conflict.value.status == 409
    # Built-ins take strategic merge patches (the client's default for dict bodies).
    core.create_namespaced_config_map("shop", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    cm = core.patch_namespaced_config_map("cm", "shop", {"data": {"k2": "v2"}})
    assert cm.data == {"k": "v", "k2": "v2"}


def test_status_is_a_subresource(custom: Any, core: Any) -> None:
    with_status = dict(widget("w-status"), status={"phase": "Ignored"})
    created = create(custom, with_status)
    assert "status" not in created  # a create never sets the status
    after_status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "shop", PLURAL, "w-status",
        {"status": {"phase": "Ready"}, "spec": {"size": 50}})
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["spec"] == {"size": 1}  # /status writes change only the status
    assert after_status["metadata"]["generation"] == 1
    main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "w-status",
        {"status": {"phase": "Hacked"}, "spec": {"size": 2}})
    assert main["status"] == {"phase": "Ready"} and main["spec"] == {"size": 2}
    replaced = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, "shop", PLURAL, "w-status", dict(main, status={"phase": "Done"}))
    assert replaced["status"] == {"phase": "Done"}
    stale = dict(main, status={"phase": "Stale"})  # main's resourceVersion is old now
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, "shop", PLURAL, "w-status", stale)
    assert exc.value.status == 409


def test_schema_validation_and_pruning(custom: Any, core: Any) -> None:
    with pytest.raises(ApiException) as bad_enum:
        create(custom, widget("w-bad", color="green"))
    body = status_of(bad_enum.value)
    assert bad_enum.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.color"
    with pytest.raises(ApiException) as too_small:
        create(custom, widget("w-bad", 0))
    assert too_small.value.status == 422
    with pytest.raises(ApiException) as missing:
        create(custom, {**widget("w-bad"), "spec": {}})
    assert missing.value.status == 422 and "size" in status_of(missing.value)["message"]
    pruned = create(custom, widget("w-prune", 1, unknown="x", extra={"kept": {"deep": 1}}))
    assert pruned["spec"] == {"size": 1, "extra": {"kept": {"deep": 1}}}
    created = create(custom, widget("w-valid"))
    with pytest.raises(ApiException) as bad_patch:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "w-valid", {"spec": {"size": "big"}})
    assert bad_patch.value.status == 422
    assert get(custom, "w-valid")["metadata"]["resourceVersion"] == \
        created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as bad_name:
        create(custom, widget("Not_A_Name"))
    assert bad_name.value.status == 422


def test_size_limits(custom: Any, core: Any) -> None:
    just_fits = widget("w-big", blob="x" * (MAX_STORED_BYTES - 1000))
    assert create(custom, just_fits)["metadata"]["generation"] == 1
    over_etcd = widget("w-huge", blob="x" * (MAX_STORED_BYTES + 10))
    with pytest.raises(ApiException) as etcd:
        create(custom, over_etcd)
    assert etcd.value.status == 500 and status_of(etcd.value)["message"] == ETCD_TOO_LARGE
    over_api = widget("w-huger", blob="x" * (MAX_REQUEST_BYTES + 10))
    with pytest.raises(ApiException) as api:
        create(custom, over_api)
    assert api.value.status == 413
    assert status_of(api.value)["message"] == "Request entity too large: limit is 3145728"
    # A patch that makes the stored object too large fails as etcd does, too.
    with pytest.raises(ApiException) as grown:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "shop", PLURAL, "w-big", {"spec": {"extra": {"pad": "y" * 2000}}})
    assert grown.value.status == 500


def test_label_and_field_selectors(custom: Any, core: Any) -> None:
    for name, labels in (("s-a", {"app": "a", "tier": "web"}), ("s-b", {"app": "b"}),
                         ("s-c", {"app": "c", "tier": "db"})):
        create(custom, {**widget(name), "metadata": {"name": name, "labels": labels}}, "varmor")

    def names(**kw: Any) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, "varmor", PLURAL, **kw)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert names() == ["s-a", "s-b", "s-c"]
    assert names(label_selector="app=a") == ["s-a"]
    assert names(label_selector="app!=a") == ["s-b", "s-c"]
    assert names(label_selector="app in (a,c),tier") == ["s-a", "s-c"]
    assert names(label_selector="app notin (a),!tier") == ["s-b"]
    assert names(label_selector="tier==db") == ["s-c"]
    assert names(field_selector="metadata.name=s-b") == ["s-b"]
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="app")
    assert {i["metadata"]["namespace"] for i in everywhere["items"]} == {"varmor"}
    with pytest.raises(ApiException) as bad:
        names(label_selector="app in (a")
    assert bad.value.status == 400


def test_watch_streams_events_with_resource_versions(custom: Any, core: Any) -> None:
    start = custom.list_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL)
    since = start["metadata"]["resourceVersion"]
    create(custom, {**widget("wa"), "metadata": {"name": "wa", "labels": {"watch": "me"}}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "wa",
                                          {"spec": {"size": 3}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "wa",
                                          {"metadata": {"labels": {"watch": None}}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "wa")
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "shop",
                                  PLURAL, resource_version=since, timeout_seconds=1)
    seen = [(e["type"], e["object"]["metadata"]["name"],
             int(e["object"]["metadata"]["resourceVersion"])) for e in stream]
    assert [(t, n) for t, n, _ in seen] == [("ADDED", "wa"), ("MODIFIED", "wa"),
                                            ("MODIFIED", "wa"), ("DELETED", "wa")]
    versions = [rv for _, _, rv in seen]
    assert versions == sorted(versions) and versions[0] > int(since)
    # Through a selector, losing the label is a DELETED; the later delete is not seen.
    selected = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION,
                                    "shop", PLURAL, resource_version=since,
                                    label_selector="watch=me", timeout_seconds=1)
    assert [e["type"] for e in selected] == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_delivers_live_events_and_times_out(custom: Any, core: Any) -> None:
    events: list[tuple[str, str]] = []
    started = time.monotonic()

    def consume() -> None:
        for event in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP,
                                          VERSION, "varmor", PLURAL, timeout_seconds=2,
                                          label_selector="live=yes"):
            events.append((event["type"], event["object"]["metadata"]["name"]))

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.5)
    create(custom, {**widget("live"), "metadata": {"name": "live", "labels": {"live": "yes"}}},
           "varmor")
    thread.join(10)
    assert not thread.is_alive()
    assert events == [("ADDED", "live")]
    assert 1.5 < time.monotonic() - started < 8  # the server ended it at timeoutSeconds


def test_watch_from_a_compacted_revision_is_gone(tmp_path: Path) -> None:
    with KubeEmulator([], history=3) as small:
        core = client.CoreV1Api(small.api_client())
        core.create_namespace({"metadata": {"name": "n"}})
        for i in range(6):
            core.create_namespaced_config_map("n", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as gone:
            list(watch.Watch().stream(core.list_namespaced_config_map, "n",
                                      resource_version="1", timeout_seconds=1))
        assert gone.value.status == 410


def test_finalizers_hold_deletion(custom: Any, core: Any) -> None:
    create(custom, {**widget("w-fin"), "metadata": {"name": "w-fin", "finalizers": ["x/y"]}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "w-fin")
    held = get(custom, "w-fin")
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "w-fin",
                                          {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        get(custom, "w-fin")
    assert gone.value.status == 404


def test_discovery_serves_dynamic_client_and_namespaces(api: Any, core: Any) -> None:
    core_resources = {r.name for r in core.get_api_resources().resources}
    assert {"namespaces", "pods", "configmaps"} <= core_resources
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"crd.varmor.org", "apps", GROUP} <= groups
    dyn = dynamic.DynamicClient(api)
    apm = dyn.resources.get(api_version="crd.varmor.org/v1beta1", kind="ArmorProfileModel")
    assert apm.namespaced and apm.name == "armorprofilemodels"
    vcpol = dyn.resources.get(api_version="crd.varmor.org/v1beta1", kind="VarmorClusterPolicy")
    assert not vcpol.namespaced and "vcpol" in vcpol.short_names
    assert {n.metadata.name for n in core.list_namespace().items} >= {"varmor", "shop"}
    assert core.read_namespace("varmor").metadata.uid


def test_crd_created_through_the_api_is_served(api: Any, core: Any) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace(GROUP, "other.armorflow.io"))
    crd["spec"]["names"]["shortNames"] = ["owdg"]
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    made = custom.create_namespaced_custom_object(
        "other.armorflow.io", VERSION, "shop", PLURAL,
        {"apiVersion": f"other.armorflow.io/{VERSION}", "kind": "Widget",
         "metadata": {"name": "o"}, "spec": {"size": 1}})
    assert made["metadata"]["generation"] == 1
    # The typed client refuses to send a CRD without names: send it over plain HTTP.
    broken = json.dumps({"apiVersion": "apiextensions.k8s.io/v1",
                         "kind": "CustomResourceDefinition",
                         "metadata": {"name": "broken.armorflow.io"}, "spec": {"group": "x"}})
    request = urllib.request.Request(
        f"{api.configuration.host}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        data=broken.encode(), method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as unusable:
        urllib.request.urlopen(request, timeout=10)
    assert unusable.value.code == 422


def test_a_tests_own_reactions_come_first(kube: KubeEmulator, custom: Any, core: Any) -> None:
    """kmock's DSL still works on the handler: here, one injected 503 on one object."""
    created = create(custom, widget("w-fault"))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/shop/{PLURAL}/w-fault"
    calls: list[str] = []

    def fail_once(request: kmock.Request) -> None:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise kmock.KubernetesError(status=503, reason="ServiceUnavailable",
                                        message="injected")
        # None: not this reaction's business any more (kmock then disables it).

    kube.call(lambda: kube.handler[kmock.method.GET, kmock.path(path)] << fail_once)
    with pytest.raises(ApiException) as injected:
        get(custom, "w-fault")
    assert injected.value.status == 503
    # While the reaction is active, the store still answers everything else (through
    # kmock's routing): lists, watches, writes.
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, "shop", PLURAL, "w-fault",
                                                    {"spec": {"size": 9}})
    events = list(watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, "shop", PLURAL,
        resource_version=created["metadata"]["resourceVersion"], timeout_seconds=1))
    assert [(e["type"], e["object"]["spec"]["size"]) for e in events] == [("MODIFIED", 9)]
    assert get(custom, "w-fault") == patched
    assert get(custom, "w-fault") == patched
    assert calls == [path, path]  # the reaction stood aside once and was then retired


def kubectl(kube: KubeEmulator, *args: str, stdin: str | None = None) -> str:
    assert kube.kubeconfig_path is not None
    done = subprocess.run([str(KUBECTL), "--kubeconfig", str(kube.kubeconfig_path), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kubectl_create_get_table_patch(kube: KubeEmulator, core: Any) -> None:
    manifest = yaml.safe_dump(widget("k1", 3))
    assert "created" in kubectl(kube, "create", "--validate=false", "-n", "shop", "-f", "-",
                                stdin=manifest)
    table = kubectl(kube, "get", "wdg", "-n", "shop", "k1").splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE"]  # the CRD's printer columns
    assert table[1].split() == ["k1", "3", "<none>"]
    kubectl(kube, "patch", "wdg", "k1", "-n", "shop", "--type=json",
            "-p", '[{"op":"replace","path":"/spec/size","value":4}]')
    kubectl(kube, "patch", "wdg", "k1", "-n", "shop", "--type=merge", "--subresource=status",
            "-p", '{"status":{"phase":"Ready"}}')
    out = kubectl(kube, "get", "wdg", "k1", "-n", "shop",
                  "-o", "jsonpath={.spec.size} {.status.phase} {.metadata.generation}")
    assert out.split() == ["4", "Ready", "2"]
    assert "deleted" in kubectl(kube, "delete", "wdg", "k1", "-n", "shop")


KOPF_HANDLERS = '''
import kopf

@kopf.on.login()
def login(**kwargs):
    # kopf's client-library login does not read kubernetes>=35 configurations; the
    # kubeconfig login does.
    return kopf.login_with_kubeconfig(**kwargs)

@kopf.on.startup()
def configure(settings, **_):
    settings.watching.server_timeout = 5

@kopf.on.create("crd.varmor.org", "v1beta1", "varmorclusterpolicies")
def created(spec, patch, **_):
    patch.status["phase"] = "Seen " + spec["policy"]["mode"]
'''


@pytest.mark.slow
def test_kopf_operator_runs_against_the_emulator(kube: KubeEmulator, custom: Any,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kopf.testing import KopfRunner

    handlers = tmp_path / "handlers.py"
    handlers.write_text(KOPF_HANDLERS)
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig_path))
    policy = {"apiVersion": "crd.varmor.org/v1beta1", "kind": "VarmorClusterPolicy",
              "metadata": {"name": "kopf-demo"},
              "spec": {"target": {"kind": "Deployment", "name": "web"},
                       "policy": {"enforcer": "AppArmor", "mode": "BehaviorModeling"}}}
    phase = None
    with KopfRunner(["run", "--standalone", "-A", str(handlers)], timeout=60) as runner:
        custom.create_cluster_custom_object("crd.varmor.org", "v1beta1",
                                            "varmorclusterpolicies", policy)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and phase is None:
            found = custom.get_cluster_custom_object("crd.varmor.org", "v1beta1",
                                                     "varmorclusterpolicies", "kopf-demo")
            phase = (found.get("status") or {}).get("phase")
            time.sleep(0.2)
    assert runner.exception is None and runner.exit_code == 0, runner.output[-2000:]
    assert phase == "Seen BehaviorModeling"
    # kopf found the status subresource in discovery and wrote there (kmock's request log).
    writes = kube.call(lambda: [(str(r.method.value), r.url.path) for r in kube.handler])
    assert ("PATCH", "/apis/crd.varmor.org/v1beta1/varmorclusterpolicies/kopf-demo/status") \
        in writes
    annotations = found["metadata"].get("annotations") or {}
    assert "kopf.zalando.org/last-handled-configuration" in annotations


#: The fixture factory other components' tests use (chart CRDs, kubeconfig written).
factory_kube = kube_emulator_fixture(scope="module", name="factory_kube")


def test_fixture_factory_gives_a_kubeconfig_the_client_loads(factory_kube: KubeEmulator) -> None:
    from kubernetes import config

    assert factory_kube.kubeconfig_path is not None
    api = config.new_client_from_config(config_file=str(factory_kube.kubeconfig_path))
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "varmor"}})
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "crd.varmor.org", "v1beta1", "varmor", "armorprofilemodels",
        {"apiVersion": "crd.varmor.org/v1beta1", "kind": "ArmorProfileModel",
         "metadata": {"name": "p"},
         "data": {"profile": {"name": "p", "enforcer": "AppArmor", "mode": "BehaviorModeling"}}})
    (stored,) = factory_kube.objects("crd.varmor.org", "v1beta1", "armorprofilemodels")
    assert stored["metadata"]["namespace"] == "varmor" and stored["data"]["profile"]["name"] == "p"


def test_stop_ends_open_watches_quickly() -> None:
    kube = KubeEmulator([]).start()
    core = client.CoreV1Api(kube.api_client())

    def follow() -> None:  # a watch with no timeout, as an operator's
        # The stream ends, or the client's reconnect hits the stopped server.
        with contextlib.suppress(Exception):
            for _ in watch.Watch().stream(core.list_namespace):
                pass

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(0.3)
    started = time.monotonic()
    kube.stop()
    assert time.monotonic() - started < 3
    follower.join(10)
    assert not follower.is_alive()
