"""``armorflow query``: ad hoc SQL (DuckDB) over a recording or a snapshot of the topics.

The table ``events`` has one column per schema field: the common fields, then every
kind-specific field (``path``, ``perms``, ``name``...; NULL where a kind has no such
field), ``extra`` (a JSON object of any field the event's kind does not declare, else
NULL) and
``event_time`` (``ts`` as a UTC TIMESTAMP, for grouping by time).

Two engines load it, and both end in the same SQL that checks each record against the
schema and types the columns as the schema declares:

- ``duckdb`` (the default for recordings of at least :data:`FAST_PATH_BYTES`): DuckDB
  reads the file itself (``.jsonl``, ``.gz``, ``.zst``), in parallel, never through
  Python objects. Records are numbered by non-blank line.
- ``python``: :func:`armorflow.events.read_events` validates every line first (exact line
  numbers for rejects); used for small recordings and for topic snapshots.

A recording DuckDB cannot read (a truncated or corrupt compressed file, a ``.gz`` that is
plain text) is read by the ``python`` engine instead, which keeps every event before the
damage and reports it in one line (:mod:`armorflow.users.recording`); the query then
exits with status 3 after printing its rows.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt
from armorflow.config import KafkaSettings
from armorflow.events import (
    COMMON_FIELDS,
    ENUMS,
    FILE_PERMS,
    KIND_FIELDS,
    KINDS,
    OPTIONAL_FIELDS,
    SCHEMA_VERSION,
    Event,
    Rejects,
    write_events,
)
from armorflow.users.recording import (
    RecordingReport,
    read_recording,
    sniff_compression,
    stream_is_whole,
)
from armorflow.users.topicread import (
    BrokerUnreachable,
    TopicReader,
    TopicSpecError,
    parse_topics,
)

if TYPE_CHECKING:
    import duckdb

#: Recordings at least this large are read by DuckDB directly (``--engine auto``).
FAST_PATH_BYTES: Final = 32 << 20

_SQL_TYPES: Final[dict[type, str]] = {str: "VARCHAR", int: "BIGINT", bool: "BOOLEAN"}
#: Rejects listed in full; the rest are counted.
_SAMPLES: Final = 100


def schema_columns() -> dict[str, type]:
    """Every schema field, common ones first, then kind-specific ones in schema order."""
    columns: dict[str, type] = dict(COMMON_FIELDS)
    for kind in KINDS:
        for table in (KIND_FIELDS, OPTIONAL_FIELDS):
            for name, kind_type in table.get(kind, {}).items():
                columns.setdefault(name, kind_type)
    return columns


COLUMNS: Final = schema_columns()


class Engine(StrEnum):
    auto = "auto"
    duckdb = "duckdb"
    python = "python"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class SourceError(ValueError):
    """A ``--from`` value that is neither a readable file nor a topic selection."""


@dataclass
class LoadResult:
    """What went into ``events``: row count, skipped records, and how it was read."""

    rows: int
    rejects: Rejects = field(default_factory=lambda: Rejects(limit=_SAMPLES))
    engine: str = "python"
    source: str = ""
    #: What reading a recording found besides events (damage, a misleading name).
    recording: RecordingReport | None = None


# --- the schema check and typing, in SQL ---------------------------------------------------


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: How a JSON value's text starts, per schema type (``t`` holds each field's JSON text).
_JSON_TEXT: Final[dict[type, str]] = {
    str: "starts_with(t.{0}, '\"')",
    int: "regexp_full_match(t.{0}, '-?[0-9]+')",
    bool: "t.{0} IN ('true', 'false')",
}


def _type_ok(name: str, expected: type) -> str:
    """``t`` holds each field's JSON text, ``e`` its value in the column's type."""
    check = _JSON_TEXT[expected].format(name)
    if expected is int:
        # An integer beyond BIGINT's range transforms to NULL.
        check += f" AND e.{name} IS NOT NULL"
    return f"coalesce({check}, false)"


def _reason_sql() -> str:
    """A CASE expression: NULL for a valid event, else why it is not (first problem).

    It reads two structs parsed once per record (field types ``t``, typed values ``e``):
    a JSON function per check would parse the record again for each of ~40 checks, and
    ``json_structure`` costs four times a ``json_transform``.
    """
    whens = [
        ("doc IS NULL", "not valid JSON"),
        ("NOT starts_with(ltrim(doc), '{')", "an event is a JSON object"),
    ]
    for name, expected in COMMON_FIELDS.items():
        whens.append((f"NOT ({_type_ok(name, expected)})",
                      f"field {name!r}: missing or not {expected.__name__}"))
    whens += [
        (f"e.v <> {SCHEMA_VERSION}", "field 'v': unsupported schema version"),
        (f"e.kind NOT IN ({', '.join(_q(k) for k in KINDS)})", "field 'kind': unknown kind"),
        ("e.profile = ''", "field 'profile': must not be empty"),
        ("e.ts < 0", "field 'ts': must be >= 0"),
    ]
    for kind, specific in KIND_FIELDS.items():
        for name, expected in specific.items():
            whens.append((f"e.kind = {_q(kind)} AND NOT ({_type_ok(name, expected)})",
                          f"field {name!r}: missing or not {expected.__name__} "
                          f"(required for kind {kind!r})"))
        for name, expected in OPTIONAL_FIELDS.get(kind, {}).items():
            whens.append((f"e.kind = {_q(kind)} AND t.{name} IS NOT NULL "
                          f"AND NOT {_type_ok(name, expected)}",
                          f"field {name!r}: not {expected.__name__}"))
        if "path" in specific:
            whens.append((f"e.kind = {_q(kind)} AND (e.path = '' OR contains(e.path, chr(0)))",
                          "field 'path': must be a non-empty path without NUL"))
    # the same value check as armorflow.events.validate (found by test_query's mutations)
    whens.append(("e.kind = 'syscall' AND e.flags IS NOT NULL AND e.flags < 0",
                  "field 'flags': must be >= 0 (a flags word)"))
    whens.append((f"e.kind = 'file' AND NOT regexp_full_match(e.perms, '[{FILE_PERMS}]+')",
                  f"field 'perms': not a non-empty subset of {FILE_PERMS!r}"))
    for (kind, name), allowed in ENUMS.items():
        values = ", ".join(_q(v) for v in sorted(allowed))
        whens.append((f"e.kind = {_q(kind)} AND e.{name} NOT IN ({values})",
                      f"field {name!r}: not one of {sorted(allowed)}"))
    body = "\n".join(f"  WHEN {cond} THEN {_q(reason)}" for cond, reason in whens)
    return f"CASE\n{body}\n  ELSE NULL END"


def _checked_sql() -> str:
    """Each record of ``read_ndjson_objects(?)`` with its typed values and its reason."""
    values = orjson.dumps({n: _SQL_TYPES[t] for n, t in COLUMNS.items()}).decode()
    texts = orjson.dumps(dict.fromkeys(COLUMNS, "JSON")).decode()
    return (
        f"SELECT record, doc, e, {_reason_sql()} AS reason FROM ("
        f"SELECT ordinality AS record, json AS doc, json_transform(json, {_q(values)}) AS e, "
        f"json_transform(json, {_q(texts)}) AS t "
        "FROM read_ndjson_objects(?, ignore_errors = true) WITH ORDINALITY)"
    )


def _kind_fields(kind: str) -> list[str]:
    """The fields the schema declares for ``kind``: common, required, optional."""
    return [*COMMON_FIELDS, *KIND_FIELDS[kind], *OPTIONAL_FIELDS.get(kind, {})]


def _events_sql() -> str:
    """Typed columns of the valid ``raw_checked`` rows, in file order.

    A kind-specific column is filled only for the kinds that declare the field; a field
    an event's kind does not declare (``perms`` on an exec, say) goes to ``extra`` with
    the fields the schema does not know at all.
    """
    picks = []
    for name in COLUMNS:
        if name in COMMON_FIELDS:
            picks.append(f"e.{name} AS {name}")
            continue
        kinds = ", ".join(_q(k) for k in KINDS if name in _kind_fields(k))
        picks.append(f"CASE WHEN e.kind IN ({kinds}) THEN e.{name} END AS {name}")
    removals = " ".join(
        f"WHEN {_q(kind)} THEN json_merge_patch(doc, "
        f"{_q(orjson.dumps(dict.fromkeys(_kind_fields(kind))).decode())})"
        for kind in KINDS
    )
    return (
        f"SELECT {', '.join(picks)}, "
        f"CAST(NULLIF(CASE e.kind {removals} END, '{{}}') AS JSON) AS extra, "
        "make_timestamp(e.ts // 1000) AS event_time "
        "FROM raw_checked WHERE reason IS NULL ORDER BY record"
    )


def _load_ndjson(con: duckdb.DuckDBPyConnection, path: Path, result: LoadResult,
                 record_word: str) -> None:
    """Check and type an NDJSON file into ``events``; count what fails in ``result``."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE raw_checked AS {_checked_sql()}", [str(path)])
    con.execute(f"CREATE OR REPLACE TABLE events AS {_events_sql()}")
    counted = con.execute("SELECT count(*) FROM raw_checked WHERE reason IS NOT NULL").fetchone()
    result.rejects.count += int(counted[0]) if counted else 0
    room = max(0, result.rejects.limit - len(result.rejects.samples))
    bad = con.execute(
        "SELECT record, reason FROM raw_checked WHERE reason IS NOT NULL "
        "ORDER BY record LIMIT ?", [room],
    ).fetchall()
    result.rejects.samples += [f"{record_word} {record}: {reason}" for record, reason in bad]
    con.execute("DROP TABLE raw_checked")
    row = con.execute("SELECT count(*) FROM events").fetchone()
    result.rows = int(row[0]) if row else 0


def _load_events(
    con: duckdb.DuckDBPyConnection, events: Iterable[Event], result: LoadResult
) -> None:
    """Load already-validated events through a temporary NDJSON file."""
    fd, name = tempfile.mkstemp(prefix="armorflow-query-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as sink:
            write_events(sink, events)
        _load_ndjson(con, Path(name), result, "event")
    finally:
        os.unlink(name)


# --- sources -----------------------------------------------------------------------------


def load_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    *,
    settings: KafkaSettings | None = None,
    engine: Engine = Engine.auto,
) -> LoadResult:
    """Fill table ``events`` from ``FILE``, ``topic:NAME`` (a kind or topic name, or a
    comma list) or ``topics:all``; the public API behind ``armorflow query``."""
    result = LoadResult(rows=0, source=source)
    if source.startswith(("topic:", "topics:")):
        spec = source.partition(":")[2]
        try:
            topics = parse_topics(spec)
        except TopicSpecError as exc:
            raise SourceError(str(exc)) from None
        kafka = settings or KafkaSettings.from_env()
        rejects = result.rejects
        with TopicReader(kafka, topics, from_beginning=True) as reader:
            snapshot = (e for batch in reader.batches(rejects, until_end=True) for e in batch)
            _load_events(con, snapshot, result)
        result.engine = "python"
        return result
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{source!r} is neither a recording file nor topic:NAME / topics:all")
    fast = engine is Engine.duckdb or (
        engine is Engine.auto and path.stat().st_size >= FAST_PATH_BYTES
    )
    if fast and _load_fast(con, path, result):
        return result
    result.engine = "python"
    events, result.recording = read_recording(path, result.rejects)
    _load_events(con, events, result)
    return result


def _load_fast(con: duckdb.DuckDBPyConnection, path: Path, result: LoadResult) -> bool:
    """DuckDB reads the file itself; False (nothing loaded) if it cannot read it whole."""
    import duckdb

    # DuckDB stops quietly at the end of a truncated zstd file (a gzip one it refuses):
    # check that the stream is whole first, a fast pass next to parsing JSON.
    if sniff_compression(path) == "zstd" and not stream_is_whole(path):
        return False
    try:
        _load_ndjson(con, path, result, "record")
    except duckdb.Error:
        # Damaged or mislabelled: the Python reader keeps what it can and says why.
        result.rejects = Rejects(limit=_SAMPLES)
        return False
    result.engine = "duckdb"
    return True


def connect() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``sql`` against the loaded ``events``."""
    cursor = con.execute(sql)
    names = [d[0] for d in (cursor.description or [])]
    return names, cursor.fetchall()


# --- output ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def write_rows(names: Sequence[str], rows: Sequence[tuple[Any, ...]], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(v) for v in row] for row in rows)
    elif fmt is OutputFormat.json:
        docs = [dict(zip(names, row, strict=True)) for row in rows]
        sys.stdout.write(
            orjson.dumps(docs, default=str, option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*names, show_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*(_cell(v) for v in row))
        Console(width=max(100, 16 * len(names))).print(table)
    sys.stdout.flush()


def query(
    sql: Annotated[str, typer.Argument(help="SQL over the table `events`.")],
    source: Annotated[
        str,
        typer.Option("--from", help="A recording FILE, topic:KIND[,KIND] or topics:all."),
    ] = "topics:all",
    fmt: Annotated[OutputFormat, typer.Option(
        "--output", "-o", "--format", help="Output format.")] = (
        OutputFormat.table
    ),
    engine: Annotated[
        Engine,
        typer.Option(help="Who reads a recording: auto (DuckDB when large), duckdb, python."),
    ] = Engine.auto,
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
) -> None:
    """Run SQL (DuckDB) over a recording or a snapshot of the event topics."""
    import duckdb

    con = connect()
    settings = KafkaSettings.from_env(bootstrap_servers, kafka_option)
    try:
        loaded = load_source(con, source, settings=settings, engine=engine)
    except SourceError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from") from None
    except BrokerUnreachable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if loaded.rejects.count:
        typer.echo(f"skipped {loaded.rejects.count:,} bad record(s) of {source}:", err=True)
        for sample in loaded.rejects.samples:
            typer.echo(f"  {sample}", err=True)
    try:
        names, rows = run_sql(con, sql)
    except duckdb.Error as exc:
        typer.echo(f"query failed: {exc}", err=True)
        raise typer.Exit(2) from None
    write_rows(names, rows, fmt)
    notes = loaded.recording.notes("queried what was read") if loaded.recording else []
    for note in notes:
        typer.echo(note, err=True)
    if loaded.recording is not None and loaded.recording.damage is not None:
        raise typer.Exit(3)
