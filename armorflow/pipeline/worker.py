"""The streaming pipeline: a Faust app whose one agent consumes every event topic and the
control topic, keeps windows and models in changelog-backed tables, and closes windows
on a timer: classifier → renderer → models topic, status topic and sink.

All profile-keyed topics share one partition count and murmur2 keys, so Faust's assignor
co-partitions them: a worker owns all of a profile's events, its control messages and
its table rows, and tables written with ``use_partitioner`` land in the same partition of
their changelog. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
import orjson

from armorflow import fetchpace
from armorflow.config import KafkaSettings
from armorflow.control import PHASE_COMPLETED, PHASE_FAILED, PHASE_MODELING, make_status
from armorflow.jsonbytes import dumps_kept
from armorflow.metrics import ComponentMetrics, SnapshotCollector, one, stalled
from armorflow.model import RULE_BUDGET, BehaviourModel
from armorflow.pipeline.ingest import BatchResult, Ingestor
from armorflow.pipeline.stages import ClosedWindow, Stages
from armorflow.pipeline.state import BUCKETS, ModelRows, RowKeyError, key_profile, row_key
from armorflow.pipeline.window import Window, WindowState
from armorflow.topics import (
    CONTROL_TOPIC,
    DEFAULT_PARTITIONS,
    EVENT_TOPICS,
    MODELS_TOPIC,
    STATUS_TOPIC,
    partition_for,
)

log = logging.getLogger(__name__)

Deliver = Callable[[ClosedWindow], dict[str, str] | None]

#: Longest wait between two attempts to close a window (the wait doubles from
#: PipelineConfig.close_retry_first_s up to this).
CLOSE_RETRY_MAX_S = 300.0
#: The reason a window without events ends Failed.
EMPTY_WINDOW = ("no event was modeled in the window ({outside} outside it, {late} late): a "
                "profile learned from nothing would deny everything, so none is written; "
                "check the agents' targets, or replay a recording with --rebase-ts now")
#: The reason a window past its rule budget ends Failed.
OVER_BUDGET = ("the model reached its budget of {budget} path rules and {over} more events "
               "that would add one were not modeled (most from {sources}): a profile without "
               "them would deny what the workload did, so none is written. Its file names "
               "look unbounded (generated per request or per record?), or a source sends "
               "names the workload never used: narrow the target, or raise --max-rules "
               "(pipeline.maxRules in the chart) and start the window again")
#: Seconds between two checks of the source partitions' log ends.
LOG_CHECK_EVERY_S = 5.0
#: How long the timer waits for a broker's answer about offsets. Faust's own request
#: timeout is 90 s: a request the broker never answers (seen under load) would stall
#: every window's close and the status for that long; the next tick simply asks again.
BROKER_QUERY_TIMEOUT_S = 15.0


@dataclass
class CloseAttempts:
    """A window whose closing failed: how often, and when it may be tried again."""

    failures: int = 0
    next_at: float = 0.0
    last_error: str = ""

    def failed(self, error: str, now: float, first_wait_s: float) -> None:
        self.failures += 1
        self.last_error = error
        self.next_at = now + min(CLOSE_RETRY_MAX_S, first_wait_s * 2 ** (self.failures - 1))


class ProfileTable(faust.Table[bytes, bytes]):
    """A table whose keys name a profile (:func:`armorflow.pipeline.state.key_profile`).

    Rows go to the changelog partition of their profile, the same partition number the
    profile has in every source topic, so a worker recovers exactly the rows of the
    profiles it owns after a restart or a rebalance.
    """

    def partition_for_key(self, key: bytes) -> int:
        try:
            profile = key_profile(key)
        except RowKeyError:
            profile = ""  # written by no armorflow worker: any partition will do
        return partition_for(profile, self.partitions or DEFAULT_PARTITIONS)




@dataclass
class PipelineConfig:
    settings: KafkaSettings
    app_id: str = "armorflow-pipeline"
    partitions: int = DEFAULT_PARTITIONS
    grace_s: float = 30.0
    processing_guarantee: str = "at_least_once"
    #: Messages per batch (each may hold hundreds of events: see armorflow.kafka).
    batch_size: int = 100
    batch_within_s: float = 0.2
    tick_s: float = 1.0
    status_every_s: float = 10.0
    classify: bool = True
    render: bool = True
    sink_url: str | None = None
    #: Longest a due window waits for this worker to catch up on its partitions.
    catch_up_s: float = 120.0
    #: Static group membership (KIP-345): a restarted worker with the same id takes its
    #: partitions back at once instead of waiting for its old session to expire.
    instance_id: str | None = None
    data_dir: Path | None = None
    #: Largest model document sent whole on armorflow.models (Kafka's default message
    #: limit is 1 MiB); a larger one goes by reference to what the sink wrote.
    max_model_message_bytes: int = 900_000
    #: A window whose model cannot be written is tried this many times, waiting
    #: close_retry_first_s after the first failure and twice as long after each next
    #: one, then ends as Failed with the last error as its reason.
    close_attempts: int = 6
    #: Pace aiokafka's fetch loop (armorflow/fetchpace.py): for the embedded broker,
    #: which answers an empty fetch at once instead of long-polling.
    fetch_pacing: bool = False
    close_retry_first_s: float = 5.0
    #: Port of /metrics, /healthz and /readyz (armorflow.metrics); 0: none.
    metrics_port: int = 0
    #: Most path rules (file rules and executed paths) one model holds while its window
    #: is open (armorflow.model.RULE_BUDGET); a window that goes past it ends Failed.
    max_rules: int | None = RULE_BUDGET
    extra: dict[str, Any] = field(default_factory=dict)


class PipelineWorker:
    """Builds the Faust app and owns the worker-side logic around it."""

    def __init__(self, config: PipelineConfig, deliver: Deliver | None = None) -> None:
        self.config = config
        self.stages = Stages.default(classify=config.classify, render=config.render)
        self.deliver = deliver if deliver is not None else _sink_deliverer(config.sink_url)
        self.app = self._build_app()
        self.ingestor = Ingestor(
            self.stages.path_mapper(), self._load_window, self._load_model,
            rule_budget=config.max_rules,
        )
        self._last_status = 0.0
        self._recovered: dict[str, BehaviourModel] | None = None
        self._close_failed: dict[str, CloseAttempts] = {}
        #: Windows being closed right now (each in a task of its own, off the timer).
        self._closing: dict[str, asyncio.Task[None]] = {}
        #: Profiles whose window changed since their last periodic status message.
        self._status_due: set[str] = set()
        #: Whether this worker read its owned windows from the table since (re)assignment.
        self._windows_loaded = False
        #: (topic, partition) -> the log end offset last seen (to notice it going back).
        self._log_ends: dict[tuple[str, int], int] = {}
        self._last_log_check = 0.0
        #: Times a source partition's log end went backwards (the broker lost messages).
        self.offset_regressions = 0
        #: Failed attempts to close a window, and windows that ended Failed (metrics).
        self.close_failures = 0
        self.windows_failed = 0
        #: When the timer last ran: the liveness probe's sign that the event loop turns.
        self.last_tick = time.monotonic()
        #: (topic, partition) -> last offset whose events were applied and persisted.
        self._processed: dict[tuple[str, int], int] = {}
        #: profile -> monotonic time its window first waited for this worker to catch up.
        self._waiting_since: dict[str, float] = {}
        self.rows = ModelRows()
        self.closed: list[str] = []

    # --- Faust wiring -------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        cfg = self.config
        # The consumer thread's fetch loop must not spin when a broker answers empty
        # fetches at once (the embedded one does; see armorflow/fetchpace.py).
        if cfg.fetch_pacing:
            fetchpace.install()
        app = faust.App(
            cfg.app_id,
            broker=f"kafka://{cfg.settings.bootstrap_servers.replace(',', ';kafka://')}",
            store="memory://",
            topic_partitions=cfg.partitions,
            processing_guarantee=cfg.processing_guarantee,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            table_standby_replicas=0,
            datadir=str(cfg.data_dir) if cfg.data_dir else None,
            # A restarted or killed worker's partitions come back within seconds, not
            # after the default one-minute rebalance timeout.
            broker_session_timeout=10,
            broker_heartbeat_interval=1,
            broker_rebalance_timeout=12,
            consumer_group_instance_id=cfg.instance_id,
            # Messages carry hundreds of events each: a deep read-ahead per partition
            # (Faust's default is 4096 messages) would hold millions of events in memory
            # whenever the worker is behind.
            stream_buffer_maxsize=32,
            broker_credentials=cfg.settings.faust_credentials(),
            **cfg.extra,
        )
        raw: faust.Schema[bytes, bytes] = faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        self.windows_table = ProfileTable(
            app, name="windows", partitions=cfg.partitions, schema=raw,
            key_type=bytes, value_type=bytes,
        )
        app.tables.add(self.windows_table)
        # One row per model entry (a file rule, a syscall...), not one row per model: a
        # batch writes only what changed, and no row grows with the model.
        self.models_table = ProfileTable(
            app, name="models", partitions=cfg.partitions, schema=raw,
            key_type=bytes, value_type=bytes,
        )
        app.tables.add(self.models_table)
        source = app.topic(
            *EVENT_TOPICS, CONTROL_TOPIC, key_serializer="raw", value_serializer="raw",
            partitions=cfg.partitions,
        )
        self.models_topic = app.topic(
            MODELS_TOPIC, key_serializer="raw", value_serializer="raw", partitions=cfg.partitions
        )
        self.status_topic = app.topic(
            STATUS_TOPIC, key_serializer="raw", value_serializer="raw", partitions=cfg.partitions
        )

        @app.agent(source, name="ingest")
        async def ingest(stream: faust.StreamT[bytes]) -> None:
            # take_events (a faust-streaming Stream method StreamT does not declare) gives
            # the messages' offsets, which closing uses to know the worker caught up.
            batches = cast(Any, stream).take_events(cfg.batch_size, within=cfg.batch_within_s)
            async for events in batches:
                result = self.ingestor.apply_messages(
                    [(e.message.topic, e.value) for e in events])
                await self._persist(result)
                for e in events:
                    tp = (e.message.topic, e.message.partition)
                    self._processed[tp] = max(self._processed.get(tp, -1), e.message.offset)

        async def tick() -> None:
            await self._tick()

        app.timer(cfg.tick_s)(tick)

        def _forget(*_args: Any, **_kwargs: Any) -> None:
            self._forget()

        app.on_partitions_revoked.connect(_forget)
        app.on_partitions_assigned.connect(_forget)
        return app

    def _load_window(self, profile: str) -> Window | None:
        raw = self.windows_table.get(profile.encode())
        if not raw:
            return None
        try:
            return Window.from_json(orjson.loads(raw))
        except (ValueError, TypeError) as exc:
            # A row this worker cannot read must not stop it at every restart.
            log.error("window of %s unreadable in the table, ignored: %s", profile, exc)
            return None

    def _load_model(self, profile: str) -> BehaviourModel | None:
        if self._recovered is None:
            # First miss since (re)assignment: rebuild every owned model in one scan.
            self.rows.forget()
            self._recovered = self.rows.load(self.models_table.items())
        return self._recovered.pop(profile, None)

    def _forget(self) -> None:
        self.ingestor.forget_cache()
        self._recovered = None
        self._windows_loaded = False

    async def _persist(self, result: BatchResult) -> None:
        for profile in result.reset:
            self._delete_rows(profile)
        for profile in result.deleted:
            # delete forgets the profile: its rows go, and so does its memory.
            self._delete_rows(profile)
            if self._recovered is not None:
                self._recovered.pop(profile, None)
            key = profile.encode()
            if key in self.windows_table:
                del self.windows_table[key]
            self._close_failed.pop(profile, None)
            self._status_due.discard(profile)
        for profile in result.changed_windows:
            window = self.ingestor.windows.get(profile)
            if window is not None:
                self.windows_table[profile.encode()] = dumps_kept(window.to_json())
                self._status_due.add(profile)
        for profile in result.changed_models:
            model = self.ingestor.models.get(profile)
            if model is None:
                continue
            for key, row in self.rows.changed_rows(profile, model, model.drain_dirty()):
                self.models_table[key] = row
        for profile in result.started:
            await self._status(profile, PHASE_MODELING)

    def _delete_rows(self, profile: str) -> None:
        """Remove the profile's model rows from the table (a fresh or deleted window)."""
        for bucket in range(BUCKETS):
            key = row_key(profile, bucket)
            if key in self.models_table:
                del self.models_table[key]
        self.rows.forget(profile)

    async def _status(
        self, profile: str, phase: str, resource: dict[str, str] | None = None
    ) -> None:
        window = self.ingestor.windows.get(profile)
        model = self.ingestor.models.get(profile)
        counts = {**(model.counts() if model else {})}
        if window is not None:
            counts |= {
                "events": window.events, "droppedOutside": window.dropped_outside,
                "droppedLate": window.dropped_late,
                "droppedOverBudget": window.dropped_over_budget,
            }
        await self.status_topic.send(
            key=profile.encode(),
            value=make_status(
                profile, phase, counts=counts, resource=resource, source=self.config.app_id
            ),
        )

    # --- closing windows ------------------------------------------------------------------

    async def _tick(self) -> None:
        """Expire held events, start closing due windows, send periodic status.

        Closing runs in a task per window, so a slow or failing sink delays only its own
        window; the timer itself does work proportional to the open windows.
        """
        self.last_tick = time.monotonic()  # before the early return: rebalancing is alive
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            return
        self.ingestor.expire_pending()
        now = time.time_ns()
        if time.monotonic() - self._last_log_check >= LOG_CHECK_EVERY_S:
            self._last_log_check = time.monotonic()
            await self._check_log_ends()
        if not self._windows_loaded:
            # Windows this worker owns but has not touched since it (re)started: read once
            # per assignment, not on every tick.
            for key in list(self.windows_table.keys()):
                try:
                    self.ingestor.window(key_profile(key))
                except RowKeyError:
                    continue
            self._windows_loaded = True
        # A window past its rule budget ends now: its model cannot become a profile, and
        # holding it until its end (hours away) would keep the memory the budget bounds.
        while self.ingestor.over_budget:
            profile = self.ingestor.over_budget.pop()
            window = self.ingestor.windows.get(profile)
            if (window is not None and window.state is WindowState.OPEN
                    and profile not in self._closing):
                self._closing[profile] = asyncio.create_task(self._try_close(window, now))
        for window in self.ingestor.due(now, self.config.grace_s):
            profile = window.profile
            if profile in self._closing:
                continue
            attempts = self._close_failed.get(profile)
            if attempts is not None and time.monotonic() < attempts.next_at:
                continue
            if not await self._caught_up(profile):
                continue
            self._closing[profile] = asyncio.create_task(self._try_close(window, now))
        if time.monotonic() - self._last_status >= self.config.status_every_s:
            self._last_status = time.monotonic()
            due, self._status_due = self._status_due, set()
            for profile in sorted(due):
                current = self.ingestor.windows.get(profile)
                if current is not None and current.state is WindowState.OPEN:
                    await self._status(profile, PHASE_MODELING)

    def _refusal(self, window: Window) -> str | None:
        """Why no model may be made of the window, or None."""
        if window.events == 0:
            # A profile learned from nothing denies everything: writing it would stop the
            # workload, or (worse) look like a learned profile. Say why instead.
            log.warning("window of %s closed with no events modeled (%d outside it, %d "
                        "late): Failed", window.profile, window.dropped_outside,
                        window.dropped_late)
            return EMPTY_WINDOW.format(outside=window.dropped_outside,
                                       late=window.dropped_late)
        if window.dropped_over_budget:
            log.warning("window of %s closed past its rule budget (%d rules not modeled): "
                        "Failed", window.profile, window.dropped_over_budget)
            top = sorted(window.over_budget_sources.items(), key=lambda kv: -kv[1])[:3]
            return OVER_BUDGET.format(
                budget=self.config.max_rules, over=window.dropped_over_budget,
                sources=", ".join(f"{src} ({n})" for src, n in top) or "unknown")
        return None

    async def _try_close(self, window: Window, now: int) -> None:
        """Close one window; on failure retry with backoff, and after ``close_attempts``
        give up: the window ends as Failed with the reason, and its status says so."""
        profile = window.profile
        refused = self._refusal(window)
        if refused is not None:
            try:
                await self._fail(window, refused)
            finally:
                self._closing.pop(profile, None)
            return
        try:
            await self._close(window, now)
            self._close_failed.pop(profile, None)
        except Exception as exc:
            self.close_failures += 1
            attempts = self._close_failed.setdefault(profile, CloseAttempts())
            attempts.failed(f"{type(exc).__name__}: {exc}", time.monotonic(),
                            self.config.close_retry_first_s)
            if attempts.failures >= self.config.close_attempts:
                log.error("closing the window of %s failed %d times, giving up: %s",
                          profile, attempts.failures, attempts.last_error)
                await self._fail(window, f"the model could not be written after "
                                         f"{attempts.failures} attempts: {attempts.last_error}")
            else:
                # A model that cannot be rendered or delivered must not stop the other
                # windows from closing; one line per attempt, the traceback once.
                log.warning("closing the window of %s failed (attempt %d of %d, next in "
                            "%.0f s): %s", profile, attempts.failures,
                            self.config.close_attempts,
                            attempts.next_at - time.monotonic(), attempts.last_error,
                            exc_info=attempts.failures == 1)
                await self.status_topic.send(
                    key=profile.encode(),
                    value=make_status(profile, PHASE_MODELING,
                                      message=f"closing failed (attempt {attempts.failures} "
                                              f"of {self.config.close_attempts}): "
                                              f"{attempts.last_error}",
                                      source=self.config.app_id),
                )
        finally:
            self._closing.pop(profile, None)

    async def _fail(self, window: Window, reason: str) -> None:
        """End the window without a model; its status (and the policy's) says why."""
        profile = window.profile
        self.windows_failed += 1
        self.ingestor.mark_failed(profile, time.time_ns())
        self.windows_table[profile.encode()] = dumps_kept(window.to_json())
        # No model will be made of it: its rows go, or a restart would load them again.
        self._delete_rows(profile)
        if self._recovered is not None:
            self._recovered.pop(profile, None)
        self._close_failed.pop(profile, None)
        counts = {"events": window.events, "droppedOutside": window.dropped_outside,
                  "droppedLate": window.dropped_late,
                  "droppedOverBudget": window.dropped_over_budget}
        await self.status_topic.send(
            key=profile.encode(),
            value=make_status(profile, PHASE_FAILED, counts=counts, message=reason,
                              source=self.config.app_id),
        )

    async def _check_log_ends(self) -> None:
        """Notice a broker that lost acknowledged messages: a source partition's log end
        below what it was, or below what this worker already applied.

        Kafka never moves a log end back; a broker that crashed before its data reached
        the disk does (the embedded noida-db can, see docs/brokers.md). The offsets the
        lost messages had are then given to new messages, which a consumer already past
        them would skip: the worker says so, and reads the partition again from its new
        end (applying a message twice changes no model).
        """
        try:
            tps = [tp for tp in self.app.consumer.assignment()
                   if tp.topic in EVENT_TOPICS or tp.topic == CONTROL_TOPIC]
            if not tps:
                return
            ends = await asyncio.wait_for(self.app.consumer.highwaters(*tps),
                                          BROKER_QUERY_TIMEOUT_S)
        except Exception:  # the broker is away or slow: the next check will tell
            return
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            key = (tp.topic, tp.partition)
            seen = self._log_ends.get(key, -1)
            applied = self._processed.get(key, -1)
            self._log_ends[key] = end
            if end >= seen and applied < end:
                continue
            self.offset_regressions += 1
            log.error(
                "%s[%d]: the broker's log end went back from %d to %d (this worker had "
                "applied up to %d): acknowledged messages were lost by the broker; reading "
                "the partition again from offset %d", tp.topic, tp.partition, max(seen, 0),
                end, applied, end)
            self._processed[key] = end - 1
            await self.app.consumer.seek(tp, end)

    async def _caught_up(self, profile: str) -> bool:
        """True when this worker has applied every message already in the profile's
        partition of each source topic.

        A worker that restarted or took over partitions can be behind: the wall clock says
        the window is due while in-window events still wait in the topics. Closing then
        would lose them, so the window waits (at most ``catch_up_s``) until the worker has
        read up to the high watermark it finds now.
        """
        from faust.types import TP

        partition = partition_for(profile, self.config.partitions)
        tps = [TP(topic, partition) for topic in (*EVENT_TOPICS, CONTROL_TOPIC)]
        try:
            highwaters = await asyncio.wait_for(self.app.consumer.highwaters(*tps),
                                                BROKER_QUERY_TIMEOUT_S)
        except Exception:  # the broker is away or slow: try again on the next tick
            return False
        behind = []
        for tp in tps:
            end = highwaters.get(tp)
            if not end:
                continue
            done = self._processed.get((tp.topic, tp.partition))
            if done is None:
                try:
                    position = await asyncio.wait_for(self.app.consumer.position(tp),
                                                      BROKER_QUERY_TIMEOUT_S)
                except Exception:  # as above: the next tick asks again
                    return False
                if position is not None and position >= end:
                    continue
            elif done + 1 >= end:
                continue
            behind.append(tp.topic)
        if not behind:
            self._waiting_since.pop(profile, None)
            return True
        first = self._waiting_since.setdefault(profile, time.monotonic())
        if time.monotonic() - first >= self.config.catch_up_s:
            log.warning("closing %s while still behind on %s", profile, behind)
            self._waiting_since.pop(profile, None)
            return True
        return False

    async def _close(self, window: Window, now: int) -> None:
        profile = window.profile
        model = self.ingestor.model(profile)
        closed = ClosedWindow(
            profile=profile, namespace=window.namespace, policy=window.policy,
            enforcer=window.enforcer, start_ts=window.start_ts, end_ts=window.end_ts,
            model=BehaviourModel.from_dict(model.to_dict()),
            counts={"events": window.events, "droppedOutside": window.dropped_outside},
        )
        closed = await asyncio.to_thread(self.stages.close, closed)
        resource: dict[str, str] | None = None
        if self.deliver is not None:
            resource = await asyncio.to_thread(self.deliver, closed)
        document = closed.document() | {"pipeline": self.config.app_id}
        await self.models_topic.send(
            key=profile.encode(),
            value=model_message(document, resource, self.config.max_model_message_bytes),
        )
        self.ingestor.mark_closed(profile, now)
        self.windows_table[profile.encode()] = dumps_kept(window.to_json())
        await self._status(profile, PHASE_COMPLETED, resource)
        self.closed.append(profile)
        log.info("window of %s closed: %s", profile, model.counts())

    # --- running ------------------------------------------------------------------------------

    def run(self, loglevel: str = "info") -> None:
        """Run the worker until SIGINT/SIGTERM."""
        worker = faust.Worker(self.app, loglevel=loglevel, override_logging=False)
        server = worker_metrics(self).serve(self.config.metrics_port)
        try:
            worker.execute_from_commandline()
        finally:
            if server is not None:
                server.stop()


def model_message(document: dict[str, Any], resource: dict[str, str] | None,
                  max_bytes: int) -> bytes:
    """The ``armorflow.models`` value of a closed window: the whole document when it fits
    ``max_bytes``; else the same document with the model (and, if still too large, the
    profiles) replaced by their sizes and SHA-256, and ``resource`` naming where the sink
    wrote them in full. The topic is compacted by profile, so one message per window: a
    reference, not chunks that compaction would tear apart."""
    whole = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    if len(whole) <= max_bytes:
        return whole
    slim = dict(document, complete=False, resource=resource or {}, omitted={})
    for name in ("model", "apparmor", "seccomp"):
        value = orjson.dumps(slim[name], option=orjson.OPT_SORT_KEYS)
        slim["omitted"][name] = {"bytes": len(value),
                                 "sha256": hashlib.sha256(value).hexdigest()}
        slim[name] = None
        out = orjson.dumps(slim, option=orjson.OPT_SORT_KEYS)
        if len(out) <= max_bytes:
            break
    if not resource:
        log.error("the model document of %s (%d bytes) is over %d bytes and no sink wrote "
                  "it: armorflow.models carries only its digest", document.get("profile"),
                  len(whole), max_bytes)
    return out


def _sink_deliverer(url: str | None) -> Deliver | None:
    if not url:
        return None
    from armorflow.pipeline.deliver import SinkDeliverer

    return SinkDeliverer(url)


# --- metrics and probes (armorflow.metrics) -----------------------------------------------

#: The timer runs every tick_s; this many ticks missed and the event loop is stuck.
STALLED_TICKS = 30


def worker_metrics(worker: PipelineWorker) -> ComponentMetrics:
    """The worker's counters and gauges, liveness (the timer ticks) and readiness
    (recovered and not rebalancing: a worker with no partitions is ready too, idle)."""
    prefix = "armorflow_pipeline"
    limit_s = max(60.0, STALLED_TICKS * worker.config.tick_s)
    return (
        ComponentMetrics()
        .counters(SnapshotCollector(prefix, one(worker.ingestor.stats.as_dict)))
        .counters(SnapshotCollector(prefix, one(lambda: _worker_counters(worker))))
        .counters(SnapshotCollector(prefix, one(lambda: _worker_gauges(worker)),
                                    gauges=frozenset(WORKER_GAUGES)))
        .liveness(stalled("the pipeline's timer", lambda: time.monotonic() - worker.last_tick,
                          limit_s))
        .readiness(lambda: _worker_unready(worker))
    )


WORKER_GAUGES = ("windows_open", "windows_closing", "windows_retrying", "held_events",
                 "held_profiles", "models_in_memory", "source_partitions")


def _worker_counters(worker: PipelineWorker) -> dict[str, int]:
    return {"windows_closed": len(worker.closed), "close_failures": worker.close_failures,
            "windows_failed": worker.windows_failed,
            "offset_regressions": worker.offset_regressions}


def _worker_gauges(worker: PipelineWorker) -> dict[str, int]:
    # Read from the metrics thread: list() copies each dict in one step.
    windows = list(worker.ingestor.windows.values())
    held = list(worker.ingestor.pending.values())
    # Never ``app.consumer``: the property makes the consumer when there is none yet, and
    # made from this thread it would race the worker's own (see _worker_unready).
    consumer = getattr(worker.app, "_consumer", None)
    try:
        assigned = [tp for tp in consumer.assignment()
                    if tp.topic in EVENT_TOPICS or tp.topic == CONTROL_TOPIC] if consumer else []
    except Exception:  # a consumer not started yet
        assigned = []
    return {
        "windows_open": sum(1 for w in windows if w.state is WindowState.OPEN),
        "windows_closing": len(worker._closing),
        "windows_retrying": len(worker._close_failed),
        "held_events": sum(len(h.events) for h in held),
        "held_profiles": len(held),
        "models_in_memory": len(worker.ingestor.models),
        # The partitions of the source topics this worker owns (its share of profiles).
        "source_partitions": len(assigned),
    }


def _worker_unready(worker: PipelineWorker) -> list[str]:
    app = worker.app
    # The probes run in the metrics thread. Faust's ``tables.recovery`` property makes the
    # Recovery service when there is none yet: asked from here while the worker starts,
    # it made a second one, the worker started the first and signalled the second, and
    # recovery never finished (a worker stuck at "Recovery: Starting..." under load).
    # Read what exists, make nothing.
    recovery = getattr(app.tables, "_recovery", None)
    problems = []
    if recovery is None or not recovery.completed.is_set():
        problems.append("not started: joining the group or recovering the tables")
    if app.rebalancing:
        problems.append("rebalancing")
    if getattr(app, "in_recovery", False):
        problems.append("recovering the tables from their changelogs")
    return problems
