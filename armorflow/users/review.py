"""What a reviewer of a learned model looks at first: rules that reach sensitive places or
powers, and what changed between two models of a profile.

The places come from the classifier's safety policy (armorflow/pipeline/classifier/
safety.py): a glob may never widen a permission there, so a rule that carries the
permission there, literal or not, deserves a human's look before the profile is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from armorflow.aaglob import has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, EntryKey
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
class Flag:
    """One rule of the model that a reviewer should look at, and why."""

    kind: str
    rule: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "rule": self.rule, "why": self.why}


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
    """The model's rules that reach sensitive places or powers, sorted."""
    flags: list[Flag] = []
    for (pattern, old, _owner), perms in sorted(model.files.items()):
        path = pattern if has_wildcard(pattern) else unescape_literal(pattern)
        why = _place_flag(path, set(perms)) or (
            SENSITIVE_READS.get(path) if "r" in perms else None)
        if why:
            shown = f"{pattern} {''.join(sorted(perms))}" + (f" (from {old})" if old else "")
            flags.append(Flag("file", shown, why))
    for pattern in sorted(model.executions):
        path = pattern if has_wildcard(pattern) else unescape_literal(pattern)
        if has_wildcard(pattern) and (why := _place_flag(path, {"x"})):
            flags.append(Flag("exec", pattern, why))
    for cap in sorted(model.capabilities):
        if cap in SENSITIVE_CAPABILITIES:
            flags.append(Flag("capability", cap, SENSITIVE_CAPABILITIES[cap]))
    for op, path, fstype in sorted(model.mounts):
        flags.append(Flag("mount", f"{op} {path} {fstype}".strip(),
                          "mount operations change what every path means"))
    for peer in sorted(model.ptraces):
        flags.append(Flag("ptrace", peer, "traces or reads another process"))
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
    material (collapse examples) and the profile names."""
    def entries(model: BehaviourModel) -> dict[EntryKey, Any]:
        return {e: v for e, v in model.entries() if e[0] not in ("collapsed", "profile")}

    a, b = entries(before), entries(after)
    return ModelDiff(
        added=sorted(((e, b[e]) for e in b.keys() - a.keys()), key=repr),
        removed=sorted(((e, a[e]) for e in a.keys() - b.keys()), key=repr),
        changed=sorted(((e, a[e], b[e]) for e in a.keys() & b.keys() if a[e] != b[e]),
                       key=repr),
    )
