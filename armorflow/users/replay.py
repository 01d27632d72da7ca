"""``armorflow replay``: publish a recording to the event topics, at full or original speed.

Pacing follows the events' own clock: event ``i`` is due ``(ts_i - ts_0) / speed`` after
the replay started, measured from that one start, so sleeps never accumulate drift.
Before sleeping, the producer's pending batches are flushed, so that an event is on the
broker when it is due, not when a batch of 500 fills up. A recording out of time order is
replayed in file order (a late line is published at once).

Bad lines are skipped, counted and reported with their line numbers; the good lines
around them are published. A truncated or corrupt compressed recording is published up
to the damage, reported in one line, and the exit status is 3
(:mod:`armorflow.users.recording`). Replaying a recording twice publishes every event twice, which
changes no model: models are idempotent unions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt, kafka_settings
from armorflow.config import KafkaSettings
from armorflow.events import Rejects
from armorflow.kafka import DeliveryError, EventProducer
from armorflow.users.progress import event_progress
from armorflow.users.recording import (
    RecordingReport,
    open_by_content,
    read_errors,
    read_recording,
    sniff_compression,
)
from armorflow.users.timespec import TimeSpecError, parse_instant_ns

#: Shortest wait worth a flush and a sleep; shorter gaps are published back to back.
_MIN_SLEEP_S = 0.002


@dataclass
class ReplayResult:
    published: int
    by_kind: Counter[str]
    rejects: Rejects
    seconds: float
    #: Valid events left out by ``only_profiles``.
    filtered: int = 0
    #: ts shift applied by --rebase-ts (0 without it).
    shift_ns: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    interrupted: bool = False
    #: What reading the file found besides events (damage, a misleading name).
    recording: RecordingReport | None = None

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else float(self.published)


@dataclass
class ReplayOptions:
    #: Replay speed relative to the recording (None: as fast as possible).
    speed: float | None = None
    #: Shift every ts so that the first event is stamped at this instant (ns).
    rebase_to_ns: int | None = None
    #: Rewrite every event's profile to this name.
    profile: str | None = None
    #: Publish only events of these profiles (as recorded, before any rewrite).
    only_profiles: frozenset[str] | None = None
    batch_size: int = 500
    extra_producer_config: dict[str, object] = field(default_factory=dict)


def count_lines(path: Path) -> int:
    """Lines in a (possibly compressed) recording, for the progress bar's total (up to
    any damage: the replay itself reports that)."""
    n = 0
    with open_by_content(path, sniff_compression(path)) as stream:
        try:
            while chunk := stream.read(1 << 20):
                n += chunk.count(b"\n")
        except read_errors():
            pass
    return n


def parse_speed(text: str) -> float | None:
    """``max`` (None) or a positive factor."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise typer.BadParameter("use 'max' or a positive number", param_hint="--speed") from None
    if not speed > 0:
        raise typer.BadParameter("must be > 0", param_hint="--speed")
    return speed


def replay_file(
    settings: KafkaSettings,
    path: Path,
    options: ReplayOptions | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Publish the valid events of ``path``; the public API of ``armorflow replay``.

    ``on_progress(lines_read, published)`` is called every few hundred events.
    """
    opts = options or ReplayOptions()
    rejects = Rejects()
    by_kind: Counter[str] = Counter()
    producer = EventProducer(settings, batch_size=opts.batch_size,
                             extra=dict(opts.extra_producer_config))
    started = time.monotonic()
    first_ts: int | None = None
    last_ts: int | None = None
    shift = 0
    published = 0
    filtered = 0
    interrupted = False
    events, report = read_recording(path, rejects)
    try:
        for event in events:
            if opts.only_profiles is not None and event["profile"] not in opts.only_profiles:
                filtered += 1
                continue
            ts: int = event["ts"]
            if first_ts is None:
                first_ts = ts
                if opts.rebase_to_ns is not None:
                    shift = opts.rebase_to_ns - ts
            if opts.speed is not None:
                due = started + (ts - first_ts) / 1e9 / opts.speed
                if due - time.monotonic() > _MIN_SLEEP_S:
                    producer.flush()
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
            if shift:
                event["ts"] = ts + shift
            if opts.profile is not None:
                event["profile"] = opts.profile
            producer.publish(event)
            by_kind[event["kind"]] += 1
            published += 1
            last_ts = event["ts"]
            if on_progress is not None and published % 256 == 0:
                on_progress(published + filtered + rejects.count, published)
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C: what was published so far is still flushed.
    producer.flush()
    if on_progress is not None:
        on_progress(published + filtered + rejects.count, published)
    return ReplayResult(
        published=published, by_kind=by_kind, rejects=rejects, filtered=filtered,
        seconds=time.monotonic() - started, shift_ns=shift,
        first_ts=None if first_ts is None else first_ts + shift, last_ts=last_ts,
        interrupted=interrupted, recording=report,
    )


#: A recording whose newest event is older than this, replayed without --rebase-ts, is
#: said to miss a window opened now.
STALE_AFTER_S = 60.0


def stale_warning(result: ReplayResult, started_ns: int, *, rebased: bool) -> str:
    """One line when every replayed event is stamped well before the replay started: a
    modeling window opened now would count them all as outside it, and end without a
    model. Empty when the timestamps are fine or were rebased."""
    if rebased or result.last_ts is None or not result.published:
        return ""
    age_s = (started_ns - result.last_ts) / 1e9
    if age_s <= STALE_AFTER_S:
        return ""
    return (f"warning: the newest replayed event is stamped {age_s / 3600:.1f} h before now; "
            "a window opened now counts every event as outside it (no model is written): "
            "replay with --rebase-ts now, or open the window at the recording's time "
            "(armorflow window start --start-ts)")


def replay(
    recording: Annotated[
        Path,
        typer.Argument(metavar="FILE", exists=True, dir_okay=False,
                       help="A recording: .jsonl, .jsonl.zst or .jsonl.gz."),
    ],
    speed: Annotated[
        str,
        typer.Option(help="'max', or N: the recorded gaps divided by N (1.0: as recorded)."),
    ] = "max",
    rebase_ts: Annotated[
        str | None,
        typer.Option(
            "--rebase-ts",
            help="Shift timestamps so the first event falls at this instant: 'now' or ISO 8601.",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Rewrite every event's profile to this name.")
    ] = None,
    only_profile: Annotated[
        list[str] | None,
        typer.Option(help="Publish only events of this recorded profile (repeatable)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
) -> None:
    """Publish a recording to the event topics; bad lines are reported, the rest goes through."""
    if profile is not None and not profile.strip():
        raise typer.BadParameter("must not be empty", param_hint="--profile")
    try:
        rebase = parse_instant_ns(rebase_ts) if rebase_ts is not None else None
    except TimeSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rebase-ts") from None
    opts = ReplayOptions(
        speed=parse_speed(speed), rebase_to_ns=rebase, profile=profile,
        only_profiles=frozenset(only_profile) if only_profile else None,
    )
    settings = kafka_settings(bootstrap_servers, kafka_option)
    total = count_lines(recording)
    started_ns = time.time_ns()
    with event_progress("events", enabled=progress) as bar:
        task = bar.add_task("replaying", total=total)

        def _progress(lines: int, published: int) -> None:
            bar.update(task, completed=lines, description=f"replaying: {published:,} published")

        try:
            result = replay_file(settings, recording, opts, on_progress=_progress)
        except DeliveryError as exc:
            typer.echo(f"replay failed: {exc} (brokers: {settings.bootstrap_servers})", err=True)
            raise typer.Exit(1) from None
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(result.by_kind.items())) or "none"
    typer.echo(
        f"published {result.published:,} events ({kinds}) in {result.seconds:.1f} s: "
        f"{result.rate:,.0f} events/s"
    )
    if result.filtered:
        typer.echo(f"left out {result.filtered:,} event(s) of other profiles")
    if result.shift_ns:
        typer.echo(f"timestamps shifted by {result.shift_ns / 1e9:+.3f} s")
    stale = stale_warning(result, started_ns, rebased=rebase is not None)
    if stale:
        typer.echo(stale, err=True)
    if result.rejects.count:
        typer.echo(f"rejected {result.rejects.count:,} line(s):")
        for sample in result.rejects.samples:
            typer.echo(f"  {sample}")
        hidden = result.rejects.count - len(result.rejects.samples)
        if hidden > 0:
            typer.echo(f"  ... and {hidden:,} more")
    notes = result.recording.notes("published what was read") if result.recording else []
    for note in notes:
        typer.echo(note, err=True)
    if result.interrupted:
        typer.echo("interrupted: the rest of the recording was not published", err=True)
        raise typer.Exit(130)
    if result.recording is not None and result.recording.damage is not None:
        raise typer.Exit(3)
