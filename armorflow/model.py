"""The behaviour model: what a workload was seen doing, as sets that only grow.

One type for every component (pipeline, offline ``armorflow model``, renderer, sink). Its
JSON form is vArmor's ``dynamicResult``. Every operation is a set union, so merging is
commutative, associative and idempotent: a duplicated or replayed event changes nothing,
and at-least-once delivery gives exact results. :func:`reduce_events` is the one reducer
both the streaming and the offline path use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from armorflow.aaglob import escape_literal, has_wildcard, matches, unescape_literal
from armorflow.events import FILE_PERMS, Event

#: Maps a literal path from an event to the pattern the model stores.
PathMapper = Callable[[str], str]

#: How many literal examples the model keeps per collapsed pattern (the smallest ones,
#: so that keeping them stays a commutative, idempotent union).
COLLAPSE_EXAMPLES = 3

FileKey = tuple[str, str, bool]  # (path pattern, old_path pattern or "", owner)
NetworkKey = tuple[str, str, int]  # (family, sock_type, protocol)
MountKey = tuple[str, str, str]  # (op, path pattern, fstype)
#: One independent piece of a model: ("file", path, old_path, owner), ("syscall", name)...
EntryKey = tuple[Any, ...]


def _perm_order(perms: Iterable[str]) -> list[str]:
    return sorted(set(perms), key=FILE_PERMS.index)


@dataclass
class BehaviourModel:
    """Distinct behaviour of one profile, merged across nodes, replicas and kinds."""

    profiles: set[str] = field(default_factory=set)
    executions: set[str] = field(default_factory=set)
    files: dict[FileKey, set[str]] = field(default_factory=dict)
    capabilities: set[str] = field(default_factory=set)
    networks: set[NetworkKey] = field(default_factory=set)
    ptraces: dict[str, set[str]] = field(default_factory=dict)
    signals: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)
    mounts: set[MountKey] = field(default_factory=set)
    unhandled: set[str] = field(default_factory=set)
    syscalls: set[str] = field(default_factory=set)
    #: pattern -> up to COLLAPSE_EXAMPLES literal paths it replaced (report material).
    collapsed: dict[str, set[str]] = field(default_factory=dict)
    #: Entries changed by :meth:`add` since the last :meth:`drain_dirty`.
    dirty: set[EntryKey] = field(default_factory=set, repr=False, compare=False)
    #: directory -> collapsed patterns of its children (see :meth:`learned_pattern`).
    _learned: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    # --- growing -----------------------------------------------------------------------

    def add(self, event: Event, path_of: PathMapper = escape_literal) -> bool:
        """Fold one validated event in; returns True when the model changed.

        This is the pipeline's hot path: each branch tests membership before it adds, so
        that change detection costs one lookup. Every entry that changes is recorded in
        :attr:`dirty`, so that the streaming pipeline persists only what changed.
        """
        kind = event["kind"]
        dirty = self.dirty
        profile = event["profile"]
        changed = False
        if profile not in self.profiles:
            self.profiles.add(profile)
            dirty.add(("profile", profile))
            changed = True
        entry: EntryKey
        if kind == "syscall":
            name = event["name"]
            if name in self.syscalls:
                return changed
            self.syscalls.add(name)
            entry = ("syscall", name)
        elif kind == "file":
            path = self._pattern(event["path"], path_of)
            old = event.get("old_path")
            key = (path, self._pattern(old, path_of) if old else "", bool(event["owner"]))
            perms = event["perms"]
            have = self.files.get(key)
            if have is None:
                self.files[key] = set(perms)
            elif all(p in have for p in perms):
                return changed
            else:
                have.update(perms)
            entry = ("file", *key)
        elif kind == "exec":
            path = self._pattern(event["path"], path_of)
            if path in self.executions:
                return changed
            self.executions.add(path)
            entry = ("exec", path)
        elif kind == "capability":
            name = event["name"]
            if name in self.capabilities:
                return changed
            self.capabilities.add(name)
            entry = ("capability", name)
        elif kind == "network":
            net = (event["family"], event["sock_type"], event["protocol"])
            if net in self.networks:
                return changed
            self.networks.add(net)
            entry = ("network", *net)
        elif kind == "signal":
            peer = event["peer"]
            dirs, sigs = self.signals.setdefault(peer, (set(), set()))
            if event["direction"] in dirs and event["signal"] in sigs:
                return changed
            dirs.add(event["direction"])
            sigs.add(event["signal"])
            entry = ("signal", peer)
        elif kind == "ptrace":
            peer = event["peer"]
            modes = self.ptraces.setdefault(peer, set())
            if event["mode"] in modes:
                return changed
            modes.add(event["mode"])
            entry = ("ptrace", peer)
        elif kind == "mount":
            mount = (event["op"], self._pattern(event["path"], path_of), event["fstype"])
            if mount in self.mounts:
                return changed
            self.mounts.add(mount)
            entry = ("mount", *mount)
        else:
            if kind in self.unhandled:
                return changed
            self.unhandled.add(kind)
            entry = ("unhandled", kind)
        dirty.add(entry)
        return True

    def _pattern(self, literal: str, path_of: PathMapper) -> str:
        pattern = path_of(literal)
        if pattern == literal or pattern == escape_literal(literal):
            # Kept literal. If the classifier already collapsed a sibling of this name
            # into a pattern that matches it too (it missed this one), use that pattern:
            # the rule exists anyway, and state stays bounded by the classifier's hits.
            learned = self.learned_pattern(literal, pattern)
            if learned is None:
                return pattern
            pattern = learned
        self._record_example(pattern, literal)
        return pattern

    def _record_example(self, pattern: str, literal: str) -> None:
        examples = self.collapsed.get(pattern)
        if examples is None:
            examples = self.collapsed[pattern] = set()
            self._index_pattern(pattern)
        if literal not in examples and (
            len(examples) < COLLAPSE_EXAMPLES or literal < max(examples)
        ):
            examples.add(literal)
            if len(examples) > COLLAPSE_EXAMPLES:
                examples.discard(max(examples))
            self.dirty.add(("collapsed", pattern))

    def _index_pattern(self, pattern: str) -> None:
        """Remember a collapsed pattern by its directory, when only its name is a glob."""
        parent, _, name = pattern.rpartition("/")
        if name and has_wildcard(name) and not has_wildcard(parent):
            learned = self._learned.setdefault(parent, [])
            learned.append(pattern)
            learned.sort()

    def learned_pattern(self, literal: str, escaped: str) -> str | None:
        """The smallest collapsed pattern of the literal's directory that matches it."""
        learned = self._learned.get(escaped.rpartition("/")[0])
        if learned:
            for candidate in learned:
                if matches(candidate, literal):
                    return candidate
        return None

    def fold_learned(self) -> None:
        """Fold literal file rules into a collapsed pattern of the model that matches them.

        The way in does this only for patterns learned before the literal arrived; doing
        it again over the whole model makes the result independent of arrival order.
        """
        folded: dict[FileKey, set[str]] = {}
        for (path, old, owner), perms in self.files.items():
            target = path
            if not has_wildcard(path):
                literal = unescape_literal(path)
                learned = self.learned_pattern(literal, path)
                if learned is not None:
                    target = learned
                    self._record_example(learned, literal)
            folded.setdefault((target, old, owner), set()).update(perms)
        self.files = folded

    # --- entries: the model as independent key/value pairs (the pipeline's table rows) ----

    def drain_dirty(self) -> set[EntryKey]:
        """The entries changed since the last drain."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    def entry_value(self, entry: EntryKey) -> Any:
        """The JSON-able value an entry holds (``None`` for plain set members)."""
        kind = entry[0]
        if kind == "file":
            return "".join(_perm_order(self.files[(entry[1], entry[2], entry[3])]))
        if kind == "ptrace":
            return sorted(self.ptraces[entry[1]])
        if kind == "signal":
            dirs, sigs = self.signals[entry[1]]
            return [sorted(dirs), sorted(sigs)]
        if kind == "collapsed":
            return sorted(self.collapsed[entry[1]])
        return None

    def entries(self) -> Iterator[tuple[EntryKey, Any]]:
        """Every entry of the model with its value."""
        keys: list[EntryKey] = [("profile", p) for p in self.profiles]
        keys += [("exec", p) for p in self.executions]
        keys += [("file", *k) for k in self.files]
        keys += [("capability", c) for c in self.capabilities]
        keys += [("network", *n) for n in self.networks]
        keys += [("ptrace", p) for p in self.ptraces]
        keys += [("signal", p) for p in self.signals]
        keys += [("mount", *m) for m in self.mounts]
        keys += [("unhandled", u) for u in self.unhandled]
        keys += [("syscall", s) for s in self.syscalls]
        keys += [("collapsed", c) for c in self.collapsed]
        for key in keys:
            yield key, self.entry_value(key)

    def apply_entry(self, entry: EntryKey, value: Any) -> None:
        """Union one stored entry into the model (recovery from the pipeline's table)."""
        kind = entry[0]
        if kind == "file":
            self.files.setdefault((entry[1], entry[2], bool(entry[3])), set()).update(value)
        elif kind == "ptrace":
            self.ptraces.setdefault(entry[1], set()).update(value)
        elif kind == "signal":
            dirs, sigs = self.signals.setdefault(entry[1], (set(), set()))
            dirs.update(value[0])
            sigs.update(value[1])
        elif kind == "collapsed":
            if entry[1] not in self.collapsed:
                self._index_pattern(entry[1])
            examples = self.collapsed.setdefault(entry[1], set())
            examples.update(value)
            while len(examples) > COLLAPSE_EXAMPLES:
                examples.discard(max(examples))
        elif kind == "network":
            self.networks.add((entry[1], entry[2], int(entry[3])))
        elif kind == "mount":
            self.mounts.add((entry[1], entry[2], entry[3]))
        else:
            members = {
                "profile": self.profiles, "exec": self.executions,
                "capability": self.capabilities, "unhandled": self.unhandled,
                "syscall": self.syscalls,
            }.get(kind)
            if members is None:
                raise ValueError(f"unknown model entry {entry!r}")
            members.add(entry[1])

    def merge(self, other: BehaviourModel) -> bool:
        """Union ``other`` into this model; returns True when this model changed."""
        before = self.fingerprint()
        self.profiles |= other.profiles
        self.executions |= other.executions
        for key, perms in other.files.items():
            self.files.setdefault(key, set()).update(perms)
        self.capabilities |= other.capabilities
        self.networks |= other.networks
        for peer, modes in other.ptraces.items():
            self.ptraces.setdefault(peer, set()).update(modes)
        for peer, (dirs, sigs) in other.signals.items():
            mine = self.signals.setdefault(peer, (set(), set()))
            mine[0].update(dirs)
            mine[1].update(sigs)
        self.mounts |= other.mounts
        self.unhandled |= other.unhandled
        self.syscalls |= other.syscalls
        for pattern, examples in other.collapsed.items():
            if pattern not in self.collapsed:
                self._index_pattern(pattern)
            mine_ex = self.collapsed.setdefault(pattern, set())
            mine_ex.update(examples)
            while len(mine_ex) > COLLAPSE_EXAMPLES:
                mine_ex.discard(max(mine_ex))
        return self.fingerprint() != before

    # --- measuring -----------------------------------------------------------------------

    def size(self) -> int:
        """Number of distinct entries at the top level (cheap change detection)."""
        return (
            len(self.profiles) + len(self.executions) + len(self.files)
            + len(self.capabilities) + len(self.networks) + len(self.ptraces)
            + len(self.signals) + len(self.mounts) + len(self.unhandled) + len(self.syscalls)
        )

    def fingerprint(self) -> tuple[int, int, int, int]:
        """Changes whenever the model grows (all members are grow-only sets)."""
        return (
            self.size(),
            sum(len(p) for p in self.files.values()),
            sum(len(m) for m in self.ptraces.values())
            + sum(len(d) + len(s) for d, s in self.signals.values()),
            sum(len(e) for e in self.collapsed.values()),
        )

    def is_empty(self) -> bool:
        return self.size() == 0

    def counts(self) -> dict[str, int]:
        return {
            "executions": len(self.executions),
            "files": len(self.files),
            "capabilities": len(self.capabilities),
            "networks": len(self.networks),
            "ptraces": len(self.ptraces),
            "signals": len(self.signals),
            "mounts": len(self.mounts),
            "syscalls": len(self.syscalls),
            "unhandled": len(self.unhandled),
        }

    # --- vArmor's dynamicResult ------------------------------------------------------------

    def to_dynamic_result(self) -> dict[str, Any]:
        """The canonical (sorted) vArmor ``dynamicResult`` form."""
        files = []
        for (path, old, owner), perms in sorted(self.files.items()):
            entry: dict[str, Any] = {"path": path}
            if old:
                entry["oldPath"] = old
            entry["permissions"] = _perm_order(perms)
            entry["owner"] = owner
            files.append(entry)
        return {
            "apparmor": {
                "profiles": sorted(self.profiles),
                "executions": sorted(self.executions),
                "files": files,
                "capabilities": sorted(self.capabilities),
                "networks": [
                    {"family": f, "sockType": t, "protocol": p}
                    for f, t, p in sorted(self.networks)
                ],
                "ptraces": [
                    {"permissions": sorted(m), "peer": peer}
                    for peer, m in sorted(self.ptraces.items())
                ],
                "signals": [
                    {"permissions": sorted(d), "signals": sorted(s), "peer": peer}
                    for peer, (d, s) in sorted(self.signals.items())
                ],
                "mounts": [
                    {"op": op, "path": path, "fstype": fstype}
                    for op, path, fstype in sorted(self.mounts)
                ],
                "unhandled": sorted(self.unhandled),
            },
            "seccomp": {"syscalls": sorted(self.syscalls)},
        }

    @classmethod
    def from_dynamic_result(cls, data: dict[str, Any]) -> BehaviourModel:
        aa = data.get("apparmor") or {}
        model = cls(
            profiles=set(aa.get("profiles") or ()),
            executions=set(aa.get("executions") or ()),
            capabilities=set(aa.get("capabilities") or ()),
            unhandled=set(aa.get("unhandled") or ()),
            syscalls=set((data.get("seccomp") or {}).get("syscalls") or ()),
        )
        for f in aa.get("files") or ():
            key = (f["path"], f.get("oldPath") or "", bool(f.get("owner", False)))
            model.files.setdefault(key, set()).update(f.get("permissions") or ())
        for n in aa.get("networks") or ():
            model.networks.add((n["family"], n.get("sockType", ""), int(n.get("protocol", 0))))
        for p in aa.get("ptraces") or ():
            model.ptraces.setdefault(p["peer"], set()).update(p.get("permissions") or ())
        for s in aa.get("signals") or ():
            dirs, sigs = model.signals.setdefault(s["peer"], (set(), set()))
            dirs.update(s.get("permissions") or ())
            sigs.update(s.get("signals") or ())
        for m in aa.get("mounts") or ():
            model.mounts.add((m["op"], m["path"], m.get("fstype", "")))
        return model

    def to_dict(self) -> dict[str, Any]:
        """The model document armorflow stores and publishes."""
        return {
            "dynamicResult": self.to_dynamic_result(),
            "collapsed": {k: sorted(v) for k, v in sorted(self.collapsed.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BehaviourModel:
        model = cls.from_dynamic_result(data.get("dynamicResult") or {})
        for pattern, examples in (data.get("collapsed") or {}).items():
            model.collapsed[pattern] = set(examples)
            model._index_pattern(pattern)
        return model

    def canonical_json(self) -> bytes:
        """Byte-stable JSON: equal models give equal bytes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)


def reduce_events(
    events: Iterable[Event],
    path_of: PathMapper = escape_literal,
    into: dict[str, BehaviourModel] | None = None,
) -> dict[str, BehaviourModel]:
    """Fold events into one model per profile: the reducer of both pipelines."""
    models: dict[str, BehaviourModel] = {} if into is None else into
    for event in events:
        profile = event["profile"]
        model = models.get(profile)
        if model is None:
            model = models[profile] = BehaviourModel()
        model.add(event, path_of)
    return models
