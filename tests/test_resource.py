"""Building and reading ArmorProfileModel resources: fields, sizes, and the CRD's schema."""

from __future__ import annotations

import base64
import functools
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from armorflow.model import BehaviourModel
from armorflow.render import render_apparmor, render_seccomp
from armorflow.resource import (
    CLUSTER_NAMESPACE,
    DEFAULT_BUDGET,
    STORAGE_INTERNAL,
    STORAGE_LOCAL_DISK,
    STORED_GZIP,
    STORED_LOCAL,
    STORED_NONE,
    STORED_PLAIN,
    PolicyRef,
    ResourceError,
    build_resource,
    build_status,
    json_size,
    load_dynamic_result,
    read_resource,
    resource_namespace,
)
from support import CHART_CRDS, ResourceType, types_from_crd

NAME = "varmor-cluster-varmor-demo-4"
CLUSTER_POLICY = PolicyRef("VarmorClusterPolicy", "", "demo-4", uid="0f6c1c1e-uid")


def demo_model() -> BehaviourModel:
    """The walkthrough's model: three execs, its files, sys_admin, a socket, umount."""
    files = [("/dev/tty", "rw"), ("/etc/group", "r"), ("/etc/ld.so.cache", "r"),
             ("/etc/nsswitch.conf", "r"), ("/etc/passwd", "r"), ("/etc/shadow", "r"),
             ("/proc/filesystems", "r"), ("/root/c1", "rw"), ("/usr/bin/id", "r"),
             ("/usr/lib/x86_64-linux-gnu/libc.so.6", "mr")]
    return BehaviourModel.from_dynamic_result({
        "apparmor": {
            "executions": ["/usr/bin/id", "/usr/bin/sleep", "/usr/bin/unshare"],
            "files": [{"path": p, "permissions": list(perms), "owner": True}
                      for p, perms in files],
            "capabilities": ["sys_admin"],
            "networks": [{"family": "inet", "sockType": "stream", "protocol": 6}],
            "mounts": [{"op": "umount", "path": "/tmp", "fstype": ""}],
        },
        "seccomp": {"syscalls": ["read", "write", "openat", "unshare", "execve"]},
    })


@functools.cache
def library_model(entries: int, random_names: bool) -> BehaviourModel:
    """A model of ``entries`` read-only library files (which the profile folds into one
    ``/usr/lib/x86_64-linux-gnu/** mr`` rule, so only the model is large)."""
    model = demo_model()
    for i in range(entries):
        leaf = secrets.token_hex(24) if random_names else f"python3/dist-packages/pkg{i:06d}"
        model.files[(f"/usr/lib/x86_64-linux-gnu/{leaf}.so", "", True)] = {"m", "r"}
    return model


def crd_type() -> ResourceType:
    crd = yaml.safe_load((CHART_CRDS / "armorprofilemodels.yaml").read_text())
    (rt,) = types_from_crd(crd)
    return rt


def build(model: BehaviourModel, **kw: Any) -> tuple[dict[str, Any], str]:
    return build_resource(NAME, CLUSTER_NAMESPACE, model, render_apparmor(NAME, model).text,
                          render_seccomp(model), enforcer="AppArmorSeccomp",
                          owner=CLUSTER_POLICY, **kw)


def test_fields_follow_varmor() -> None:
    model = demo_model()
    resource, stored = build(model)
    assert stored == STORED_PLAIN and resource["storageType"] == STORAGE_INTERNAL
    assert resource["apiVersion"] == "crd.varmor.org/v1beta1"
    assert resource["kind"] == "ArmorProfileModel"
    assert resource["metadata"]["name"] == NAME and resource["metadata"]["namespace"] == "varmor"
    profile = resource["data"]["profile"]
    assert (profile["name"], profile["enforcer"], profile["mode"]) == (
        NAME, "AppArmorSeccomp", "BehaviorModeling")
    text = base64.b64decode(profile["content"]).decode()
    assert text == render_apparmor(NAME, model).text
    assert f"profile {NAME} flags=(attach_disconnected,mediate_deleted) {{" in text
    assert json.loads(base64.b64decode(profile["seccompContent"])) == render_seccomp(model)
    assert resource["data"]["dynamicResult"] == model.to_dynamic_result()
    owner = resource["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "VarmorClusterPolicy" and owner["uid"] == CLUSTER_POLICY.uid
    assert crd_type().validation_errors(resource) == []
    back = read_resource(resource)
    assert back.apparmor == text and back.seccomp == render_seccomp(model)
    assert back.model == model and back.enforcer == "AppArmorSeccomp"


def test_namespace_and_owner_rules() -> None:
    assert resource_namespace(CLUSTER_POLICY) == "varmor"
    assert resource_namespace(PolicyRef("VarmorPolicy", "shop", "p")) == "shop"
    no_uid, _ = build_resource("varmor-shop-p", "shop", demo_model(), None, {"syscalls": []},
                               enforcer="Seccomp", owner=PolicyRef("VarmorPolicy", "shop", "p"))
    assert "ownerReferences" not in no_uid["metadata"]
    assert "content" not in no_uid["data"]["profile"]  # a Seccomp-only policy


def test_status_counts_profiles() -> None:
    both = build_status("AppArmorSeccomp", "text", {"x": 1}, STORED_PLAIN)
    assert (both["desiredNumber"], both["completedNumber"], both["ready"]) == (2, 2, True)
    missing = build_status("AppArmorSeccomp", "text", None, STORED_GZIP)
    assert (missing["completedNumber"], missing["ready"]) == (1, False)
    unstored = build_status("AppArmor", "text", None, STORED_NONE)
    model_condition = unstored["conditions"][1]
    assert unstored["ready"] and model_condition["status"] == "False"
    later = build_status("AppArmor", "text", None, STORED_NONE, now="2030-01-01T00:00:00Z",
                         previous=unstored)
    assert later["conditions"][0]["lastTransitionTime"] == \
        unstored["conditions"][0]["lastTransitionTime"]
    resource, _ = build(demo_model())
    assert crd_type().validation_errors({**resource, "status": both}) == []


@pytest.mark.slow
def test_large_model_is_compressed(tmp_path: Path) -> None:
    model = library_model(40_000, random_names=False)
    assert json_size(model.to_dynamic_result()) > 3 * 1024 * 1024
    resource, stored = build(model, model_dir=tmp_path)
    assert stored == STORED_GZIP and resource["storageType"] == STORAGE_INTERNAL
    assert "dynamicResult" not in resource["data"]
    assert json_size(resource) <= DEFAULT_BUDGET
    assert load_dynamic_result(resource) == model.to_dynamic_result()
    assert not any(tmp_path.iterdir())
    assert crd_type().validation_errors(resource) == []


@pytest.mark.slow
def test_incompressible_model_goes_to_local_disk(tmp_path: Path) -> None:
    model = library_model(45_000, random_names=True)
    resource, stored = build(model, model_dir=tmp_path)
    assert stored == STORED_LOCAL and resource["storageType"] == STORAGE_LOCAL_DISK
    ref = resource["data"]["dynamicResultRef"]
    assert ref["uri"].startswith("file://")
    assert ref["bytes"] * 4 // 3 > DEFAULT_BUDGET  # even compressed, its base64 is too big
    assert json_size(resource) < 100_000  # the profiles, not the model
    assert read_resource(resource).model == model
    assert crd_type().validation_errors(resource) == []
    # The profile still arrives, whole.
    text = base64.b64decode(resource["data"]["profile"]["content"]).decode()
    assert "/usr/lib/x86_64-linux-gnu/** mr," in text
    (stored_file,) = (tmp_path / "varmor").iterdir()
    stored_file.write_bytes(stored_file.read_bytes()[:-10])
    with pytest.raises(ResourceError, match="sha256"):
        load_dynamic_result(resource)


@pytest.mark.slow
def test_without_a_model_directory_the_profiles_still_go(tmp_path: Path) -> None:
    model = library_model(45_000, random_names=True)
    resource, stored = build(model, model_dir=None)
    assert stored == STORED_NONE
    assert {"content", "seccompContent"} <= set(resource["data"]["profile"])
    assert load_dynamic_result(resource) == {}
    unwritable = tmp_path / "file"
    unwritable.write_text("not a directory")
    _, stored_on_error = build(model, model_dir=unwritable)
    assert stored_on_error == STORED_NONE


def test_profiles_over_budget_are_an_error() -> None:
    with pytest.raises(ResourceError, match="budget"):
        build(demo_model(), budget=1000)


def test_corrupt_resources_are_clear_errors() -> None:
    resource, _ = build(demo_model())
    broken = json.loads(json.dumps(resource))
    broken["data"]["profile"]["content"] = "not base64!"
    with pytest.raises(ResourceError, match="base64"):
        read_resource(broken)
    gz = json.loads(json.dumps(resource))
    del gz["data"]["dynamicResult"]
    gz["data"]["dynamicResultGzip"] = base64.b64encode(b"not gzip").decode()
    with pytest.raises(ResourceError, match="corrupt"):
        load_dynamic_result(gz)
    with pytest.raises(ResourceError, match="not an ArmorProfileModel"):
        read_resource({"kind": "Pod"})


def test_crd_schema_refuses_bad_fields() -> None:
    resource, _ = build(demo_model())
    rt = crd_type()
    bad = json.loads(json.dumps(resource))
    bad["storageType"] = "Elsewhere"
    bad["data"]["profile"]["enforcer"] = "SELinux"
    fields = {path for path, _ in rt.validation_errors(bad)}
    assert fields == {"storageType", "data.profile.enforcer"}
    columns = [c["name"] for c in rt.printer_columns]
    assert columns == ["STORAGE-TYPE", "DESIRED", "COMPLETED", "READY", "AGE"]
