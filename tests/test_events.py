"""The event schema: valid events round-trip, invalid ones are rejected with a reason."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from armorflow.events import (
    KIND_FIELDS,
    MAX_EVENT_BYTES,
    EventError,
    Rejects,
    make_event,
    parse_line,
    read_events,
    validate,
    write_events,
)

BASE: dict[str, Any] = {
    "ts": 1_700_000_000_000_000_000, "node": "n1", "profile": "varmor-cluster-varmor-demo-4",
    "namespace": "default", "pod": "demo-4-abc", "container": "c0", "container_id": "c0ffee",
    "pid": 42, "comm": "cat",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "exec": {"path": "/usr/bin/id"},
    "file": {"path": "/etc/shadow", "perms": "r", "owner": True},
    "syscall": {"name": "openat"},
    "capability": {"name": "sys_admin"},
    "network": {"family": "inet", "sock_type": "stream", "protocol": 6},
    "signal": {"signal": "SIGTERM", "peer": "unconfined", "direction": "receive"},
    "ptrace": {"mode": "read", "peer": "varmor-cluster-varmor-demo-4"},
    "mount": {"op": "umount", "path": "/mnt", "fstype": ""},
}


def sample(kind: str, **over: Any) -> dict[str, Any]:
    return make_event(kind, **{**BASE, **SAMPLES[kind], **over})


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KIND_FIELDS)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_valid_events_round_trip(kind: str) -> None:
    event = sample(kind)
    assert parse_line(orjson.dumps(event)) == event


def test_extra_fields_are_kept() -> None:
    event = sample("file", old_path="/etc/shadow-", cgroup_id=7)
    assert parse_line(orjson.dumps(event))["cgroup_id"] == 7


@pytest.mark.parametrize(
    ("mutation", "field", "words"),
    [
        ({"profile": None}, "profile", "expected str"),
        ({"ts": "1"}, "ts", "expected int"),
        ({"pid": True}, "pid", "expected int"),
        ({"kind": "telepathy"}, "kind", "unknown kind"),
        ({"v": 2}, "v", "unsupported schema version"),
        ({"perms": "rx"}, "perms", "subset"),
        ({"perms": ""}, "perms", "subset"),
        ({"owner": 1}, "owner", "expected bool"),
        ({"profile": ""}, "profile", "empty"),
        ({"path": "/a\x00b"}, "path", "NUL"),
        ({"ts": -5}, "ts", ">= 0"),
    ],
)
def test_invalid_events_name_the_field(mutation: dict[str, Any], field: str, words: str) -> None:
    event = {**sample("file"), **mutation}
    with pytest.raises(EventError) as info:
        validate(event)
    assert info.value.field == field
    assert words in str(info.value)


def test_missing_field_is_named() -> None:
    event = sample("network")
    del event["sock_type"]
    with pytest.raises(EventError, match=r"sock_type.*missing"):
        validate(event)


def test_enum_fields_are_checked() -> None:
    with pytest.raises(EventError, match="direction"):
        validate({**sample("signal"), "direction": "sideways"})


def test_bad_lines_are_rejected_and_good_lines_kept(tmp_path: Path) -> None:
    good = [sample("exec", pid=i) for i in range(5)]
    lines = [
        orjson.dumps(good[0]),
        orjson.dumps({k: v for k, v in good[1].items() if k != "node"}),  # missing field
        orjson.dumps(good[1]),
        b'{"v": 1, "kind": "file", "ts": 12',  # truncated JSON
        orjson.dumps(good[2]),
        b'{"v":1,"path":"\xff\xfe"}',  # not UTF-8
        orjson.dumps(good[3]),
        b"x" * (10 * 1024 * 1024),  # a 10 MB line
        orjson.dumps({**good[4], "kind": "bogus"}),
        orjson.dumps(good[4]),
        b"",
    ]
    path = tmp_path / "rec.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejects = Rejects()
    kept = list(read_events(path, rejects))
    assert kept == good
    assert rejects.count == 5
    text = "\n".join(rejects.samples)
    assert "line 2: field 'node': missing" in text
    assert "line 4: not valid UTF-8 JSON" in text
    assert "line 6: not valid UTF-8 JSON" in text
    assert f"line 8: line exceeds {MAX_EVENT_BYTES} bytes" in text
    assert "line 9: field 'kind': unknown kind 'bogus'" in text


def test_read_events_raises_without_rejects() -> None:
    stream = io.BytesIO(orjson.dumps(sample("exec")) + b"\n{oops\n")
    it = read_events(stream)
    assert next(it)["kind"] == "exec"
    with pytest.raises(EventError, match="line 2"):
        next(it)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst", ".jsonl.gz"])
def test_recordings_compress_transparently(tmp_path: Path, suffix: str) -> None:
    from armorflow.events import open_recording

    events = [sample("syscall", name=f"sc{i}") for i in range(100)]
    path = tmp_path / f"rec{suffix}"
    with open_recording(path, "wb") as out:
        assert write_events(out, events) == 100
    assert list(read_events(path)) == events
