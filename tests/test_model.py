"""The behaviour model: a commutative, idempotent union with vArmor's dynamicResult form."""

from __future__ import annotations

import random

from armorflow.aaglob import matches
from armorflow.model import BehaviourModel, reduce_events
from support.pipeline import workload


def test_merge_is_commutative_and_idempotent() -> None:
    events = workload("p", 1_000)
    random.Random(7).shuffle(events)
    half = len(events) // 2
    a = reduce_events(events[:half])["p"]
    b = reduce_events(events[half:])["p"]
    whole = reduce_events(events)["p"]
    ab = BehaviourModel.from_dict(a.to_dict())
    ab.merge(b)
    ba = BehaviourModel.from_dict(b.to_dict())
    ba.merge(a)
    assert ab.canonical_json() == ba.canonical_json() == whole.canonical_json()
    assert not ab.merge(a)  # merging again changes nothing
    again = reduce_events(events + events[:50])["p"]
    assert again.canonical_json() == whole.canonical_json()


def test_file_permissions_of_one_path_merge() -> None:
    from armorflow.events import make_event

    model = BehaviourModel()
    for perms in ("r", "w", "r", "a"):
        model.add(make_event("file", profile="p", path="/root/c1", perms=perms, owner=True))
    files = model.to_dynamic_result()["apparmor"]["files"]
    assert files == [{"path": "/root/c1", "permissions": ["r", "w", "a"], "owner": True}]


def test_dynamic_result_round_trips() -> None:
    model = reduce_events(workload("p", 5))["p"]
    back = BehaviourModel.from_dict(model.to_dict())
    assert back.canonical_json() == model.canonical_json()
    dyn = model.to_dynamic_result()
    assert set(dyn) == {"apparmor", "seccomp"}
    assert set(dyn["apparmor"]) >= {
        "profiles", "executions", "files", "capabilities", "networks", "ptraces", "signals",
        "unhandled",
    }


def test_literal_glob_characters_are_escaped_in_the_model() -> None:
    from armorflow.events import make_event

    model = BehaviourModel()
    model.add(make_event("file", profile="p", path="/tmp/a*b?[c]", perms="r", owner=True))
    (pattern,) = [k[0] for k in model.files]
    assert matches(pattern, "/tmp/a*b?[c]")
    assert not matches(pattern, "/tmp/aXXbY[c]")
    assert not matches(pattern, "/tmp/axbyc")


def test_collapsed_examples_stay_bounded_and_order_free() -> None:
    from armorflow.events import make_event

    def mapper(path: str) -> str:
        return "/tmp/tmp*" if path.startswith("/tmp/tmp") else path

    names = [f"/tmp/tmp{i:04d}" for i in range(50)]
    a, b = BehaviourModel(), BehaviourModel()
    for n in names:
        a.add(make_event("file", profile="p", path=n, perms="r", owner=True), mapper)
    for n in reversed(names):
        b.add(make_event("file", profile="p", path=n, perms="r", owner=True), mapper)
    assert a.collapsed == b.collapsed == {"/tmp/tmp*": {"/tmp/tmp0000", "/tmp/tmp0001",
                                                       "/tmp/tmp0002"}}
    assert len(a.files) == 1


def test_literals_fold_into_a_learned_sibling_pattern_whatever_the_order() -> None:
    from armorflow.events import make_event

    def classifier(path: str) -> str:
        # Collapses only names it is sure of, like a classifier that misses a few.
        return "/tmp/php*" if path.startswith("/tmp/phpX") else path

    names = ["/tmp/phpXa1", "/tmp/phpmiss", "/tmp/phpXb2", "/tmp/other"]
    built = []
    for order in (names, list(reversed(names))):
        model = BehaviourModel()
        for n in order:
            model.add(make_event("file", profile="p", path=n, perms="r", owner=True), classifier)
        model.fold_learned()
        built.append(model.canonical_json())
        assert {k[0] for k in model.files} == {"/tmp/php*", "/tmp/other"}
    assert built[0] == built[1]
