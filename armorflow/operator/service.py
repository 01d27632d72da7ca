"""The running operator: watch threads feed one worker that carries out reconcile plans.

Threads: one watch per policy kind, the status listener, a periodic resync and the single
worker. Everything that changes the world (Kafka, status patches, restarts) happens in
the worker, one policy at a time, so plans never race each other. The worker always
re-reads the policy before planning: watch events only say *which* policy to look at.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from confluent_kafka import KafkaError, TopicPartition

from armorflow.agents.enforce import EnforceError, localhost_path, seccomp_of
from armorflow.config import KafkaSettings
from armorflow.control import PHASE_COMPLETED, PHASE_FAILED, PolicyRef, make_control
from armorflow.counters import CounterSet
from armorflow.kafka import make_consumer
from armorflow.metrics import ComponentMetrics, SnapshotCollector, one
from armorflow.resource import ResourceError, read_resource
from armorflow.topics import STATUS_TOPIC, TARGETS_TOPIC

from .enforcement import plan_seccomp_enforcement, wants_enforcement
from .kube import WATCH_TIMEOUT_S, Kube, PolicyWatch
from .messaging import ControlPublisher, StatusListener, StatusReport
from .policy import (
    DEFAULT_SYSTEM_NAMESPACE,
    KIND_CLUSTER_POLICY,
    KIND_POLICY,
    MODE_BEHAVIOR_MODELING,
    Policy,
    PolicyError,
    model_namespace,
    parse_policy,
    profile_name,
)
from .reconcile import Plan, plan_completion, plan_deletion, plan_reconcile
from .workloads import (
    DEFAULT_MATCH_LABEL,
    LISTABLE_KINDS,
    RESTARTABLE_KINDS,
    MatchLabel,
    PodScope,
    label_selector,
    matched_workloads,
    pod_scope,
)

log = logging.getLogger(__name__)

PolicyKey = tuple[str, str, str]  # (kind, namespace, name)
RETRY_S: Final = 2.0


@dataclass(frozen=True)
class Work:
    what: Literal["sync", "deleted", "report"]
    key: PolicyKey | None = None
    obj: dict[str, Any] | None = None
    report: StatusReport | None = None


def _key_of(obj: dict[str, Any]) -> PolicyKey:
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind") or "")
    namespace = str(meta.get("namespace") or "") if kind == KIND_POLICY else ""
    return (kind, namespace, str(meta.get("name") or ""))


@dataclass
class OperatorCounters(CounterSet):
    reconciles: int = 0
    controls: int = 0
    targets: int = 0
    status_writes: int = 0
    restarts: int = 0
    seccomp_patches: int = 0
    completions: int = 0
    errors: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class OperatorService:
    """``start()`` it, ``stop()`` it; ``healthy()`` says whether every thread still runs."""

    def __init__(
        self,
        kube: Kube,
        settings: KafkaSettings,
        *,
        system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
        resync_s: float = 60.0,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
        clock: Callable[[], int] = time.time_ns,
        status_group: str = "armorflow-operator",
        match_label: MatchLabel = DEFAULT_MATCH_LABEL,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.system_namespace = system_namespace
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.clock = clock
        self.match_label = match_label
        self.counters = OperatorCounters()
        self._publisher = ControlPublisher(settings)
        self._listener = StatusListener(settings, self._on_report, group_id=status_group)
        self._queue: queue.Queue[Work] = queue.Queue()
        self._pending: set[PolicyKey] = set()
        self._lock = threading.Lock()
        self._watches: dict[str, PolicyWatch] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: profile name -> policy, learnt from reconciles; reports find their policy here.
        self._profiles: dict[str, PolicyKey] = {}
        #: Completion reports that arrived before their policy was seen.
        self._unclaimed: dict[str, StatusReport] = {}
        self.synced = threading.Event()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> OperatorService:
        self._listener.start()
        for kind in (KIND_CLUSTER_POLICY, KIND_POLICY):
            self._spawn(f"watch-{kind}", self._watch_loop, kind)
        self._spawn("resync", self._resync_loop)
        self._spawn("worker", self._work_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches = list(self._watches.values())
        for stream in watches:
            stream.close()  # wakes the watch threads out of their blocking reads
        self._listener.stop()
        for thread in self._threads:
            thread.join(10)

    def healthy(self) -> bool:
        return (
            not self._stop.is_set()
            and self._listener.alive
            and self._listener.error is None
            and all(t.is_alive() for t in self._threads)
        )

    def problems(self) -> list[str]:
        """What keeps the operator from working: empty while every thread runs."""
        out = []
        if self._stop.is_set():
            out.append("stopping")
        if not self._listener.alive or self._listener.error is not None:
            out.append(f"the {STATUS_TOPIC} listener stopped: {self._listener.error}")
        out += [f"thread {t.name} died" for t in self._threads if not t.is_alive()]
        return out

    def gauges(self) -> dict[str, int]:
        """Levels for the metrics endpoint: work waiting, profiles known."""
        return {"queued_work": self._queue.qsize(), "profiles": len(self._profiles),
                "unclaimed_reports": len(self._unclaimed),
                "synced": int(self.synced.is_set())}

    def status_messages(self) -> dict[str, int]:
        return {"received": self._listener.received, "rejected": self._listener.rejected}

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- producers of work --------------------------------------------------------------

    def enqueue_sync(self, key: PolicyKey) -> None:
        with self._lock:
            if key in self._pending:
                return  # the worker re-reads the object anyway
            self._pending.add(key)
        self._queue.put(Work("sync", key=key))

    def _on_report(self, report: StatusReport) -> None:
        self._queue.put(Work("report", report=report))

    def _watch_loop(self, kind: str) -> None:
        while not self._stop.is_set():
            try:
                stream = self.kube.watch_policies(kind, self.watch_timeout_s)
                with self._lock:
                    self._watches[kind] = stream
                if self._stop.is_set():
                    stream.close()
                for type_, obj in stream:
                    if self._stop.is_set():
                        return
                    if type_ == "DELETED":
                        self._queue.put(Work("deleted", key=_key_of(obj), obj=obj))
                    elif type_ in ("ADDED", "MODIFIED"):
                        self.enqueue_sync(_key_of(obj))
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("watch of %s broke (%s); reconnecting", kind, exc)
                self._stop.wait(RETRY_S)

    def _resync_loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                # The targets are read before the policies are listed: a policy created in
                # between is then in the list, never mistaken for a deleted one.
                active = read_active_targets(self.settings) if first else {}
                seen: set[PolicyKey] = set()
                for kind in (KIND_CLUSTER_POLICY, KIND_POLICY):
                    for obj in self.kube.list_policies(kind):
                        key = _key_of(obj)
                        seen.add(key)
                        self.enqueue_sync(key)
                if first:
                    self._forget_orphans(seen, active)
                    first = False
                    self.synced.set()
            except Exception as exc:
                log.warning("resync failed (%s); retrying", exc)
                self._stop.wait(RETRY_S)
                continue
            self._stop.wait(self.resync_s)

    # -- the worker ---------------------------------------------------------------------

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                work = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if work.what == "sync" and work.key is not None:
                with self._lock:
                    self._pending.discard(work.key)
            try:
                self._handle(work)
            except Exception:
                self.counters.errors += 1
                log.exception("handling %s of %s failed; retrying in %.0fs", work.what,
                              work.key or (work.report.profile if work.report else "?"), RETRY_S)
                timer = threading.Timer(RETRY_S, self._queue.put, args=(work,))
                timer.daemon = True
                timer.start()

    def _handle(self, work: Work) -> None:
        if work.what == "sync" and work.key is not None:
            self._sync(work.key)
        elif work.what == "deleted" and work.obj is not None:
            self._deleted(work.obj)
        elif work.what == "report" and work.report is not None:
            self._report(work.report)

    def _parse(self, obj: dict[str, Any]) -> Policy | None:
        try:
            return parse_policy(obj, self.system_namespace)
        except PolicyError as exc:
            log.warning("skipped an unreadable policy object: %s", exc)
            return None

    def _profile(self, policy: Policy) -> str:
        return profile_name(policy.kind, policy.namespace, policy.name, self.system_namespace)

    def _sync(self, key: PolicyKey) -> None:
        kind, namespace, name = key
        obj = self.kube.get_policy(kind, namespace, name)
        if obj is None:
            return  # deleted meanwhile: the DELETED event does the rest
        policy = self._parse(obj)
        if policy is None or policy.deleting:
            return
        self.counters.reconciles += 1
        plan = plan_reconcile(policy, self.clock(), self.system_namespace,
                              scope=self._resolve_pods(policy))
        self._execute(policy, plan)
        profile = self._profile(policy)
        if policy.status.accepted_mode == MODE_BEHAVIOR_MODELING or (
            plan.status and plan.status.get("acceptedMode") == MODE_BEHAVIOR_MODELING
        ):
            self._profiles[profile] = key
            early = self._unclaimed.pop(profile, None)
            if early is not None:
                self._report(early)
        if wants_enforcement(policy):
            self._enforce_seccomp(policy)

    def _resolve_pods(self, policy: Policy) -> PodScope | None:
        """The target's pods for the agents (a named target is looked up while it is, or is
        about to be, modeled)."""
        if (policy.problems or policy.mode != MODE_BEHAVIOR_MODELING
                or policy.status.phase == PHASE_COMPLETED):
            return None
        if policy.target.name is None or policy.target.kind not in LISTABLE_KINDS:
            return pod_scope(policy, None, self.match_label)
        return pod_scope(policy, self._target_kind_workloads(policy), self.match_label)

    def _target_kind_workloads(self, policy: Policy) -> list[dict[str, Any]]:
        """The opted-in workloads of the policy's target kind in its scope (the caller
        matches the target itself)."""
        namespace = None if policy.cluster_wide else policy.namespace
        return self.kube.list_workloads(policy.target.kind, namespace,
                                        label_selector(self.match_label))

    def _deleted(self, obj: dict[str, Any]) -> None:
        policy = self._parse(obj)
        if policy is None:
            return
        self._execute(policy, plan_deletion(policy, self.clock(), self.system_namespace),
                      write_status=False)
        self._profiles.pop(self._profile(policy), None)

    def _report(self, report: StatusReport) -> None:
        if report.phase not in (PHASE_COMPLETED, PHASE_FAILED):
            return
        key = self._profiles.get(report.profile)
        if key is None:
            previous = self._unclaimed.get(report.profile)
            if previous is None or previous.ts <= report.ts:
                self._unclaimed[report.profile] = report
            return
        obj = self.kube.get_policy(*key)
        policy = self._parse(obj) if obj is not None else None
        if policy is None:
            return
        plan = plan_completion(
            policy, report.ts, report.counts, self.clock(), self.system_namespace,
            failed=report.message or "no reason given" if report.phase == PHASE_FAILED
            else None)
        if not plan.empty:
            self.counters.completions += 1
        self._execute(policy, plan)

    def _execute(self, policy: Policy, plan: Plan, write_status: bool = True) -> None:
        for note in plan.notes:
            log.info("%s", note)
        profile = self._profile(policy)
        for control in plan.controls:
            self._publisher.control(control)
            self.counters.controls += 1
            self.counters.by_type[control.type] = self.counters.by_type.get(control.type, 0) + 1
        if plan.targets is not None:
            self._publisher.targets(profile, plan.targets)
            self.counters.targets += 1
        if plan.controls or plan.targets is not None:
            self._publisher.flush()
        if plan.status and write_status:
            self.kube.patch_status(policy.kind, policy.namespace, policy.name, plan.status)
            self.counters.status_writes += 1
        if plan.restart:
            restarted = self._restart_workloads(policy)
            self.kube.patch_status(policy.kind, policy.namespace, policy.name,
                                   {"modeling": {"workloadsRestarted": restarted}})
            self.counters.status_writes += 1

    def _restart_workloads(self, policy: Policy) -> int:
        if policy.target.kind not in RESTARTABLE_KINDS:
            return 0
        objects = self._target_kind_workloads(policy)
        stamp = datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")
        count = 0
        for ref in matched_workloads(policy, policy.target.kind, objects, self.match_label):
            self.kube.restart_workload(ref, stamp)
            log.info("%s: rolling restart of %s", policy.describe(), ref.describe())
            count += 1
        self.counters.restarts += count
        return count

    def _enforce_seccomp(self, policy: Policy) -> None:
        """Set the Completed model's Seccomp profile in the target workloads (opt-in)."""
        profile = self._profile(policy)
        namespace = model_namespace(policy, self.system_namespace)
        _path, localhost_profile = localhost_path(Path("/"), profile)
        problem: str | None = None
        obj = self.kube.get_model(namespace, profile)
        if obj is None:
            problem = f"the ArmorProfileModel {namespace}/{profile} is not there"
        else:
            try:
                seccomp_of(read_resource(obj), render=False)
            except (ResourceError, EnforceError) as exc:
                problem = f"the ArmorProfileModel {namespace}/{profile}: {exc}"
        objects: list[dict[str, Any]] = []
        if problem is None and policy.target.kind in LISTABLE_KINDS:
            objects = self._target_kind_workloads(policy)
        plan = plan_seccomp_enforcement(policy, localhost_profile, problem, objects,
                                        self.match_label, self.clock())
        for note in plan.notes:
            log.info("%s", note)
        for ref, ops in plan.patch:
            self.kube.patch_workload(ref, ops)
            self.counters.seccomp_patches += 1
        if plan.status is not None:
            self.kube.patch_status(policy.kind, policy.namespace, policy.name, plan.status)
            self.counters.status_writes += 1

    # -- policies deleted while the operator was away -------------------------------------

    def _forget_orphans(self, live: set[PolicyKey], active: dict[str, dict[str, Any]]) -> None:
        """Profiles still active on the targets topic whose policy is gone get a delete."""
        live_profiles = {
            profile_name(kind, ns, name, self.system_namespace) for kind, ns, name in live
        }
        for profile, value in active.items():
            if profile in live_profiles:
                continue
            ref = PolicyRef.parse(value.get("policy"))
            namespace = (self.system_namespace if ref.kind == KIND_CLUSTER_POLICY
                         else ref.namespace or self.system_namespace)
            control = make_control("delete", profile, policy=ref, namespace=namespace,
                                   ts=self.clock())
            self._publisher.control(control)
            self._publisher.targets(profile, {**value, "active": False})
            self._publisher.flush()
            self.counters.controls += 1
            self.counters.by_type["delete"] = self.counters.by_type.get("delete", 0) + 1
            log.info("policy of %s was deleted while the operator was away: forgotten", profile)


def read_active_targets(settings: KafkaSettings, timeout_s: float = 10.0
                        ) -> dict[str, dict[str, Any]]:
    """The latest targets value of every profile that is still marked active."""
    import orjson

    consumer = make_consumer(settings, "armorflow-operator-targets", from_beginning=True)
    latest: dict[str, dict[str, Any]] = {}
    try:
        meta = consumer.list_topics(TARGETS_TOPIC, timeout=timeout_s).topics.get(TARGETS_TOPIC)
        if meta is None or meta.error is not None or not meta.partitions:
            return {}
        parts = [TopicPartition(TARGETS_TOPIC, p, 0) for p in meta.partitions]
        ends: dict[int, int] = {}
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            if high > low:
                ends[tp.partition] = high
        if not ends:
            return {}
        consumer.assign([tp for tp in parts if tp.partition in ends])
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            partition = msg.partition()
            if partition is None or partition not in ends:
                continue
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(partition)
                continue
            offset = msg.offset()
            if offset is None or offset + 1 >= ends[partition]:
                done.add(partition)
            key = (msg.key() or b"").decode(errors="replace")
            value = msg.value()
            try:
                data = orjson.loads(value) if value else None
            except orjson.JSONDecodeError:
                log.warning("skipped an unreadable targets record of %s", key)
                continue
            if isinstance(data, dict):
                latest[key] = data
            else:
                latest.pop(key, None)
    finally:
        consumer.close()
    return {k: v for k, v in latest.items() if v.get("active") is True}


def operator_metrics(service: OperatorService) -> ComponentMetrics:
    """The operator's counters and levels; liveness: every thread runs; readiness: also
    the first resync is done (the policies were listed and the targets topic read)."""
    prefix = "armorflow_operator"

    def unready() -> list[str]:
        waiting = [] if service.synced.is_set() else [
            "the first resync (list the policies, read the targets topic) is not done"]
        return service.problems() + waiting

    return (
        ComponentMetrics()
        .counters(SnapshotCollector(prefix, one(service.counters.as_dict),
                                    names={"by_type": "control_messages"}))
        .counters(SnapshotCollector(f"{prefix}_status_messages", one(service.status_messages)))
        .counters(SnapshotCollector(prefix, one(service.gauges),
                                    gauges=frozenset(service.gauges())))
        .liveness(service.problems)
        .readiness(unready)
    )
