"""The node agent: sources -> attribution -> publisher, in one loop.

Every observation a source yields is attributed to a profile under modeling (or counted
and dropped: host process, untargeted container, opted-out enforcer), completed into a
schema v1 event and published. Sources with a durable position (the audit log follower)
commit it only once the publisher reports every event polled before it as delivered or
spooled (:meth:`~armorflow.agents.publish.Publisher.durable_seq`), so a crash or restart
neither skips nor, on a clean stop, repeats.

Targets come from the operator's compacted ``armorflow.targets`` topic
(:class:`TargetsFeed`), or from a file / a single local profile for runs off-cluster.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from armorflow.agents.attribution import (
    Attribution,
    Attributor,
    ChainResolver,
    KubeResolver,
    Resolver,
    StaticResolver,
    Target,
    TargetSet,
    scan_targeted_containers,
)
from armorflow.agents.audit.follow import Position
from armorflow.agents.audit.observe import Observation
from armorflow.agents.audit.source import DEFAULT_AUDIT_LOG_PATHS, AuditSource
from armorflow.agents.publish import Publisher
from armorflow.config import KafkaSettings
from armorflow.counters import CounterSet
from armorflow.events import KIND_FIELDS, OPTIONAL_FIELDS, Event, EventError
from armorflow.metrics import ComponentMetrics, SnapshotCollector, one, stalled
from armorflow.topics import TARGETS_TOPIC

log = logging.getLogger(__name__)

#: Seconds between stats lines in the log.
STATS_EVERY_S: Final = 60.0
#: Seconds between two snapshots of the stats for the metrics endpoint.
SNAPSHOT_EVERY_S: Final = 1.0
#: The loop steps every fraction of a second; this long without a step, it is stuck.
STALLED_S: Final = 60.0


class Source(Protocol):
    """What the agent loop needs from a source of observations."""

    def poll(self, timeout_s: float = 0.5) -> list[Observation]: ...

    def mark(self) -> Position | None: ...

    def commit(self, position: Position | None = None) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EventSource(Protocol):
    """A source of complete, attributed events (the eBPF tracer)."""

    def poll(self, timeout_s: float = 0.5) -> list[Event]: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class TracerFeed:
    """The eBPF tracer as an agent source; its targets follow the targeted containers.

    Every ``rescan_s`` the live containers are matched against the targets (pid -> cgroup
    -> container -> pod -> target) and their mount namespaces handed to the tracer, which
    filters in the kernel. Events of an enforcer a container opted out of are dropped.
    """

    def __init__(self, tracer: Any, attributor: Attributor, node: str, rescan_s: float = 2.0,
                 *, owns_tracer: bool = True):
        self.tracer = tracer
        self.owns_tracer = owns_tracer
        self.attributor = attributor
        self.node = node
        self.rescan_s = rescan_s
        self._by_mntns: dict[int, tuple[int, Attribution]] = {}
        self._last_scan = float("-inf")
        self.opted_out = 0

    def rescan(self) -> None:
        self._last_scan = time.monotonic()
        live = scan_targeted_containers(self.attributor)
        for mntns in [ns for ns in self._by_mntns if ns not in live
                      or live[ns].attribution != self._by_mntns[ns][1]]:
            target_id, attribution = self._by_mntns.pop(mntns)
            self.tracer.remove_target(target_id)
            log.info("tracer: %s (%s) left", attribution.container_id[:12], attribution.profile)
        for mntns, container in live.items():
            if mntns in self._by_mntns:
                continue
            a = container.attribution
            target_id = self.tracer.add_target(replace(a, node=self.node), mntns=mntns)
            self._by_mntns[mntns] = (target_id, a)

    def poll(self, timeout_s: float = 0.5) -> list[Event]:
        if time.monotonic() - self._last_scan >= self.rescan_s:
            self.rescan()
        allowed = {(a.profile, a.container_id): a for _, a in self._by_mntns.values()}
        out = []
        for event in self.tracer.poll(int(timeout_s * 1000)):
            attribution = allowed.get((event["profile"], event["container_id"]))
            if attribution is not None and not attribution.allows(event["kind"]):
                self.opted_out += 1
                continue
            out.append(event)
        return out

    def stats(self) -> dict[str, Any]:
        return {"mode": "bpf", "containers": len(self._by_mntns), "opted_out": self.opted_out,
                **self.tracer.stats().as_dict()}

    def close(self) -> None:
        if self.owns_tracer:
            self.tracer.stop()
            return
        for target_id, _ in self._by_mntns.values():
            self.tracer.remove_target(target_id)
        self._by_mntns.clear()


class TargetsFeed:
    """Reads the whole compacted targets topic, then follows it (no consumer group state)."""

    def __init__(self, settings: KafkaSettings, node: str):
        self.consumer = Consumer(settings.librdkafka(**{
            "group.id": f"armorflow-agent-{node}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 2,
        }))
        self._assigned = False

    @property
    def assigned(self) -> bool:
        """Whether the topic was found and assigned (Kafka was reached at least once)."""
        return self._assigned

    def _assign(self) -> bool:
        try:
            meta = self.consumer.list_topics(TARGETS_TOPIC, timeout=2)
        except Exception as exc:  # broker away: retry on the next poll
            log.debug("targets topic metadata unavailable: %s", exc)
            return False
        topic = meta.topics.get(TARGETS_TOPIC)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        self.consumer.assign([TopicPartition(TARGETS_TOPIC, p, OFFSET_BEGINNING)
                              for p in topic.partitions])
        self._assigned = True
        return True

    def poll(self, targets: TargetSet, timeout_s: float = 0.0) -> int:
        """Apply the messages available now; returns how many."""
        if not self._assigned and not self._assign():
            return 0
        n = 0
        for msg in self.consumer.consume(num_messages=1000, timeout=timeout_s):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("targets topic: %s", err)
                continue
            targets.apply(msg.key(), msg.value())
            n += 1
        return n

    def close(self) -> None:
        self.consumer.close()


class LocalAttributor:
    """Off-cluster runs: every observation belongs to one profile (``--local-profile``)."""

    def __init__(self, profile: str):
        self.attribution = Attribution(profile, frozenset({"apparmor", "seccomp"}))
        self.counters: dict[str, int] = {"attributed": 0}

    def for_label(self, pid: int, label: str | None) -> Attribution | None:
        self.counters["attributed"] += 1
        return self.attribution


class EventDeduplicator:
    """Drops an event whose behaviour was already published for its profile.

    The model keeps only the behaviour (kind and kind fields) per profile, so a repeat
    (a process calling the same syscall a million times under ``SCMP_ACT_LOG``) adds
    nothing. The memory is a bounded LRU: an evicted behaviour is simply sent again,
    which the model's union absorbs. It is forgotten whenever the targets change, so a
    new modeling window for a profile learns everything afresh.
    """

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self.dropped = 0

    @staticmethod
    def key(event: Event) -> tuple[Any, ...]:
        kind = event["kind"]
        fields = tuple(event.get(name) for name in KIND_FIELDS[kind])
        extra = tuple(event.get(name) for name in OPTIONAL_FIELDS.get(kind, {}))
        return (event["profile"], kind, fields, extra)

    def first_time(self, event: Event) -> bool:
        key = self.key(event)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.dropped += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def clear(self) -> None:
        self._seen.clear()


@dataclass
class AgentCounters(CounterSet):
    observations: int = 0
    published: int = 0
    unattributed: int = 0
    opted_out: int = 0
    invalid: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)


class Agent:
    """Runs the loop until :meth:`stop`; :meth:`close` flushes and checkpoints."""

    def __init__(
        self,
        *,
        node: str,
        publisher: Publisher,
        sources: list[Source],
        attributor: Attributor | LocalAttributor,
        targets: TargetSet | None = None,
        targets_feed: TargetsFeed | None = None,
        event_sources: list[EventSource] | None = None,
        dedup: EventDeduplicator | None = None,
    ):
        self.node = node
        self.event_sources = event_sources or []
        self.dedup = dedup if dedup is not None else EventDeduplicator()
        self._targets_version = targets.version if targets is not None else 0
        self.publisher = publisher
        self.sources = sources
        self.attributor = attributor
        self.targets = targets
        self.targets_feed = targets_feed
        self.counters = AgentCounters()
        self._stopping = threading.Event()
        # Per source: (last publish seq of a poll, source position after that poll).
        self._marks: list[deque[tuple[int, Position]]] = [deque() for _ in sources]
        self._last_seq = 0
        self._last_stats = time.monotonic()
        #: The loop's heartbeat and its stats then, refreshed every SNAPSHOT_EVERY_S: the
        #: metrics endpoint reads these from its own thread, never the loop's live state
        #: (the publisher is not thread-safe).
        self.steps = 0
        self.last_beat = time.monotonic()
        self.snapshot: dict[str, Any] = self.stats()

    def handle(self, obs: Observation) -> None:
        self.counters.observations += 1
        attribution = self.attributor.for_label(obs.pid, obs.label)
        if attribution is None:
            self.counters.unattributed += 1
            return
        if not attribution.allows(obs.kind):
            self.counters.opted_out += 1
            return
        try:
            event = obs.to_event(**replace(attribution, node=self.node).fields())
        except EventError as exc:
            self.counters.invalid += 1
            log.warning("observation %s (%s) is not a valid event: %s", obs.audit_id, obs.kind, exc)
            return
        self._publish(event)

    def _publish(self, event: Event) -> None:
        if not self.dedup.first_time(event):
            return
        self._last_seq = self.publisher.publish(event)
        self.counters.published += 1
        self.counters.by_kind[event["kind"]] += 1

    def step(self, timeout_s: float = 0.2) -> None:
        """One round: targets, each source, publisher callbacks, durable checkpoints."""
        if self.targets_feed is not None and self.targets is not None:
            self.targets_feed.poll(self.targets)
        share = timeout_s / max(1, len(self.sources) + len(self.event_sources))
        if self.targets is not None and self.targets.version != self._targets_version:
            self._targets_version = self.targets.version
            self.dedup.clear()
        for event_source in self.event_sources:
            for event in event_source.poll(share):
                self._publish(event)
        for index, source in enumerate(self.sources):
            for obs in source.poll(share):
                self.handle(obs)
            position = source.mark()
            if position is not None:
                marks = self._marks[index]
                if not marks or marks[-1][1] != position:
                    marks.append((self._last_seq, position))
        self.publisher.poll(0)
        self._commit_durable()
        self._heartbeat()
        if time.monotonic() - self._last_stats >= STATS_EVERY_S:
            self._last_stats = time.monotonic()
            log.info("agent stats: %s", orjson.dumps(self.stats()).decode())

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self.steps == 0 or now - self.last_beat >= SNAPSHOT_EVERY_S:
            self.snapshot = self.stats()
            self.last_beat = now
        self.steps += 1

    def _commit_durable(self) -> None:
        durable = self.publisher.durable_seq()
        for source, marks in zip(self.sources, self._marks, strict=True):
            position = None
            while marks and marks[0][0] <= durable:
                position = marks.popleft()[1]
            if position is not None:
                source.commit(position)

    def run(self, duration_s: float | None = None,
            on_step: Callable[[Agent], None] | None = None) -> None:
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.step()
            if on_step is not None:
                on_step(self)

    def stop(self) -> None:
        self._stopping.set()

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush (or spool) everything, then commit every source's last position."""
        self.publisher.close(timeout_s)
        self._commit_durable()
        for source in self.sources:
            source.close()
        for event_source in self.event_sources:
            event_source.close()
        if self.targets_feed is not None:
            self.targets_feed.close()
        log.info("agent stopped: %s", orjson.dumps(self.stats()).decode())

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.node, **self.counters.as_dict(), "deduplicated": self.dedup.dropped,
            "attribution": dict(self.attributor.counters),
            "targets": len(self.targets) if self.targets is not None else None,
            "publisher": self.publisher.stats(),
            "sources": [s.stats() for s in self.sources],
            "event_sources": [s.stats() for s in self.event_sources],
        }


def load_targets_file(path: Path) -> list[Target]:
    """A JSON file holding a list of target values (the ``armorflow.targets`` form)."""
    raw = orjson.loads(path.read_bytes())
    items = raw if isinstance(raw, list) else [raw]
    return [Target.from_json(str(item.get("profile", "")), orjson.dumps(item)) for item in items]


def kube_api_client(kubeconfig: Path | None = None) -> Any:
    """An API client: the kubeconfig given, else the in-cluster config, else ~/.kube."""
    from kubernetes import client, config

    if kubeconfig is not None:
        return config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def kube_pod_lister(node: str, kubeconfig: Path | None = None
                    ) -> Callable[[], list[dict[str, Any]]]:
    """List this node's pods as JSON dicts (in-cluster config, else the kubeconfig)."""
    from kubernetes import client

    api = client.CoreV1Api(kube_api_client(kubeconfig))

    def list_pods() -> list[dict[str, Any]]:
        # The raw response: parsing JSON ourselves is much faster than model objects.
        resp: Any = api.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node}", _preload_content=False
        )
        items: list[dict[str, Any]] = orjson.loads(resp.data)["items"]
        # The server filters by node already; checking again costs nothing and keeps a
        # permissive API server from handing us other nodes' containers.
        return [pod for pod in items if (pod.get("spec") or {}).get("nodeName") == node]

    return list_pods


@dataclass
class AgentOptions:
    """Everything ``armorflow agent`` decides; also the programmatic entry point."""

    settings: KafkaSettings
    state_dir: Path
    node: str = field(default_factory=socket.gethostname)
    audit: bool = True
    audit_log_paths: str = DEFAULT_AUDIT_LOG_PATHS
    include_denied: bool = False
    audit_from_start: bool = False
    local_profile: str | None = None
    targets_file: Path | None = None
    follow_targets_topic: bool = True
    kube: bool = False
    kubeconfig: Path | None = None
    #: The container runtime's CRI socket (``unix:///run/containerd/containerd.sock``):
    #: asked first for a container's pod; the API server (``kube``) after it.
    cri_endpoint: str | None = None
    #: Attach the eBPF tracer to the targeted containers (root, BTF; cluster mode only).
    tracer: bool = False
    message_timeout_ms: int = 15_000
    retry_interval_s: float = 2.0
    spool_max_bytes: int = 1 << 30
    extra_sources: list[Source] = field(default_factory=list)


def build_resolver(opts: AgentOptions) -> Resolver:
    """Container id -> workload: the runtime, then the API server, as configured."""
    resolvers: list[Resolver] = []
    if opts.cri_endpoint:
        from armorflow.agents.cri import CriClient, CriResolver

        resolvers.append(CriResolver(CriClient(opts.cri_endpoint, timeout_s=2.0)))
    if opts.kube:
        resolvers.append(KubeResolver(kube_pod_lister(opts.node, opts.kubeconfig)))
    if not resolvers:
        return StaticResolver()
    return resolvers[0] if len(resolvers) == 1 else ChainResolver(resolvers)


def build_agent(opts: AgentOptions) -> Agent:
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    publisher = Publisher(
        opts.settings, opts.state_dir / "spool", message_timeout_ms=opts.message_timeout_ms,
        retry_interval_s=opts.retry_interval_s, spool_max_bytes=opts.spool_max_bytes,
    )
    sources: list[Source] = list(opts.extra_sources)
    if opts.audit:
        sources.insert(0, AuditSource(
            opts.audit_log_paths, checkpoint_path=opts.state_dir / "audit.checkpoint",
            include_denied=opts.include_denied, from_start=opts.audit_from_start,
        ))
    targets: TargetSet | None = None
    feed: TargetsFeed | None = None
    attributor: Attributor | LocalAttributor
    if opts.local_profile:
        attributor = LocalAttributor(opts.local_profile)
    else:
        targets = TargetSet(load_targets_file(opts.targets_file) if opts.targets_file else [])
        attributor = Attributor(targets, build_resolver(opts))
        if opts.follow_targets_topic:
            feed = TargetsFeed(opts.settings, opts.node)
    event_sources: list[EventSource] = []
    if opts.tracer:
        if not isinstance(attributor, Attributor):
            raise ValueError("the tracer follows targeted containers: not with a local profile "
                             "(use `armorflow trace` for a local command)")
        from armorflow.agents.bpf.tracer import Tracer

        event_sources.append(TracerFeed(Tracer(node=opts.node).start(), attributor, opts.node))
    return Agent(node=opts.node, publisher=publisher, sources=sources, attributor=attributor,
                 targets=targets, targets_feed=feed, event_sources=event_sources)


# --- metrics and probes (armorflow.metrics) -----------------------------------------------

#: Publisher fields that are levels (what waits now), not counts.
PUBLISHER_GAUGES: Final = frozenset({
    "spooling", "spool_messages", "spool_bytes", "memory_messages", "memory_events",
    "memory_bytes", "in_flight_messages", "pending_events"})


def agent_metrics(agent: Agent) -> ComponentMetrics:
    """The agent's counters from its loop's snapshot; liveness: the loop steps;
    readiness: it stepped, reached Kafka (the targets topic, when it follows it) and is
    not spooling (a spooling agent loses nothing, but Kafka is away)."""

    def snapshot() -> dict[str, Any]:
        return agent.snapshot

    def own() -> dict[str, Any]:
        shot = snapshot()
        return {k: v for k, v in shot.items()
                if k not in ("attribution", "publisher", "sources", "event_sources")}

    def indexed(key: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [({"source": str(i)}, stats) for i, stats in enumerate(snapshot()[key])]

    prefix = "armorflow_agent"
    return (
        ComponentMetrics()
        .counters(SnapshotCollector(prefix, one(own), gauges=frozenset({"targets"}),
                                    names={"by_kind": "published_by_kind"}))
        .counters(SnapshotCollector(f"{prefix}_attribution",
                                    one(lambda: snapshot()["attribution"])))
        .counters(SnapshotCollector(f"{prefix}_publisher", one(lambda: snapshot()["publisher"]),
                                    gauges=PUBLISHER_GAUGES))
        .counters(SnapshotCollector(f"{prefix}_audit", lambda: indexed("sources"),
                                    gauges=frozenset({"offset"})))
        .counters(SnapshotCollector(f"{prefix}_tracer", lambda: indexed("event_sources"),
                                    gauges=frozenset({"containers"})))
        .liveness(stalled("the agent loop", lambda: time.monotonic() - agent.last_beat,
                          STALLED_S))
        .readiness(lambda: _agent_unready(agent))
    )


def _agent_unready(agent: Agent) -> list[str]:
    problems = []
    if agent.steps == 0:
        problems.append("the agent loop has not started")
    if agent.targets_feed is not None and not agent.targets_feed.assigned:
        problems.append(f"the {TARGETS_TOPIC} topic is not assigned yet (Kafka unreachable?)")
    if agent.snapshot.get("publisher", {}).get("spooling"):
        problems.append("spooling: Kafka does not acknowledge the events")
    return problems
