"""What a reviewer of a learned model looks at first: rules that reach sensitive places or
powers, and what changed between two models of a profile.

The places come from the classifier's safety policy (armorflow/pipeline/classifier/
safety.py): a glob may never widen a permission there, so a rule that carries the
permission there, literal or not, deserves a human's look before the profile is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from armorflow.aaglob import has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, EntryKey, Provenance
from armorflow.pipeline.classifier.safety import RULES

#: Files whose mere reading is worth a look (credentials, the kernel's secrets).
SENSITIVE_READS: Final[dict[str, str]] = {
    "/etc/shadow": "password hashes",
    "/etc/gshadow": "group password hashes",
    "/etc/sudoers": "who may become root",
    "/proc/kcore": "the kernel's memory",
    "/proc/kallsyms": "kernel addresses (defeats KASLR)",
}
#: Capabilities that amount to root on the node, or close to it.
SENSITIVE_CAPABILITIES: Final[dict[str, str]] = {
    "sys_admin": "mounts, namespaces, most of root",
    "sys_module": "loads kernel modules",
    "sys_ptrace": "reads and changes other processes",
    "sys_rawio": "raw device and port access",
    "dac_override": "ignores file permissions",
    "dac_read_search": "reads any file",
    "net_admin": "reconfigures the network",
    "bpf": "loads BPF programs",
    "sys_boot": "reboots the node",
    "mac_admin": "changes the LSM policy",
}


@dataclass(frozen=True)
class Source:
    """One workload that made or widened a rule."""

    node: str
    namespace: str
    pod: str
    container: str

    @classmethod
    def parse(cls, text: str) -> Source:
        # "node/namespace/pod/container": none of those Kubernetes names holds a "/".
        parts = [*text.split("/", 3), "", "", ""][:4]
        return cls(*parts)

    def describe(self) -> str:
        where = "/".join(p for p in (self.namespace, self.pod, self.container) if p)
        return f"{where or '?'} on {self.node or '?'}"

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "namespace": self.namespace, "pod": self.pod,
                "container": self.container}


@dataclass(frozen=True)
class RuleProvenance:
    """When a rule of the model was first seen, and which workloads made it (at most
    PROVENANCE_SOURCES of them: the model keeps the first few, not every replica)."""

    kind: str
    rule: str
    first_seen_ns: int
    sources: tuple[Source, ...]

    @classmethod
    def of(cls, entry: EntryKey, origin: Provenance) -> RuleProvenance:
        first, sources = origin
        return cls(entry[0], entry_text(entry), first,
                   tuple(Source.parse(s) for s in sources))

    def first_seen(self) -> str:
        """ISO 8601, UTC, to the millisecond."""
        moment = datetime.fromtimestamp(self.first_seen_ns / 1e9, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def describe(self) -> str:
        by = "; ".join(s.describe() for s in self.sources) or "unknown"
        return f"first seen {self.first_seen()} by {by}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "firstSeen": self.first_seen(),
                "firstSeenNs": self.first_seen_ns,
                "sources": [s.to_json() for s in self.sources]}


def entry_text(entry: EntryKey) -> str:
    """A model entry as a reviewer reads it (``owner /tmp/x rw``, ``clone flags 0x...``)."""
    kind = entry[0]
    if kind == "file":
        _kind, path, old, owner = entry
        return f"{'owner ' if owner else ''}{path}" + (f" (from {old})" if old else "")
    if kind == "nsflags":
        return f"{entry[1]} with namespace flags {int(entry[2]):#x}"
    return " ".join(str(part) for part in entry[1:] if part not in ("", None))


def rule_provenance(model: BehaviourModel) -> list[RuleProvenance]:
    """Every rule the model knows the provenance of, earliest first."""
    rows = [RuleProvenance.of(entry, origin) for entry, origin in model.provenance.items()
            if entry[0] not in ("profile", "collapsed")]
    rows.sort(key=lambda r: (r.first_seen_ns, r.kind, r.rule))
    return rows


@dataclass(frozen=True)
class Flag:
    """One rule of the model that a reviewer should look at, and why."""

    kind: str
    rule: str
    why: str
    #: where the rule came from, when the model knows
    provenance: RuleProvenance | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "rule": self.rule, "why": self.why}
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_json()
        return out


def _under(path: str, place: str) -> bool:
    return path == place or path.startswith(place.rstrip("/") + "/")


def _segments_named(path: str, names: tuple[str, ...]) -> bool:
    return any(seg in names for seg in path.split("/"))


def _place_flag(path: str, letters: set[str]) -> str | None:
    """Why ``path`` with ``letters`` is sensitive per the safety table (places and
    directory names, whatever the path's own wildcards), else None."""
    for rule in RULES:
        if not rule.refuses & letters:
            continue
        if rule.where == "places" and any(_under(path, d) for d in rule.dirs):
            return f"{rule.name}: {rule.why}"
        if rule.where == "names" and _segments_named(path, rule.dirs):
            return f"{rule.name}: {rule.why}"
    return None


def sensitive_rules(model: BehaviourModel) -> list[Flag]:
    """The model's rules that reach sensitive places or powers, sorted, each with its
    provenance when the model knows it."""
    def seen(entry: EntryKey) -> RuleProvenance | None:
        origin = model.provenance.get(entry)
        return RuleProvenance.of(entry, origin) if origin is not None else None

    flags: list[Flag] = []
    for (pattern, old, owner), perms in sorted(model.files.items()):
        path = pattern if has_wildcard(pattern) else unescape_literal(pattern)
        why = _place_flag(path, set(perms)) or (
            SENSITIVE_READS.get(path) if "r" in perms else None)
        if why:
            shown = f"{pattern} {''.join(sorted(perms))}" + (f" (from {old})" if old else "")
            flags.append(Flag("file", shown, why, seen(("file", pattern, old, owner))))
    for pattern in sorted(model.executions):
        path = pattern if has_wildcard(pattern) else unescape_literal(pattern)
        if has_wildcard(pattern) and (why := _place_flag(path, {"x"})):
            flags.append(Flag("exec", pattern, why, seen(("exec", pattern))))
    for cap in sorted(model.capabilities):
        if cap in SENSITIVE_CAPABILITIES:
            flags.append(Flag("capability", cap, SENSITIVE_CAPABILITIES[cap],
                              seen(("capability", cap))))
    for op, path, fstype in sorted(model.mounts):
        flags.append(Flag("mount", f"{op} {path} {fstype}".strip(),
                          "mount operations change what every path means",
                          seen(("mount", op, path, fstype))))
    for peer in sorted(model.ptraces):
        flags.append(Flag("ptrace", peer, "traces or reads another process",
                          seen(("ptrace", peer))))
    return flags


@dataclass(frozen=True)
class ModelDiff:
    """What ``after`` has that ``before`` has not, and the reverse, entry by entry."""

    added: list[tuple[EntryKey, Any]]
    removed: list[tuple[EntryKey, Any]]
    changed: list[tuple[EntryKey, Any, Any]]

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """``+ entry``, ``- entry``, ``~ entry: before -> after``, sorted by entry."""
        def show(entry: EntryKey) -> str:
            return " ".join(str(part) for part in entry if part not in ("", None))

        out = [(e, f"+ {show(e)}" + (f" {v}" if v not in (None, "") else ""))
               for e, v in self.added]
        out += [(e, f"- {show(e)}" + (f" {v}" if v not in (None, "") else ""))
                for e, v in self.removed]
        out += [(e, f"~ {show(e)}: {a} -> {b}") for e, a, b in self.changed]
        return [text for _e, text in sorted(out, key=lambda item: repr(item[0]))]

    def to_json(self) -> dict[str, Any]:
        return {"added": [[list(e), v] for e, v in self.added],
                "removed": [[list(e), v] for e, v in self.removed],
                "changed": [[list(e), a, b] for e, a, b in self.changed]}


def diff_models(before: BehaviourModel, after: BehaviourModel) -> ModelDiff:
    """Entry by entry (a file rule, a syscall, a capability...), ignoring report-only
    material (collapse examples, provenance) and the profile names."""
    def entries(model: BehaviourModel) -> dict[EntryKey, Any]:
        return {e: v for e, v in model.entries()
                if e[0] not in ("collapsed", "origin", "profile")}

    a, b = entries(before), entries(after)
    return ModelDiff(
        added=sorted(((e, b[e]) for e in b.keys() - a.keys()), key=repr),
        removed=sorted(((e, a[e]) for e in a.keys() - b.keys()), key=repr),
        changed=sorted(((e, a[e], b[e]) for e in a.keys() & b.keys() if a[e] != b[e]),
                       key=repr),
    )
