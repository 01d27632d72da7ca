"""``armorflow query``: every docs/query.md example returns its documented rows, with
both engines; bad records are skipped and named; topic snapshots on a real broker."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from armorflow.broker import EmbeddedBroker
from armorflow.cli import app
from armorflow.events import make_event, open_recording, write_events
from armorflow.kafka import EventProducer
from armorflow.users.query import COLUMNS, Engine, connect, load_source, run_sql

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLE = DOCS / "query-example.jsonl"
EXPECTED_EXAMPLES = {
    "Top execs per profile",
    "Files written per pod",
    "Syscalls seen on one node only",
    "Capability use over time",
}


def _flat(text: str) -> str:
    """Terminal output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _examples() -> list[tuple[str, str, list[list[str]]]]:
    """(title, SQL, expected CSV rows incl. header) of each worked example."""
    text = (DOCS / "query.md").read_text().split("## Worked examples", 1)[1]
    found = []
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        sql = re.search(r"```sql\n(.*?)```", section, re.S)
        rows = re.search(r"```csv\n(.*?)```", section, re.S)
        assert sql and rows, f"example {title!r} lacks a sql or csv block"
        found.append((title, sql.group(1), list(csv.reader(io.StringIO(rows.group(1))))))
    return found


EXAMPLES = _examples()


def test_docs_hold_the_four_examples() -> None:
    assert {title for title, _, _ in EXAMPLES} == EXPECTED_EXAMPLES


def _query(*args: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, ["query", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout, result.stderr


@pytest.mark.parametrize("engine", ["python", "duckdb"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[t for t, _, _ in EXAMPLES])
def test_docs_example_returns_documented_rows(
    example: tuple[str, str, list[list[str]]], engine: str
) -> None:
    _, sql, expected = example
    out, err = _query(sql, "--from", str(EXAMPLE), "--format", "csv", "--engine", engine)
    assert list(csv.reader(io.StringIO(out))) == expected
    assert "skipped" not in err


def test_compressed_recording_gives_the_same_rows(tmp_path: Path) -> None:
    packed = tmp_path / "example.jsonl.zst"
    with open_recording(packed, "wb") as sink:
        sink.write(EXAMPLE.read_bytes())
    _, sql, expected = EXAMPLES[0]
    for engine in ("python", "duckdb"):
        out, _ = _query(sql, "--from", str(packed), "--format", "csv", "--engine", engine)
        assert list(csv.reader(io.StringIO(out))) == expected


def test_table_has_every_schema_column_typed_and_null_when_absent(tmp_path: Path) -> None:
    con = connect()
    loaded = load_source(con, str(EXAMPLE), engine=Engine.duckdb)
    assert loaded.rows == 46 and loaded.rejects.count == 0
    _, rows = run_sql(con, "DESCRIBE events")
    types = {row[0]: row[1] for row in rows}
    assert list(types) == [*COLUMNS, "extra", "event_time"]
    assert types["ts"] == "BIGINT" and types["owner"] == "BOOLEAN" and types["path"] == "VARCHAR"
    _, rows = run_sql(con, "SELECT path, perms, owner, family FROM events WHERE kind = 'syscall'")
    assert rows and all(r == (None, None, None, None) for r in rows)


@pytest.mark.parametrize("engine", [Engine.python, Engine.duckdb])
def test_bad_records_are_skipped_and_named(tmp_path: Path, engine: Engine) -> None:
    good = [
        make_event("exec", ts=1, profile="p", path="/bin/a"),
        make_event("file", ts=2, profile="p", path="/etc/x", perms="r", owner=False, hint=7),
        make_event("syscall", ts=3, profile="q", name="read"),
    ]
    path = tmp_path / "mixed.jsonl"
    with path.open("wb") as sink:
        write_events(sink, good[:1])                                   # line 1
        sink.write(b"{not json\n")                                      # line 2
        write_events(sink, good[1:2])                                   # line 3
        sink.write(b'{"v":1,"kind":"exec","ts":4,"profile":"p"}\n')     # line 4: fields
        sink.write(orjson.dumps({**good[2], "ts": "late"}) + b"\n")     # line 5: ts type
        write_events(sink, good[2:])                                    # line 6
    con = connect()
    loaded = load_source(con, str(path), engine=engine)
    assert loaded.rows == 3
    assert loaded.rejects.count == 3
    word = "line" if engine is Engine.python else "record"
    assert [s.split(":")[0] for s in loaded.rejects.samples] == [
        f"{word} 2", f"{word} 4", f"{word} 5",
    ]
    assert "'ts'" in loaded.rejects.samples[2]
    _, rows = run_sql(con, "SELECT kind, ts, extra FROM events ORDER BY ts")
    assert [(k, ts) for k, ts, _ in rows] == [("exec", 1), ("file", 2), ("syscall", 3)]
    assert orjson.loads(rows[1][2]) == {"hint": 7}
    assert rows[0][2] is None


def test_cli_reports_rejects_on_stderr_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "one-bad.jsonl"
    path.write_bytes(EXAMPLE.read_bytes() + b'{"v":1,"kind":"warp"}\n')
    out, err = _query("SELECT count(*) AS n FROM events", "--from", str(path), "--format", "json")
    assert orjson.loads(out) == [{"n": 46}]
    assert "skipped 1 bad record" in err and "line 47" in err


def test_bad_sql_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["query", "SELECT nope FROM events", "--from", str(EXAMPLE)])
    assert result.exit_code == 2
    assert "query failed" in result.stderr


@pytest.mark.broker
def test_topic_snapshots_on_a_real_broker(broker: EmbeddedBroker) -> None:
    profile = f"q-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(broker.settings(), batch_size=7)
    for i in range(50):
        producer.publish(make_event("file", ts=i, profile=profile, pod="p1",
                                    path=f"/data/{i % 5}", perms="w", owner=True))
    for i in range(20):
        producer.publish(make_event("syscall", ts=i, profile=profile, node=f"n{i % 2}",
                                    name=f"s{i % 4}"))
    producer.flush()
    sql = (f"SELECT kind, count(*) AS n, count(DISTINCT coalesce(path, name)) AS distinct_what "
           f"FROM events WHERE profile = '{profile}' GROUP BY kind ORDER BY kind")
    bootstrap = ["-b", broker.bootstrap_servers]
    out, _ = _query(sql, "--from", "topics:all", "--format", "csv", *bootstrap)
    assert list(csv.reader(io.StringIO(out))) == [
        ["kind", "n", "distinct_what"], ["file", "50", "5"], ["syscall", "20", "4"],
    ]
    out, _ = _query(sql, "--from", "topic:syscall", "--format", "json", *bootstrap)
    assert orjson.loads(out) == [{"kind": "syscall", "n": 20, "distinct_what": 4}]


def test_unknown_source_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["query", "SELECT 1", "--from", str(tmp_path / "none")])
    assert result.exit_code != 0
    assert "neither a recording file" in _flat(result.output)
    result = CliRunner().invoke(app, ["query", "SELECT 1", "--from", "topic:bogus"])
    assert result.exit_code != 0
    assert "neither an event kind" in _flat(result.output)


_BASE = [orjson.loads(line) for line in EXAMPLE.read_bytes().splitlines()]
_MUTATIONS = {
    "drop": lambda e, f: {k: v for k, v in e.items() if k != f},
    "string": lambda e, f: {**e, f: "7"},
    "int": lambda e, f: {**e, f: 7},
    "float": lambda e, f: {**e, f: 7.5},
    "bool": lambda e, f: {**e, f: True},
    "null": lambda e, f: {**e, f: None},
    "empty": lambda e, f: {**e, f: ""},
    "negative": lambda e, f: {**e, f: -1},
    "huge": lambda e, f: {**e, f: 1 << 70},
    "nested": lambda e, f: {**e, f: {"x": [1]}},
    "extra": lambda e, f: {**e, f"x_{f}": 1},
}


@settings(max_examples=25, deadline=None)
@given(st.lists(
    st.tuples(st.integers(0, len(_BASE) - 1), st.sampled_from(sorted(_MUTATIONS)),
              st.sampled_from([*COLUMNS, "not-an-object"])),
    max_size=6,
))
def test_both_engines_refuse_the_same_records(
    tmp_path_factory: pytest.TempPathFactory, mutations: list[tuple[int, str, str]]
) -> None:
    """The DuckDB engine's SQL check agrees with the schema's own validator, record by
    record, on events broken in every way a field can be."""
    docs: list[object] = [dict(e) for e in _BASE]
    for index, how, field_name in mutations:
        doc = docs[index]
        if field_name == "not-an-object":
            docs[index] = [1, 2] if how == "drop" else "just a string"
        elif isinstance(doc, dict):
            docs[index] = _MUTATIONS[how](doc, field_name)
    # The stdlib writes integers of any size (orjson refuses beyond 64 bits).
    lines = [json.dumps(d).encode() for d in docs]
    path = tmp_path_factory.mktemp("parity") / "mutated.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    results = {}
    for engine in (Engine.python, Engine.duckdb):
        con = connect()
        loaded = load_source(con, str(path), engine=engine)
        refused = [int(s.split(":")[0].split()[1]) for s in loaded.rejects.samples]
        _, rows = run_sql(con, "SELECT * EXCLUDE (event_time, extra), extra FROM events")
        # Compare extras as values: orjson reads an integer beyond 64 bits as a float.
        rows = [(*r[:-1], None if r[-1] is None else json.loads(r[-1])) for r in rows]
        results[engine] = (loaded.rows, loaded.rejects.count, refused, rows)
    assert results[Engine.python] == results[Engine.duckdb]
