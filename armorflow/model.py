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
from armorflow.events import BEHAVIOUR_FIELDS, FILE_PERMS, Event, behaviour_of
from armorflow.nsflags import NAMESPACE_SYSCALLS, namespace_bits

#: Maps a literal path from an event to the pattern the model stores. A mapper may also
#: carry ``allows(pattern, perms) -> bool`` (the classifier stage's safety policy,
#: armorflow/pipeline/classifier/safety.py): a collapsed pattern it refuses for an entry's
#: permissions is not used, and the entry keeps its literal path.
PathMapper = Callable[[str], str]

#: How many literal examples the model keeps per collapsed pattern (the smallest ones,
#: so that keeping them stays a commutative, idempotent union).
COLLAPSE_EXAMPLES = 3

#: Behaviours a model remembers having folded, per kind, before it starts over: bounds
#: the cache's memory (a few MB) while keeping a busy workload's repeats to one lookup.
SEEN_LIMIT = 4_096

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
    #: clone/clone3/unshare/setns -> the distinct sets of namespace flags (CLONE_NEW* bits)
    #: they were called with; a call seen without its flags counts as 0 (no namespace).
    namespace_flags: dict[str, set[int]] = field(default_factory=dict)
    #: pattern -> up to COLLAPSE_EXAMPLES literal paths it replaced (report material).
    collapsed: dict[str, set[str]] = field(default_factory=dict)
    #: Entries changed by :meth:`add` since the last :meth:`drain_dirty`.
    dirty: set[EntryKey] = field(default_factory=set, repr=False, compare=False)
    #: directory -> collapsed patterns of its children (see :meth:`learned_pattern`).
    _learned: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    #: kind -> behaviours already folded in (a cache, emptied when it reaches SEEN_LIMIT).
    _seen: dict[str, set[Any]] = field(default_factory=dict, repr=False, compare=False)

    # --- growing -----------------------------------------------------------------------

    def add(self, event: Event, path_of: PathMapper = escape_literal) -> bool:
        """Fold one validated event in; returns True when the model changed."""
        kind = event["kind"]
        if kind not in BEHAVIOUR_FIELDS:
            changed = self._add_profile(event["profile"])
            if kind in self.unhandled:
                return changed
            self.unhandled.add(kind)
            self.dirty.add(("unhandled", kind))
            return True
        return self.add_behaviours(event["profile"], kind, (behaviour_of(event),), path_of)

    def add_behaviours(
        self,
        profile: str,
        kind: str,
        behaviours: Iterable[Any],
        path_of: PathMapper = escape_literal,
    ) -> bool:
        """Fold the behaviours (see :func:`~armorflow.events.behaviour_of`) of ``kind``
        events of ``profile`` in; returns True when the model changed.

        This is the pipeline's hot path. A batch's behaviours are deduplicated first, and
        those this model has folded before are skipped with one set difference (a bounded
        cache: folding again would change nothing, the union being idempotent). Every entry
        that changes is recorded in :attr:`dirty`, so that the streaming pipeline persists
        only what changed.
        """
        changed = self._add_profile(profile)
        seen = self._seen.get(kind)
        if seen is None:
            seen = self._seen[kind] = set()
        new = set(behaviours)
        new.difference_update(seen)
        if not new:
            return changed
        if len(seen) + len(new) > SEEN_LIMIT:
            seen.clear()
        seen.update(new)
        fold = getattr(self, f"_fold_{kind}")
        for behaviour in new:
            if fold(behaviour, path_of):
                changed = True
        return changed

    def _add_profile(self, profile: str) -> bool:
        if profile in self.profiles:
            return False
        self.profiles.add(profile)
        self.dirty.add(("profile", profile))
        return True

    # One fold per kind: each tests membership before it adds, so that change detection
    # costs one lookup, and returns True when it changed an entry.

    def _fold_syscall(self, behaviour: tuple[str, int | None], _path_of: PathMapper) -> bool:
        name, flags = behaviour
        changed = False
        if name not in self.syscalls:
            self.syscalls.add(name)
            self.dirty.add(("syscall", name))
            changed = True
        if name in NAMESPACE_SYSCALLS:
            bits = namespace_bits(name, flags)
            seen = self.namespace_flags.setdefault(name, set())
            if bits not in seen:
                seen.add(bits)
                self.dirty.add(("nsflags", name, bits))
                changed = True
        return changed

    def _fold_capability(self, name: str, _path_of: PathMapper) -> bool:
        if name in self.capabilities:
            return False
        self.capabilities.add(name)
        self.dirty.add(("capability", name))
        return True

    def _fold_file(self, behaviour: tuple[str, str | None, bool, str], path_of: PathMapper) -> bool:
        literal, old, owner, perms = behaviour
        key = (
            self._pattern(literal, path_of, perms),
            self._pattern(old, path_of, perms) if old else "",
            owner,
        )
        have = self.files.get(key)
        if have is None:
            self.files[key] = set(perms)
        elif all(p in have for p in perms):
            return False
        else:
            have.update(perms)
        self.dirty.add(("file", *key))
        return True

    def _fold_exec(self, literal: str, path_of: PathMapper) -> bool:
        path = self._pattern(literal, path_of, "x")
        if path in self.executions:
            return False
        self.executions.add(path)
        self.dirty.add(("exec", path))
        return True

    def _fold_network(self, behaviour: NetworkKey, _path_of: PathMapper) -> bool:
        if behaviour in self.networks:
            return False
        self.networks.add(behaviour)
        self.dirty.add(("network", *behaviour))
        return True

    def _fold_signal(self, behaviour: tuple[str, str, str], _path_of: PathMapper) -> bool:
        peer, direction, signal = behaviour
        dirs, sigs = self.signals.setdefault(peer, (set(), set()))
        if direction in dirs and signal in sigs:
            return False
        dirs.add(direction)
        sigs.add(signal)
        self.dirty.add(("signal", peer))
        return True

    def _fold_ptrace(self, behaviour: tuple[str, str], _path_of: PathMapper) -> bool:
        peer, mode = behaviour
        modes = self.ptraces.setdefault(peer, set())
        if mode in modes:
            return False
        modes.add(mode)
        self.dirty.add(("ptrace", peer))
        return True

    def _fold_mount(self, behaviour: tuple[str, str, str], path_of: PathMapper) -> bool:
        op, path, fstype = behaviour
        mount = (op, self._pattern(path, path_of, "w"), fstype)  # a mount replaces a path
        if mount in self.mounts:
            return False
        self.mounts.add(mount)
        self.dirty.add(("mount", *mount))
        return True

    def _pattern(self, literal: str, path_of: PathMapper, perms: str = "") -> str:
        pattern = path_of(literal)
        if pattern == literal or pattern == escape_literal(literal):
            # Kept literal. If the classifier already collapsed a sibling of this name
            # into a pattern that matches it too (it missed this one), use that pattern:
            # the rule exists anyway, and state stays bounded by the classifier's hits.
            learned = self.learned_pattern(literal, pattern)
            if learned is None:
                return pattern
            pattern = learned
        allows = getattr(path_of, "allows", None)
        if allows is not None and not allows(pattern, perms):
            return escape_literal(literal)
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

    def fold_learned(self, allows: Callable[[str, str], bool] | None = None) -> None:
        """Fold literal file rules into a collapsed pattern of the model that matches them.

        The way in does this only for patterns learned before the literal arrived; doing
        it again over the whole model makes the result independent of arrival order.
        ``allows(pattern, perms)``, when given, may refuse a pattern for a rule's perms.
        """
        folded: dict[FileKey, set[str]] = {}
        for (path, old, owner), perms in self.files.items():
            target = path
            if not has_wildcard(path):
                literal = unescape_literal(path)
                learned = self.learned_pattern(literal, path)
                if learned is not None and (allows is None or allows(learned, "".join(perms))):
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
        keys += [("nsflags", s, b) for s, bits in self.namespace_flags.items() for b in bits]
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
        elif kind == "nsflags":
            self.namespace_flags.setdefault(entry[1], set()).add(int(entry[2]))
        else:
            members = {
                "profile": self.profiles,
                "exec": self.executions,
                "capability": self.capabilities,
                "unhandled": self.unhandled,
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
        for name, bits in other.namespace_flags.items():
            self.namespace_flags.setdefault(name, set()).update(bits)
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
            len(self.profiles)
            + len(self.executions)
            + len(self.files)
            + len(self.capabilities)
            + len(self.networks)
            + len(self.ptraces)
            + len(self.signals)
            + len(self.mounts)
            + len(self.unhandled)
            + len(self.syscalls)
            + sum(len(bits) for bits in self.namespace_flags.values())
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
                    {"family": f, "sockType": t, "protocol": p} for f, t, p in sorted(self.networks)
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
            "seccomp": self._seccomp_result(),
        }

    def _seccomp_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"syscalls": sorted(self.syscalls)}
        if self.namespace_flags:  # absent from models that never saw such a call
            result["namespaceFlags"] = {
                name: sorted(bits) for name, bits in sorted(self.namespace_flags.items())
            }
        return result

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
        for name, bits in ((data.get("seccomp") or {}).get("namespaceFlags") or {}).items():
            model.namespace_flags[name] = {int(b) for b in bits}
        for name in model.syscalls & NAMESPACE_SYSCALLS.keys():
            # A model from before flags were recorded (or from the audit log): the call
            # counts as seen without namespace flags.
            model.namespace_flags.setdefault(name, {0})
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
