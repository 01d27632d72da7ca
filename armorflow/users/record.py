"""``armorflow record``: copy event topics to a JSON Lines recording, sorted by time.

Messages arrive in partition order, and one profile's events of different kinds sit in
different topics, so the arrival order interleaves them arbitrarily. The recording is
sorted by ``ts`` with an external merge sort: events are buffered up to a bound, each full
buffer is sorted and spilled to a temporary run file, and the runs are merged at the end.
Memory stays bounded whatever the size of the topics, and the order is exact (globally by
``ts``, hence per profile too; ties keep arrival order).
"""

from __future__ import annotations

import heapq
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt, kafka_settings
from armorflow.config import KafkaSettings
from armorflow.events import Event, Rejects, open_recording
from armorflow.jsonbytes import dumps_kept
from armorflow.signals import on_stop
from armorflow.users.progress import event_progress
from armorflow.users.timespec import TimeSpecError, Until, parse_until
from armorflow.users.topicread import (
    BrokerUnreachable,
    TopicReader,
    TopicSpecError,
    parse_topics,
)

#: Events held in memory (as encoded lines) before a sorted run is spilled to disk.
DEFAULT_SORT_BUFFER = 200_000


#: A buffered event: its timestamp and its encoded JSON line (encoded once, on arrival).
Keyed = tuple[int, bytes]


def _key(item: Keyed) -> int:
    return item[0]


def _run_items(run: IO[bytes]) -> Iterator[Keyed]:
    """A spilled run: ``ts<TAB>json`` per line."""
    for line in run:
        ts, _, body = line.partition(b"\t")
        yield int(ts), body


@dataclass
class SpillSorter:
    """Sorts any number of events by ``ts`` in bounded memory (sorted runs + merge).

    Events are held as encoded lines (a few hundred bytes each, not a dict's kilobyte),
    so that the buffer holds many and nothing is encoded twice.
    """

    buffer_events: int = DEFAULT_SORT_BUFFER
    directory: Path | None = None
    runs: list[Path] = field(default_factory=list)
    _buffer: list[Keyed] = field(default_factory=list)

    def add(self, event: Event) -> None:
        if len(self._buffer) >= self.buffer_events:
            # Spill only when one more event arrives: a recording that fits the buffer
            # exactly never touches the disk.
            self._spill()
        # Kept until spilled: a compact copy (the default buffer of 200,000 plain
        # orjson results took 1.7 GB, see armorflow.jsonbytes).
        self._buffer.append((event["ts"], dumps_kept(event, orjson.OPT_APPEND_NEWLINE)))

    def _spill(self) -> None:
        self._buffer.sort(key=_key)
        fd, name = tempfile.mkstemp(prefix="armorflow-run-", suffix=".tsv", dir=self.directory)
        with os.fdopen(fd, "wb") as run:
            run.writelines(b"%d\t%s" % item for item in self._buffer)
        self.runs.append(Path(name))
        self._buffer = []

    def __len__(self) -> int:
        return len(self._buffer)

    def sorted_lines(self) -> Iterator[bytes]:
        """Every event added, as its JSON line, in ``ts`` order; stable for equal stamps."""
        self._buffer.sort(key=_key)
        if not self.runs:
            for _, line in self._buffer:
                yield line
            return
        files: list[IO[bytes]] = [run.open("rb") for run in self.runs]
        try:
            streams: list[Iterator[Keyed]] = [_run_items(f) for f in files]
            streams.append(iter(self._buffer))
            # Runs were spilled in arrival order and heapq.merge prefers earlier inputs
            # on ties, so equal timestamps keep their arrival order.
            for _, line in heapq.merge(*streams, key=_key):
                yield line
        finally:
            for f in files:
                f.close()

    def sorted_events(self) -> Iterator[Event]:
        for line in self.sorted_lines():
            event: Event = orjson.loads(line)
            yield event

    def cleanup(self) -> None:
        for run in self.runs:
            run.unlink(missing_ok=True)
        self.runs = []
        self._buffer = []


@dataclass
class RecordResult:
    events: int
    by_kind: Counter[str]
    messages: int
    rejects: Rejects
    spilled_runs: int
    out: Path
    seconds: float
    out_of_bound: int = 0
    missing_topics: list[str] = field(default_factory=list)


def _partial_path(out: Path) -> Path:
    """A sibling that keeps the compression suffix, renamed over ``out`` when complete."""
    return out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")


def record_topics(
    settings: KafkaSettings,
    topics: list[str],
    out: Path,
    *,
    from_beginning: bool = False,
    until: Until | None = None,
    max_events: int | None = None,
    sort_buffer: int = DEFAULT_SORT_BUFFER,
    on_progress: Callable[[int, int, int], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> RecordResult:
    """Copy ``topics`` into the recording ``out``; the public API of ``armorflow record``.

    Stops at the first of: ``max_events`` recorded, the ``until`` deadline, Ctrl-C, or,
    with ``from_beginning`` and no future deadline, the end of the topics as they were
    when recording started (a snapshot). ``on_progress(messages, events, snapshot_total)``
    is called after each message; ``on_ready()`` once every partition is assigned.
    """
    bound = until or Until(None, None)
    started = time.monotonic()
    rejects = Rejects()
    by_kind: Counter[str] = Counter()
    out_of_bound = 0
    count = 0
    sorter = SpillSorter(sort_buffer, out.parent)
    # From the beginning with no deadline still ahead, the copy is a snapshot: it ends at
    # the topics' end, and a past --until instant only bounds event time.
    until_end = from_beginning and (bound.deadline is None or bound.passed())
    deadline_applies = not until_end
    with TopicReader(settings, topics, from_beginning=from_beginning) as reader:
        if on_ready is not None:
            on_ready()
        total = reader.snapshot_messages if until_end else 0

        def _stop() -> bool:
            return (deadline_applies and bound.passed()) or (
                max_events is not None and count >= max_events
            )

        try:
            for batch in reader.batches(rejects, until_end=until_end, stop=_stop):
                for event in batch:
                    if bound.ts_bound_ns is not None and event["ts"] > bound.ts_bound_ns:
                        out_of_bound += 1
                        continue
                    sorter.add(event)
                    by_kind[event["kind"]] += 1
                    count += 1
                    if max_events is not None and count >= max_events:
                        break
                if on_progress is not None:
                    on_progress(reader.messages, count, total)
                if _stop():
                    break
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a live recording; what was read so far is kept.
        messages = reader.messages
        missing = list(reader.missing_topics)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(out)
    runs = len(sorter.runs)
    try:
        with open_recording(partial, "wb") as sink:
            for line in sorter.sorted_lines():  # zstd writers have no writelines()
                sink.write(line)
        partial.replace(out)
    finally:
        sorter.cleanup()
        partial.unlink(missing_ok=True)
    return RecordResult(
        events=count, by_kind=by_kind, messages=messages, rejects=rejects,
        spilled_runs=runs, out=out, seconds=time.monotonic() - started,
        out_of_bound=out_of_bound, missing_topics=missing,
    )


def record(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Recording to write: FILE.jsonl, .jsonl.zst or .gz.")
    ],
    topics: Annotated[
        str, typer.Option(help="'all' or event kinds / topic names, comma separated.")
    ] = "all",
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="Start at the oldest retained event; without --until, stop at the end.",
        ),
    ] = False,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after a duration (10s, 5m) or at an instant (ISO 8601); an instant "
            "also leaves out events stamped later.",
        ),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many events.")
    ] = None,
    sort_buffer: Annotated[
        int, typer.Option(min=1, help="Events sorted in memory before spilling a run to disk.")
    ] = DEFAULT_SORT_BUFFER,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
) -> None:
    """Copy event topics to a recording, one event per line, sorted by timestamp."""
    try:
        wanted = parse_topics(topics)
        bound = parse_until(until)
    except TopicSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--topics") from None
    except TimeSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--until") from None
    settings = kafka_settings(bootstrap_servers, kafka_option)
    with event_progress("msg", enabled=progress) as bar:
        task = bar.add_task("recording", total=None)

        def _progress(messages: int, events: int, total: int) -> None:
            bar.update(task, completed=messages, total=total or None,
                       description=f"recording: {events:,} events")

        def _ready() -> None:
            # Said once the partitions are assigned: from here on nothing new is missed.
            what = "snapshot of" if from_beginning and not until else "recording"
            bar.console.print(f"{what} {len(wanted)} topic(s) on "
                              f"{settings.bootstrap_servers}; Ctrl-C stops and keeps "
                              "what was read", highlight=False)

        # SIGTERM ends a live recording as Ctrl-C does: what was read is written out.
        try:
            with on_stop(_interrupt, (signal.SIGTERM,)):
                result = record_topics(
                    settings, wanted, out, from_beginning=from_beginning, until=bound,
                    max_events=max_events, sort_buffer=sort_buffer, on_progress=_progress,
                    on_ready=_ready,
                )
        except BrokerUnreachable as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(result.by_kind.items())) or "none"
    typer.echo(
        f"recorded {result.events:,} events ({kinds}) from {result.messages:,} messages "
        f"to {result.out} in {result.seconds:.1f} s"
    )
    if result.spilled_runs:
        typer.echo(f"sorted by merging {result.spilled_runs} spilled run(s)")
    if result.out_of_bound:
        typer.echo(f"left out {result.out_of_bound:,} event(s) stamped after --until")
    for topic in result.missing_topics:
        typer.echo(f"warning: topic {topic} does not exist; skipped", err=True)
    _report_rejects(result.rejects, "message item")


def _interrupt(signum: int) -> None:
    raise KeyboardInterrupt


def _report_rejects(rejects: Rejects, what: str) -> None:
    if not rejects.count:
        return
    typer.echo(f"rejected {rejects.count:,} {what}(s):", err=True)
    for sample in rejects.samples:
        typer.echo(f"  {sample}", err=True)
    if rejects.count > len(rejects.samples):
        typer.echo(f"  ... and {rejects.count - len(rejects.samples):,} more", err=True)
