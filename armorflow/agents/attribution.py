"""Attribution: which profile under modeling does a process's behaviour belong to?

The chain is pid -> container id (from ``/proc/<pid>/cgroup``) -> workload (pod,
namespace, container name, labels, annotations; from a pluggable :class:`Resolver`) ->
target (from the operator's ``armorflow.targets`` topic) -> profile.

Targets. The operator publishes one message per profile on the compacted topic
``armorflow.targets``, keyed by the profile name; a null value (tombstone) or
``"active": false`` ends the capture. The value (documented in ``docs/agents.md``)::

    {"v": 1, "profile": "varmor-cluster-varmor-demo-4",
     "enforcers": ["apparmor", "seccomp"],
     "namespaces": ["default", "demo"],            # empty: every namespace
     "selector": {"matchLabels": {"app": "demo-4"},
                  "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
     "containers": ["c1"],                         # empty: every container
     "active": true}

Opt-outs. A pod annotation ``container.apparmor.security.beta.varmor.org/<c>: unconfined``
removes container ``<c>`` from AppArmor modeling (every kind but ``syscall``) and
``container.seccomp.security.beta.varmor.org/<c>: unconfined`` from Seccomp modeling
(``syscall``); they take precedence over ``containers``. A container opted out of every
enforcer of its target produces nothing at all.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from armorflow.selector import LabelSelector, SelectorError

log = logging.getLogger(__name__)

APPARMOR_OPT_OUT: Final = "container.apparmor.security.beta.varmor.org/"
SECCOMP_OPT_OUT: Final = "container.seccomp.security.beta.varmor.org/"
#: What a target can be modeled for: AppArmor (every kind but syscalls) and Seccomp. Not
#: to be confused with a policy's ``enforcer`` (``armorflow.control.ENFORCERS``).
MODELED_ENFORCERS: Final = frozenset({"apparmor", "seccomp"})
TARGET_SCHEMA_VERSION: Final = 1

# --- cgroup paths -------------------------------------------------------------------------

_CONTAINER_ID: Final = re.compile(
    r"(?:^|[/:-])(?P<runtime>cri-containerd|containerd|crio|docker|libpod)?[-:]?"
    r"(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
_POD_UID: Final = re.compile(
    r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_RUNTIMES: Final = {"cri-containerd": "containerd", "containerd": "containerd", "crio": "cri-o",
                    "docker": "docker", "libpod": "podman"}


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    """What a cgroup path says about a process: its container, pod and runtime."""

    container_id: str
    pod_uid: str | None
    runtime: str | None


def parse_cgroup_path(path: str) -> CgroupIdentity | None:
    """The container a cgroup path belongs to, or None (host process, conmon, pod sandbox).

    Understands the systemd driver (``.../kubepods-burstable-pod<uid>.slice/
    cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope``), the cgroupfs
    driver (``/kubepods/burstable/pod<uid>/<id>``, ``/docker/<id>``) and containerd's
    ``<slice>:cri-containerd:<id>`` form under ``containerd.service``.
    """
    path = path.strip()
    if not path or path == "/":
        return None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if "conmon" in last:
        return None  # cri-o's monitor process runs beside the container, not in it
    match = _CONTAINER_ID.search(last)
    if match is None:
        return None
    pod = _POD_UID.search(path)
    runtime = match.group("runtime")
    return CgroupIdentity(
        container_id=match.group("id"),
        pod_uid=pod.group("uid").replace("_", "-") if pod else None,
        runtime=_RUNTIMES.get(runtime) if runtime else None,
    )


def parse_proc_cgroup(text: str) -> CgroupIdentity | None:
    """Parse ``/proc/<pid>/cgroup``: the unified (``0::``) line first, then v1 lines."""
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        hierarchy, sep, rest = line.partition(":")
        _controllers, sep2, path = rest.partition(":")  # the path may hold colons
        if not sep or not sep2:
            continue
        entries.append((hierarchy, path))
    entries.sort(key=lambda e: e[0] != "0")
    for _, path in entries:
        identity = parse_cgroup_path(path)
        if identity is not None:
            return identity
    return None


# --- workloads and resolvers ---------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A container as Kubernetes knows it."""

    container_id: str
    namespace: str
    pod: str
    container: str
    pod_uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


class Resolver(Protocol):
    """Finds the workload of a container id (``pod_uid`` is a hint when the cgroup has it)."""

    def resolve(self, container_id: str, pod_uid: str | None = None) -> Workload | None: ...


class StaticResolver:
    """A fixed table: local runs (``armorflow trace``), tests, and other sources' feeds."""

    def __init__(self, workloads: list[Workload] | None = None):
        self._by_id = {w.container_id: w for w in workloads or []}

    def add(self, workload: Workload) -> None:
        self._by_id[workload.container_id] = workload

    def remove(self, container_id: str) -> None:
        self._by_id.pop(container_id, None)

    def resolve(self, container_id: str, pod_uid: str | None = None) -> Workload | None:
        return self._by_id.get(container_id)


def strip_runtime_prefix(container_id: str) -> str:
    """``containerd://abc`` -> ``abc`` (the form of a pod's containerStatuses)."""
    return container_id.split("://", 1)[-1]


def workloads_of_pod(pod: dict[str, Any]) -> list[Workload]:
    """The running containers of a pod object (Kubernetes JSON)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    out = []
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            cid = cs.get("containerID")
            if not cid:
                continue
            out.append(Workload(
                container_id=strip_runtime_prefix(cid), namespace=meta.get("namespace", ""),
                pod=meta.get("name", ""), container=cs.get("name", ""),
                pod_uid=meta.get("uid", ""), labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
            ))
    return out


class ListingResolver:
    """Container id -> workload from a listing of the whole node, taken again on a miss.

    Subclasses say how to list (:meth:`list_node`: the runtime's view, the API server's).
    Two rules keep the listing from being taken over and over:

    * after a failure the last view is kept, the failure counted, and the wait before the
      next listing doubles, up to ``max_backoff_s``: a source that is away or hangs in
      its timeouts cannot hold the agent's loop;
    * an id still unknown after a fresh listing waits ``miss_first_s`` before it may cause
      another, then twice that, up to ``miss_max_s``. A new container shows up in the
      next listings within seconds; an id that never will (a pod's pause container, which
      no pod status names) ends up costing one listing a minute, where the agent's scan
      every two seconds would otherwise list the node every two seconds.
    """

    #: Ids waited on at most (the table starts over past it).
    MAX_MISSES = 16_384

    def __init__(self, min_refresh_s: float = 2.0, *, max_backoff_s: float = 60.0,
                 miss_first_s: float = 2.0, miss_max_s: float = 60.0):
        self.min_refresh_s = min_refresh_s
        self.max_backoff_s = max_backoff_s
        self.miss_first_s = miss_first_s
        self.miss_max_s = miss_max_s
        self._by_id: dict[str, Workload] = {}
        self._not_workloads: set[str] = set()
        self._next_refresh = float("-inf")
        self._failures_in_a_row = 0
        #: id -> (time before which it causes no listing, its current wait)
        self._misses: dict[str, tuple[float, float]] = {}
        self.refreshes = 0
        self.errors = 0

    def list_node(self) -> tuple[list[Workload], set[str]]:
        """The node's workloads, and ids known not to be any (e.g. sandboxes)."""
        raise NotImplementedError

    def is_sandbox(self, container_id: str) -> bool:
        """True for an id the last listing named as a pod's sandbox (pause) container."""
        return container_id in self._not_workloads

    def refresh(self) -> bool:
        """List the node again; False (counted, logged) when that failed."""
        try:
            workloads, not_workloads = self.list_node()
        except Exception as exc:  # the source may be briefly away; keep the old view
            self.errors += 1
            self._failures_in_a_row += 1
            wait = min(self.max_backoff_s,
                       max(self.min_refresh_s, 0.5) * 2 ** self._failures_in_a_row)
            self._next_refresh = time.monotonic() + wait
            log.warning("%s: listing failed (%s): keeping %d known containers, next try in "
                        "%.0f s", type(self).__name__, exc, len(self._by_id), wait)
            return False
        self._failures_in_a_row = 0
        self._next_refresh = time.monotonic() + self.min_refresh_s
        self.refreshes += 1
        self._by_id = {w.container_id: w for w in workloads}
        self._not_workloads = not_workloads
        return True

    def resolve(self, container_id: str, pod_uid: str | None = None) -> Workload | None:
        found = self._by_id.get(container_id)
        if found is not None or container_id in self._not_workloads:
            return found
        now = time.monotonic()
        missed = self._misses.get(container_id)
        if now < self._next_refresh or (missed is not None and now < missed[0]):
            return None
        if not self.refresh():
            return None
        found = self._by_id.get(container_id)
        if found is not None:
            self._misses.pop(container_id, None)
        elif container_id not in self._not_workloads:
            wait = self.miss_first_s if missed is None else min(self.miss_max_s, 2 * missed[1])
            if len(self._misses) >= self.MAX_MISSES:
                self._misses.clear()
            self._misses[container_id] = (time.monotonic() + wait, wait)
        return found


class KubeResolver(ListingResolver):
    """Container ids of the pods on this node, from the Kubernetes API.

    ``list_pods`` returns pod objects as JSON dicts (e.g. a CoreV1Api call with
    ``fieldSelector=spec.nodeName=<node>``).
    """

    def __init__(self, list_pods: Any, min_refresh_s: float = 2.0, **waits: float):
        super().__init__(min_refresh_s, **waits)
        self._list_pods = list_pods

    def list_node(self) -> tuple[list[Workload], set[str]]:
        pods = self._list_pods()
        return [w for pod in pods for w in workloads_of_pod(pod)], set()


class ChainResolver:
    """Ask each resolver in turn; the first that knows the container wins.

    The agent puts the container runtime first (on the node, current, no API server load)
    and the API server after it (it also knows pods whose runtime socket is not mounted).
    """

    def __init__(self, resolvers: list[Resolver]):
        self.resolvers = resolvers

    def resolve(self, container_id: str, pod_uid: str | None = None) -> Workload | None:
        for resolver in self.resolvers:
            found = resolver.resolve(container_id, pod_uid)
            if found is not None:
                return found
            if is_sandbox(resolver, container_id):
                return None  # the runtime knows it is a pause container: ask no further
        return None

    def is_sandbox(self, container_id: str) -> bool:
        return any(is_sandbox(r, container_id) for r in self.resolvers)


def is_sandbox(resolver: Resolver, container_id: str) -> bool:
    """Whether ``resolver`` knows ``container_id`` as a sandbox (resolvers may not say)."""
    check = getattr(resolver, "is_sandbox", None)
    return bool(check(container_id)) if check is not None else False


# --- targets ---------------------------------------------------------------------------------


class TargetError(ValueError):
    """A targets message that does not follow the documented value."""


def _str_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TargetError(f"{what} must be a list of strings")
    return tuple(value)


def _selector(raw: object) -> LabelSelector:
    try:
        return LabelSelector.from_json(raw)
    except SelectorError as exc:
        raise TargetError(str(exc)) from None


@dataclass(frozen=True)
class Target:
    """One profile under modeling and the containers it covers."""

    profile: str
    enforcers: frozenset[str] = MODELED_ENFORCERS
    namespaces: tuple[str, ...] = ()
    selector: LabelSelector = field(default_factory=LabelSelector)
    containers: tuple[str, ...] = ()
    active: bool = True

    @classmethod
    def from_json(cls, key: str, value: bytes) -> Target:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise TargetError(f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise TargetError("a target is a JSON object")
        if obj.get("v", TARGET_SCHEMA_VERSION) != TARGET_SCHEMA_VERSION:
            raise TargetError(f"unsupported target version {obj.get('v')!r}")
        profile = obj.get("profile", key)
        if not isinstance(profile, str) or not profile or profile != key:
            raise TargetError(f"profile {profile!r} must be the non-empty message key {key!r}")
        enforcers = frozenset(e.lower() for e in _str_list(obj.get("enforcers"), "enforcers"))
        if not enforcers <= MODELED_ENFORCERS:
            raise TargetError(f"unknown enforcers {sorted(enforcers - MODELED_ENFORCERS)}")
        active = obj.get("active", True)
        if not isinstance(active, bool):
            raise TargetError("active must be true or false")
        return cls(
            profile=profile,
            enforcers=enforcers or MODELED_ENFORCERS,
            namespaces=_str_list(obj.get("namespaces"), "namespaces"),
            selector=_selector(obj.get("selector")),
            containers=_str_list(obj.get("containers"), "containers"),
            active=active,
        )

    def to_json(self) -> bytes:
        return orjson.dumps({
            "v": TARGET_SCHEMA_VERSION, "profile": self.profile,
            "enforcers": sorted(self.enforcers), "namespaces": list(self.namespaces),
            "selector": self.selector.to_json(),
            "containers": list(self.containers), "active": self.active,
        })

    def enforcers_for(self, workload: Workload) -> frozenset[str]:
        """The enforcers this target models for ``workload`` (empty: not covered)."""
        if not self.active:
            return frozenset()
        if self.namespaces and workload.namespace not in self.namespaces:
            return frozenset()
        if not self.selector.matches(workload.labels):
            return frozenset()
        if self.containers and workload.container not in self.containers:
            return frozenset()
        opted_out = set()
        if workload.annotations.get(APPARMOR_OPT_OUT + workload.container) == "unconfined":
            opted_out.add("apparmor")
        if workload.annotations.get(SECCOMP_OPT_OUT + workload.container) == "unconfined":
            opted_out.add("seccomp")
        return self.enforcers - opted_out


def enforcer_of(kind: str) -> str:
    """Seccomp models syscalls; AppArmor models every other kind."""
    return "seccomp" if kind == "syscall" else "apparmor"


class TargetSet:
    """The current targets, updated from ``armorflow.targets`` messages."""

    def __init__(self, targets: list[Target] | None = None):
        self._targets: dict[str, Target] = {t.profile: t for t in targets or []}
        self.rejected = 0
        self.version = 0

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, profile: object) -> bool:
        return profile in self._targets

    def get(self, profile: str) -> Target | None:
        return self._targets.get(profile)

    def put(self, target: Target) -> None:
        """Add, replace or (``active: false``) end a target; ``version`` counts real changes."""
        before = self._targets.get(target.profile)
        if target.active:
            self._targets[target.profile] = target
        else:
            self._targets.pop(target.profile, None)
        if self._targets.get(target.profile) != before:
            self.version += 1

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One message of the targets topic; a bad one is counted and logged, not fatal."""
        if not key:
            self.rejected += 1
            log.warning("targets message without a key: skipped")
            return
        profile = key.decode("utf-8", errors="replace")
        if value is None:
            if self._targets.pop(profile, None) is not None:
                self.version += 1
            return
        try:
            self.put(Target.from_json(profile, value))
        except TargetError as exc:
            self.rejected += 1
            log.warning("targets message for %r skipped: %s", profile, exc)

    def match(self, workload: Workload) -> tuple[Target, frozenset[str]] | None:
        """The target covering ``workload`` and its enforcers; first profile name wins ties."""
        for profile in sorted(self._targets):
            target = self._targets[profile]
            enforcers = target.enforcers_for(workload)
            if enforcers:
                return target, enforcers
        return None


# --- attribution ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Where an event belongs: the profile under modeling, its pod and container, the node
    that saw it, and the enforcers it may be modeled for (a container can opt out of one).

    The audit source builds one per process from the :class:`Attributor`; the eBPF tracer
    is handed one per target and stamps it on every event of that target."""

    profile: str
    enforcers: frozenset[str] = MODELED_ENFORCERS
    namespace: str = ""
    pod: str = ""
    container: str = ""
    container_id: str = ""
    node: str = ""

    def __post_init__(self) -> None:
        if not self.profile:
            raise ValueError("an attribution needs a non-empty profile")

    def allows(self, kind: str) -> bool:
        return enforcer_of(kind) in self.enforcers

    def fields(self) -> dict[str, str]:
        """The event fields attribution fills (``make_event(**attribution.fields())``)."""
        return {"profile": self.profile, "namespace": self.namespace, "pod": self.pod,
                "container": self.container, "container_id": self.container_id,
                "node": self.node}


class Attributor:
    """pid -> :class:`Attribution`, with small caches in front of /proc and the resolver."""

    def __init__(self, targets: TargetSet, resolver: Resolver, *, proc: Path = Path("/proc"),
                 cache_size: int = 65_536):
        self.targets = targets
        self.resolver = resolver
        self.proc = proc
        self.cache_size = cache_size
        self._pid_cache: OrderedDict[int, CgroupIdentity | None] = OrderedDict()
        self.counters: dict[str, int] = {"no_process": 0, "host_process": 0,
                                         "sandbox": 0, "unknown_container": 0,
                                         "untargeted": 0,
                                         "attributed": 0}

    def identity_of_pid(self, pid: int, *, cached: bool = True) -> CgroupIdentity | None:
        """The container of a live pid.

        Cached, because a process keeps its container; ``cached=False`` re-reads, for the
        moment just after a runtime starts a process and moves it into its cgroup.
        """
        if cached and pid in self._pid_cache:
            self._pid_cache.move_to_end(pid)
            return self._pid_cache[pid]
        try:
            text = (self.proc / str(pid) / "cgroup").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            self.counters["no_process"] += 1
            return None
        identity = parse_proc_cgroup(text)
        self._pid_cache[pid] = identity
        if len(self._pid_cache) > self.cache_size:
            self._pid_cache.popitem(last=False)
        return identity

    def forget_pid(self, pid: int) -> None:
        """Call when a process exits (the tracer sees it): its pid may be reused."""
        self._pid_cache.pop(pid, None)

    def for_container(self, container_id: str, pod_uid: str | None = None) -> Attribution | None:
        workload = self.resolver.resolve(container_id, pod_uid)
        if workload is None:
            sandbox = is_sandbox(self.resolver, container_id)
            self.counters["sandbox" if sandbox else "unknown_container"] += 1
            return None
        matched = self.targets.match(workload)
        if matched is None:
            self.counters["untargeted"] += 1
            return None
        target, enforcers = matched
        self.counters["attributed"] += 1
        return Attribution(target.profile, enforcers, workload.namespace, workload.pod,
                           workload.container, workload.container_id)

    def for_pid(self, pid: int) -> Attribution | None:
        identity = self.identity_of_pid(pid)
        if identity is None:
            if pid in self._pid_cache:
                self.counters["host_process"] += 1
            return None
        return self.for_container(identity.container_id, identity.pod_uid)

    def for_label(self, pid: int, label: str | None) -> Attribution | None:
        """Audit records: the live container first, else the AppArmor profile in the record.

        A record whose process already exited still names its profile when the kernel saw
        one; that profile is only trusted when it is a current target.
        """
        found = self.for_pid(pid)
        if found is not None:
            return found
        if label is not None:
            target = self.targets.get(label)
            if target is not None and target.active:
                self.counters["attributed"] += 1
                return Attribution(target.profile, target.enforcers)
        return None


# --- live containers ----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveContainer:
    """A targeted container running here: one of its pids and its mount namespace."""

    attribution: Attribution
    mntns: int
    pid: int


def mount_namespace(proc: Path, pid: int) -> int | None:
    try:
        return (proc / str(pid) / "ns" / "mnt").stat().st_ino
    except OSError:
        return None


def scan_targeted_containers(attributor: Attributor) -> dict[int, LiveContainer]:
    """Mount namespace -> targeted container, for every container process in /proc.

    The tracer filters in the kernel by mount namespace; this is how the agent learns
    which namespaces to hand it. One pid per namespace is enough (children share it).
    """
    found: dict[int, LiveContainer] = {}
    seen_containers: set[str] = set()
    for entry in attributor.proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        identity = attributor.identity_of_pid(pid, cached=False)
        if identity is None or identity.container_id in seen_containers:
            continue
        seen_containers.add(identity.container_id)
        attribution = attributor.for_container(identity.container_id, identity.pod_uid)
        if attribution is None:
            continue
        mntns = mount_namespace(attributor.proc, pid)
        if mntns is not None:
            found[mntns] = LiveContainer(attribution, mntns, pid)
    return found
