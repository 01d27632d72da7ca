"""Namespace flags of syscall events: the optional ``flags`` field, checked alike by both
decoders, and the model's distinct flag sets per syscall (a union like the rest)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armorflow.events import (
    STRUCT_BEHAVIOUR,
    STRUCT_KINDS,
    EventError,
    behaviour_of,
    decode_array_fast,
    make_event,
    validate,
)
from armorflow.model import BehaviourModel, reduce_events
from armorflow.nsflags import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    flag_names,
    namespace_bits,
)

USERNS = make_event("syscall", profile="p", ts=1, name="unshare", flags=CLONE_NEWUSER)


def test_flags_are_optional_and_checked() -> None:
    assert "flags" not in make_event("syscall", profile="p", name="read")
    assert validate(dict(USERNS))["flags"] == CLONE_NEWUSER
    for bad, words in ((-1, ">= 0"), (True, "expected int"), ("0x10000000", "expected int"),
                       (1.0, "expected int")):
        with pytest.raises(EventError, match=words) as caught:
            validate(dict(USERNS, flags=bad))
        assert caught.value.field == "flags"
    assert validate(dict(USERNS, flags=None))["flags"] is None  # None: not seen


VALUES: list[Any] = [None, True, 0, -1, 1.5, "", "x", CLONE_NEWUSER, 2**63, [], {}]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(VALUES))
def test_fast_path_agrees_on_flags(value: Any) -> None:
    event = dict(USERNS, flags=value)
    fast = decode_array_fast(orjson.dumps([event]))
    try:
        slow = validate(orjson.loads(orjson.dumps(event)))
    except EventError:
        assert fast is None
        return
    assert fast is not None
    (item,) = fast
    assert STRUCT_BEHAVIOUR[STRUCT_KINDS[type(item)]](item) == behaviour_of(slow)


def test_the_model_keeps_each_distinct_set_and_counts_unseen_flags_as_none() -> None:
    def call(name: str, flags: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"flags": flags} if flags is not None else {}
        return make_event("syscall", profile="p", name=name, **fields)

    events = [call("read"), call("clone", 0), call("clone", CLONE_NEWUSER | 0x11),
              call("clone", CLONE_NEWUSER), call("unshare"),  # from the audit log: no flags
              call("setns", CLONE_NEWNET), call("read", 5)]
    model = reduce_events(events)["p"]
    assert model.syscalls == {"read", "clone", "unshare", "setns"}
    # other bits than the namespace ones are not kept (0x11 is clone's exit signal)
    assert model.namespace_flags == {"clone": {0, CLONE_NEWUSER}, "unshare": {0},
                                     "setns": {CLONE_NEWNET}}
    dyn = model.to_dynamic_result()["seccomp"]
    assert dyn["namespaceFlags"] == {"clone": [0, CLONE_NEWUSER], "setns": [CLONE_NEWNET],
                                     "unshare": [0]}
    back = BehaviourModel.from_dict(model.to_dict())
    assert back == model and back.canonical_json() == model.canonical_json()

    # the pipeline's entries carry them, and a replay changes nothing
    rebuilt = BehaviourModel()
    for key, value in model.entries():
        rebuilt.apply_entry(key, value)
    assert rebuilt.namespace_flags == model.namespace_flags
    assert not model.add(call("clone", CLONE_NEWUSER))
    other = reduce_events([call("clone", CLONE_NEWNS)])["p"]
    assert model.merge(other) and model.namespace_flags["clone"] == {0, CLONE_NEWUSER,
                                                                     CLONE_NEWNS}
    assert not model.merge(other)


def test_a_model_from_before_flags_counts_its_calls_as_without_namespaces() -> None:
    old = {"apparmor": {}, "seccomp": {"syscalls": ["clone", "read", "unshare"]}}
    model = BehaviourModel.from_dynamic_result(old)
    assert model.namespace_flags == {"clone": {0}, "unshare": {0}}
    assert "namespaceFlags" not in BehaviourModel(syscalls={"read"}).to_dynamic_result()[
        "seccomp"]


def test_flag_tables() -> None:
    # clone's 0x80 is part of its exit signal, not a time namespace
    assert namespace_bits("clone", CLONE_NEWTIME | CLONE_NEWUSER) == CLONE_NEWUSER
    assert namespace_bits("unshare", CLONE_NEWTIME) == CLONE_NEWTIME
    assert namespace_bits("read", CLONE_NEWUSER) == 0
    assert flag_names(CLONE_NEWUSER | CLONE_NEWNS) == ["CLONE_NEWNS", "CLONE_NEWUSER"]
