"""Names chosen by whoever writes to a topic: one check at the edge, sinks that never
leave their root, table keys that cannot collide, and models too large for a message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from armorflow.control import ControlError, PolicyRef, make_control
from armorflow.events import make_event
from armorflow.model import BehaviourModel
from armorflow.names import InvalidName, check_namespace, check_profile_name, path_under
from armorflow.pipeline.sink.base import SinkError
from armorflow.pipeline.sink.files import FileSink
from armorflow.pipeline.state import ModelRows, key_profile, row_key
from armorflow.pipeline.worker import model_message
from armorflow.render import render_apparmor, render_seccomp
from armorflow.resource import CompletedModel
from test_resource import library_model


@pytest.mark.parametrize("name", ["varmor-cluster-varmor-demo-4", "a", "a.b-c", "0", "a" * 253])
def test_kubernetes_names_are_profile_names(name: str) -> None:
    assert check_profile_name(name) == name


@pytest.mark.parametrize("name", ["", "victim\x00x", "../../x", "/tmp/abs", "a/b", "A", "a_b",
                                  "a..b", "-a", "a-", ".a", "a b", "unconfined", "a" * 254,
                                  "é", "a\n"])
def test_unsafe_profile_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        check_profile_name(name)


@pytest.mark.parametrize("name", ["", "a.b", "../x", "A", "a" * 64, "kube_system"])
def test_namespaces_are_dns_labels(name: str) -> None:
    with pytest.raises(InvalidName):
        check_namespace(name)


@given(st.text(min_size=1, max_size=300))
def test_any_accepted_name_is_one_plain_file_name(name: str) -> None:
    try:
        check_profile_name(name)
    except InvalidName:
        return
    assert "/" not in name and "\x00" not in name and name not in (".", "..")
    assert name.isascii() and name == name.strip()


@pytest.mark.parametrize("namespace", ["../../x", "/tmp/abs", "..", "a/../../b", "x\x00"])
def test_control_messages_refuse_hostile_namespaces(namespace: str) -> None:
    with pytest.raises(ControlError):
        make_control("start", "p", duration_s=60, namespace=namespace)


def _completed(profile: str, namespace: str, model: BehaviourModel) -> CompletedModel:
    return CompletedModel(profile=profile, namespace=namespace, policy=PolicyRef(),
                          enforcer="AppArmorSeccomp", model=model,
                          apparmor=render_apparmor(profile, model).text
                          if _safe(profile) else "profile x {}",
                          seccomp=render_seccomp(model))


def _safe(profile: str) -> bool:
    try:
        check_profile_name(profile)
    except InvalidName:
        return False
    return True


@pytest.mark.parametrize(("namespace", "profile"), [
    ("../../x", "p"), ("/tmp/abs", "p"), ("ns", "../p"), ("ns", "a/b"), ("..", "p")])
def test_the_file_sink_refuses_to_leave_its_root(
    tmp_path: Path, namespace: str, profile: str
) -> None:
    root = tmp_path / "out"
    with pytest.raises(SinkError, match="refused"):
        FileSink(root).write(_completed(profile, namespace, BehaviourModel()))
    outside = [p for p in tmp_path.rglob("*") if root not in p.parents and p != root]
    assert outside == []


def test_a_symlink_under_the_root_cannot_redirect_a_write(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "prod").symlink_to(elsewhere)
    with pytest.raises(InvalidName, match="outside"):
        path_under(root, "prod", "p.yaml")
    with pytest.raises(SinkError):
        FileSink(root).write(_completed("p", "prod", BehaviourModel()))
    assert list(elsewhere.iterdir()) == []


def test_the_file_sink_has_no_etcd_budget(tmp_path: Path) -> None:
    """A model of thousands of literal rules reaches a file, profiles and all."""
    model = BehaviourModel()
    for i in range(30_000):
        model.add(make_event("file", profile="big", path=f"/srv/data/part-{i:05d}.bin",
                             perms="rw", owner=False))
    result = FileSink(tmp_path).write(_completed("big", "varmor", model))
    assert result.size > 1_500_000  # over etcd's limit: the Kubernetes sink could not
    text = (tmp_path / "varmor" / "big.apparmor").read_text()
    assert "/srv/data/part-29999.bin" in text


def test_table_keys_are_an_encoding_not_a_separator() -> None:
    assert key_profile(row_key("victim", 3)) == "victim"
    # Whatever a name contains, its rows never read as another profile's.
    for hostile in ("victim\x00x", 'victim", 3]', "victim\x0003"):
        key = row_key(hostile, 7)
        assert key_profile(key) == hostile
        assert key != row_key("victim", 7)
    rows = ModelRows()
    model = BehaviourModel()
    model.add(make_event("file", profile="p", path="/etc/shadow", perms="rw", owner=False))
    written = list(rows.changed_rows("victim\x00x", model, model.drain_dirty()))
    assert written
    loaded = ModelRows().load(written)
    assert set(loaded) == {"victim\x00x"}
    # rows of an older layout or forged ones are skipped, not fatal
    assert ModelRows().load([(b"victim\x0003", written[0][1]), (b"[1, 2]", b"{}")]) == {}


def test_a_model_too_large_for_a_message_goes_by_reference() -> None:
    model = library_model(40_000, random_names=True)
    document = {"profile": "p", "model": model.to_dict(), "apparmor": "x" * 1000,
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}, "counts": {"events": 3}}
    ref = {"namespace": "varmor", "name": "p", "location": "k8s://varmor/p"}
    value = model_message(document, ref, 900_000)
    assert len(value) <= 900_000
    slim = orjson.loads(value)
    assert slim["complete"] is False and slim["model"] is None and slim["resource"] == ref
    assert slim["apparmor"] == "x" * 1000  # what fits is kept
    whole_model = orjson.dumps(document["model"], option=orjson.OPT_SORT_KEYS)
    assert slim["omitted"]["model"] == {"bytes": len(whole_model),
                                        "sha256": hashlib.sha256(whole_model).hexdigest()}
    small = dict(document, model=BehaviourModel().to_dict())
    assert orjson.loads(model_message(small, ref, 900_000)) == small
