"""The fast array decoder accepts exactly what the field-by-field validator accepts."""

from __future__ import annotations

from typing import Any

import orjson
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
from armorflow.pipeline.ingest import Ingestor

GOOD = [
    make_event("file", profile="p", ts=5, path="/etc/hosts", perms="rw", owner=False),
    make_event("syscall", profile="p", ts=6, name="openat"),
    make_event("signal", profile="p", ts=7, signal="term", peer="x", direction="send"),
]
VALUES: list[Any] = [None, True, 0, -1, 1.5, "", "x", "a\x00b", "rz", "send", [], {}]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(GOOD),
    st.sampled_from(sorted({k for e in GOOD for k in e} | {"kind"})),
    st.sampled_from(VALUES),
)
def test_fast_path_never_accepts_what_validate_rejects(
    base: dict[str, Any], name: str, value: Any
) -> None:
    event = dict(base, **{name: value})
    fast = decode_array_fast(orjson.dumps([event]))
    try:
        slow = validate(orjson.loads(orjson.dumps(event)))
    except EventError:
        assert fast is None
        return
    if fast is not None:
        (item,) = fast
        assert STRUCT_BEHAVIOUR[STRUCT_KINDS[type(item)]](item) == behaviour_of(slow)


def test_bad_event_in_an_array_keeps_the_good_ones() -> None:
    from armorflow.control import make_control

    ingestor = Ingestor(lambda p: p)
    ingestor.apply_batch([make_control("start", "p", duration_s=60, start_ts=0).encode()])
    bad = dict(GOOD[0], perms="xyz")
    ingestor.apply_batch([orjson.dumps([GOOD[0], bad, GOOD[1]]), orjson.dumps(GOOD)])
    assert ingestor.stats.rejected == 1
    model = ingestor.models["p"]
    assert model.syscalls == {"openat"}
    assert set(model.files) == {("/etc/hosts", "", False)}
    assert ingestor.windows["p"].events == 5
