"""Offline verbs on damaged recordings: a bad profile name in one line, a gzip cut in half,
a ``.gz`` that is plain text, a truncated ``.zst``. The good data is modeled (queried,
published), the damage is said in one line, the exit status tells a partial result (3)
from a whole one (0) and from nothing at all (1)."""

from __future__ import annotations

import contextlib
import gzip
import random
import re
import uuid
from pathlib import Path

import orjson
import pytest
import zstandard
from typer.testing import CliRunner

from armorflow.broker import EmbeddedBroker
from armorflow.cli import app
from armorflow.events import Event, Rejects, make_event, read_events
from armorflow.model import BehaviourModel
from armorflow.pipeline.offline import model_recording
from armorflow.pipeline.stages import Stages

PROFILES = ("web", "db", "cache")


def recording(n: int = 6_000, profiles: tuple[str, ...] = PROFILES) -> list[Event]:
    """Events of several profiles; random paths keep compressed files from shrinking to
    one block, so that a file cut in half still holds whole events."""
    rng = random.Random(7)
    return [
        make_event("file", ts=1_000 + i, node="n1", profile=profiles[i % len(profiles)],
                   pid=i, comm="app", path=f"/srv/{rng.getrandbits(48):012x}/{i % 40}",
                   perms="r", owner=True)
        for i in range(n)
    ]


def jsonl(events: list[Event]) -> bytes:
    return b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def models_in(out: Path) -> dict[str, str]:
    """profile -> canonical model JSON of every ``*.model.json`` under ``out``."""
    return {p.name.removesuffix(".model.json"):
            BehaviourModel.from_dict(orjson.loads(p.read_bytes())).canonical_json()
            for p in out.rglob("*.model.json")}


def expected_models(events: list[Event]) -> dict[str, str]:
    closed = model_recording(events, Stages.default(classify=False))
    return {w.profile: w.model.canonical_json() for w in closed}


def events_before_damage(stderr: str) -> int:
    found = re.search(r"stream after ([\d,]+) events", stderr)
    assert found, stderr
    return int(found.group(1).replace(",", ""))


def test_a_bad_profile_name_costs_its_line_only(tmp_path: Path) -> None:
    events = recording(300)
    lines = jsonl(events).splitlines(keepends=True)
    for bad_name, at in (("../Bad Name", 10), ("UPPER", 200)):
        bad = dict(events[0], profile=bad_name)
        lines.insert(at, orjson.dumps(bad, option=orjson.OPT_APPEND_NEWLINE))
    source = tmp_path / "rec.jsonl"
    source.write_bytes(b"".join(lines))
    out = tmp_path / "out"
    code, stdout, stderr = run("model", "--from", str(source), "--out", str(out),
                               "--no-classify")
    assert code == 3, stdout + stderr
    assert "3 profile(s) modeled" in stdout and "2 bad line(s) skipped" in stdout
    assert "line 11: field 'profile'" in stderr and "line 201: field 'profile'" in stderr
    assert models_in(out) == expected_models(events)


def test_the_offline_reducer_refuses_unsafe_names_it_is_handed(tmp_path: Path) -> None:
    """Events passed straight in (no reader): the unsafe one is counted, the rest modeled."""
    events = recording(60)
    hostile = dict(events[0], profile="../../etc")
    rejects = Rejects()
    closed = model_recording([*events, hostile], Stages.default(classify=False),  # type: ignore[list-item]
                             rejects=rejects)
    assert sorted(w.profile for w in closed) == sorted(PROFILES)
    assert rejects.count == 1 and "profile" in rejects.samples[0]


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_a_compressed_recording_cut_in_half_models_what_was_read(
    tmp_path: Path, compress: str
) -> None:
    events = recording()
    data = gzip.compress(jsonl(events)) if compress == "gzip" else (
        zstandard.ZstdCompressor(level=3).compress(jsonl(events)))
    source = tmp_path / f"rec.jsonl.{'gz' if compress == 'gzip' else 'zst'}"
    source.write_bytes(cut_in_half(data))
    out = tmp_path / "out"
    code, stdout, stderr = run("model", "--from", str(source), "--out", str(out),
                               "--no-classify")
    assert code == 3, stdout + stderr
    damage = [line for line in stderr.splitlines() if "truncated" in line]
    assert len(damage) == 1 and f"{compress} stream" in damage[0], stderr
    assert "modeled what was read" in damage[0] and "Aborted" not in stderr + stdout
    read = events_before_damage(stderr)
    assert 0 < read < len(events)
    assert models_in(out) == expected_models(events[:read])


def test_a_gz_that_is_plain_text_is_read_as_what_it_is(tmp_path: Path) -> None:
    events = recording(500)
    source = tmp_path / "rec.jsonl.gz"
    source.write_bytes(jsonl(events))
    out = tmp_path / "out"
    code, stdout, stderr = run("model", "--from", str(source), "--out", str(out),
                               "--no-classify")
    assert code == 0, stdout + stderr
    assert "named .gz but holds plain JSON Lines" in stderr
    assert models_in(out) == expected_models(events)


def test_a_zst_cut_before_its_first_event_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "rec.jsonl.zst"
    source.write_bytes(zstandard.ZstdCompressor().compress(jsonl(recording(500)))[:40])
    code, stdout, stderr = run("model", "--from", str(source), "--out", str(tmp_path / "o"))
    assert code == 1, stdout + stderr
    assert "truncated or corrupt zstd stream after 0 events" in stderr
    assert "no model written" in stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("engine", ["duckdb", "python"])
def test_query_of_a_truncated_zst_keeps_its_rows_and_says_so(
    tmp_path: Path, engine: str
) -> None:
    events = recording()
    source = tmp_path / "rec.jsonl.zst"
    source.write_bytes(cut_in_half(zstandard.ZstdCompressor(level=3).compress(jsonl(events))))
    code, stdout, stderr = run("query", "SELECT count(*) AS n FROM events", "--from",
                               str(source), "--engine", engine, "--format", "csv")
    assert code == 3, stdout + stderr
    read = events_before_damage(stderr)
    assert stdout.splitlines() == ["n", str(read)] and 0 < read < len(events)


@pytest.mark.broker
def test_replay_of_a_gzip_cut_in_half_publishes_what_was_read(
    tmp_path: Path, noida_broker: EmbeddedBroker
) -> None:
    profile = f"cut-{uuid.uuid4().hex[:8]}"
    events = recording(3_000, profiles=(profile,))
    source = tmp_path / "rec.jsonl.gz"
    source.write_bytes(cut_in_half(gzip.compress(jsonl(events))))
    code, stdout, stderr = run("replay", str(source), "--no-progress", "-b",
                               noida_broker.settings().bootstrap_servers)
    assert code == 3, stdout + stderr
    read = events_before_damage(stderr)
    assert f"published {read:,} events" in stdout and 0 < read < len(events)
    # What was published is exactly the readable prefix.
    with gzip.open(source) as stream:
        prefix: list[Event] = []
        with contextlib.suppress(EOFError):
            prefix.extend(read_events(stream))
    assert len(prefix) == read
