"""The behaviour model: what a workload was seen doing, as sets that only grow.

One type for every component (pipeline, offline ``armorflow model``, renderer, sink). Its
JSON form is vArmor's ``dynamicResult``. Every operation is a set union, so merging is
commutative, associative and idempotent: a duplicated or replayed event changes nothing,
and at-least-once delivery gives exact results. :func:`reduce_events` is the one reducer
both the streaming and the offline path use.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any, Final

import orjson

from armorflow.aaglob import (
    GlobError,
    escape_literal,
    has_wildcard,
    matches,
    parse,
    unescape_literal,
)
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
#: Default most path rules (file rules and executed paths) one model holds. Names are
#: chosen by the workload: a million distinct ones make a million rules, about 1 KB of
#: memory each while the window is open, and a profile no parser or API server takes.
#: Past the budget a new path rule is counted, not kept (see ``over_budget``).
RULE_BUDGET = 100_000

#: Sources a rule's provenance keeps: the smallest, so that keeping them stays a
#: commutative, idempotent union like the rest of the model.
PROVENANCE_SOURCES = 3

FileKey = tuple[str, str, bool]  # (path pattern, old_path pattern or "", owner)
NetworkKey = tuple[str, str, int]  # (family, sock_type, protocol)
MountKey = tuple[str, str, str]  # (op, path pattern, fstype)
#: One independent piece of a model: ("file", path, old_path, owner), ("syscall", name)...
EntryKey = tuple[Any, ...]
#: Where a rule came from: (first seen, ns since the epoch; the sources that made or
#: widened it, each "node/namespace/pod/container", at most PROVENANCE_SOURCES).
Provenance = tuple[int, tuple[str, ...]]
#: An event's source: (node, namespace, pod, container).
SourceKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class OriginFields:
    """How to read the provenance of an event: dicts and fast-decoded structs differ.
    Both getters run at C speed (operator.itemgetter/attrgetter) on the hot path."""

    source: Callable[[Any], SourceKey]
    ts: Callable[[Any], int]

    def of(self, item: Any) -> Provenance:
        # Interned: a workload's thousands of rules share a handful of sources.
        return self.ts(item), (sys.intern("/".join(self.source(item))),)


#: Provenance of validated event dicts, and of the pipeline's fast-decoded structs.
EVENT_ORIGIN: Final = OriginFields(itemgetter("node", "namespace", "pod", "container"),
                                   itemgetter("ts"))
STRUCT_ORIGIN: Final = OriginFields(attrgetter("node", "namespace", "pod", "container"),
                                    attrgetter("ts"))


def merge_provenance(have: Provenance | None, new: Provenance) -> Provenance:
    """The earlier first-seen time and the smallest sources of both."""
    if have is None and len(new[1]) <= 1:
        return new
    if have is None:
        return new[0], tuple(sorted(set(new[1])))[:PROVENANCE_SOURCES]
    sources = have[1] if set(new[1]) <= set(have[1]) else tuple(
        sorted(set(have[1]) | set(new[1])))[:PROVENANCE_SOURCES]
    return min(have[0], new[0]), sources


def _first_origins(
    items: Sequence[Any], behaviour_of: Callable[[Any], Any], origins: OriginFields,
    new: set[tuple[Any, SourceKey]],
) -> dict[Any, Provenance]:
    """behaviour -> the provenance its new (behaviour, source) pairs give: the first
    event of each pair, the earliest over its sources."""
    pending = set(new)
    out: dict[Any, Provenance] = {}
    names: dict[SourceKey, str] = {}
    source_of, ts_of = origins.source, origins.ts
    for item in items:
        behaviour, source = pair = (behaviour_of(item), source_of(item))
        if pair not in pending:
            continue
        pending.discard(pair)  # the pair's later events are repeats
        name = names.get(source)
        if name is None:
            name = names[source] = sys.intern("/".join(source))
        have = out.get(behaviour)
        origin = (ts_of(item), (name,))
        out[behaviour] = origin if have is None else merge_provenance(have, origin)
        if not pending:
            break
    return out


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
    #: entry -> where it came from (report material: not part of the model's identity,
    #: since which event of many made a rule depends on arrival order).
    provenance: dict[EntryKey, Provenance] = field(
        default_factory=dict, repr=False, compare=False)
    #: Entries changed by :meth:`add` since the last :meth:`drain_dirty`.
    dirty: set[EntryKey] = field(default_factory=set, repr=False, compare=False)
    #: The provenance of the behaviour being folded (set by add_behaviours).
    _origin: Provenance | None = field(default=None, repr=False, compare=False)
    #: directory -> collapsed patterns of its children (see :meth:`learned_pattern`).
    _learned: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    #: (the mapper add was given, the mapper this model folds paths with): a mapper
    #: that offers ``scoped()`` gives each model one with state of its own, so what it
    #: learns from this model's names never changes another model's patterns.
    _mapper: tuple[PathMapper, PathMapper] | None = field(default=None, repr=False,
                                                          compare=False)
    #: kind -> behaviours already folded in (a cache, emptied when it reaches SEEN_LIMIT).
    _seen: dict[str, set[Any]] = field(default_factory=dict, repr=False, compare=False)
    #: Most path rules this model takes (None: no limit); new ones past it are counted
    #: in ``over_budget`` instead of kept, so that memory stays bounded.
    rule_budget: int | None = field(default=None, repr=False, compare=False)
    #: New path rules refused by the budget since the owner last took the count.
    over_budget: int = field(default=0, repr=False, compare=False)
    #: The same, by the source ("node/namespace/pod/container") that sent them: at most 8
    #: sources, so that a flood from many cannot grow it.
    over_budget_sources: Counter[str] = field(default_factory=Counter, repr=False,
                                              compare=False)

    # --- growing -----------------------------------------------------------------------

    def add(self, event: Event, path_of: PathMapper = escape_literal) -> bool:
        """Fold one validated event in; returns True when the model changed."""
        kind = event["kind"]
        if kind not in BEHAVIOUR_FIELDS:
            changed = self._add_profile(event["profile"])
            if kind in self.unhandled:
                return changed
            self.unhandled.add(kind)
            self._touch(("unhandled", kind), EVENT_ORIGIN.of(event))
            return True
        return self.add_events(event["profile"], kind, (event,), behaviour_of, EVENT_ORIGIN,
                               path_of)

    def add_behaviours(
        self,
        profile: str,
        kind: str,
        behaviours: Iterable[Any],
        path_of: PathMapper = escape_literal,
    ) -> bool:
        """Fold the behaviours (see :func:`~armorflow.events.behaviour_of`) of ``kind``
        events of ``profile`` in, without provenance; returns True when the model changed.

        A batch's behaviours are deduplicated first, and those this model has folded
        before are skipped with one set difference (a bounded cache: folding again would
        change nothing, the union being idempotent). Every entry that changes is recorded
        in :attr:`dirty`, so that the streaming pipeline persists only what changed.
        """
        changed = self._add_profile(profile)
        new = self._unseen(kind, set(behaviours))
        return self._fold_new(kind, new, None, path_of) or changed

    def add_events(
        self,
        profile: str,
        kind: str,
        items: Sequence[Any],
        behaviour_of: Callable[[Any], Any],
        origins: OriginFields,
        path_of: PathMapper = escape_literal,
    ) -> bool:
        """Fold ``kind`` events of ``profile`` (dicts or fast-decoded structs) in, with the
        provenance ``origins`` reads off them; returns True when the model changed.

        This is the pipeline's hot path. The cache of what was folded holds (behaviour,
        source) pairs: a replica doing what another did folds once more, and the entry's
        provenance gains that source and the earlier time; a repeat from a known source
        costs its share of one set difference. The first event of each new pair gives the
        time: an agent sends a behaviour when it first happens.
        """
        changed = self._add_profile(profile)
        pairs = zip(map(behaviour_of, items), map(origins.source, items), strict=True)
        new = self._unseen(kind, set(pairs))
        if not new:
            return changed
        provenance = _first_origins(items, behaviour_of, origins, new)
        return self._fold_new(kind, provenance, provenance, path_of) or changed

    def _unseen(self, kind: str, batch: set[Any]) -> set[Any]:
        """The members of ``batch`` not folded before, now remembered as folded."""
        seen = self._seen.get(kind)
        if seen is None:
            seen = self._seen[kind] = set()
        batch.difference_update(seen)
        if batch:
            if len(seen) + len(batch) > SEEN_LIMIT:
                seen.clear()
            seen.update(batch)
        return batch

    def _fold_new(
        self, kind: str, behaviours: Iterable[Any], provenance: dict[Any, Provenance] | None,
        path_of: PathMapper,
    ) -> bool:
        changed = False
        fold = getattr(self, f"_fold_{kind}")
        for behaviour in behaviours:
            self._origin = provenance[behaviour] if provenance is not None else None
            if fold(behaviour, path_of):
                changed = True
        self._origin = None
        return changed

    def _touch(self, entry: EntryKey, origin: Provenance | None = None) -> None:
        """Mark an entry changed, and note where the change came from."""
        self.dirty.add(entry)
        origin = origin or self._origin
        if origin is not None:
            self.note_provenance(entry, origin)

    def _again(self, entry: EntryKey) -> None:
        """An entry that did not change: the behaviour may still come from a new source."""
        if self._origin is not None:
            self.note_provenance(entry, self._origin)

    def note_provenance(self, entry: EntryKey, origin: Provenance) -> None:
        have = self.provenance.get(entry)
        if have is None and len(origin[1]) <= 1:  # the common case: a new rule
            self.provenance[entry] = origin
            self.dirty.add(("origin", *entry))
            return
        merged = merge_provenance(have, origin)
        if merged != have:
            self.provenance[entry] = merged
            self.dirty.add(("origin", *entry))

    def _add_profile(self, profile: str) -> bool:
        if profile in self.profiles:
            return False
        self.profiles.add(profile)
        self._touch(("profile", profile))
        return True

    def _full(self) -> bool:
        """The rule budget is spent: count the new path rule instead of keeping it."""
        if self.rule_budget is None or (
                len(self.files) + len(self.executions) + len(self.mounts) < self.rule_budget):
            return False
        self.over_budget += 1
        origin = self._origin
        source = origin[1][0] if origin is not None and origin[1] else "unknown"
        if source in self.over_budget_sources or len(self.over_budget_sources) < 8:
            self.over_budget_sources[source] += 1
        return True

    # One fold per kind: each tests membership before it adds, so that change detection
    # costs one lookup, and returns True when it changed an entry.

    def _fold_syscall(self, behaviour: tuple[str, int | None], _path_of: PathMapper) -> bool:
        name, flags = behaviour
        changed = False
        if name not in self.syscalls:
            self.syscalls.add(name)
            self._touch(("syscall", name))
            changed = True
        else:
            self._again(("syscall", name))
        if name in NAMESPACE_SYSCALLS:
            bits = namespace_bits(name, flags)
            seen = self.namespace_flags.setdefault(name, set())
            if bits not in seen:
                seen.add(bits)
                self._touch(("nsflags", name, bits))
                changed = True
            else:
                self._again(("nsflags", name, bits))
        return changed

    def _fold_capability(self, name: str, _path_of: PathMapper) -> bool:
        if name in self.capabilities:
            self._again(("capability", name))
            return False
        self.capabilities.add(name)
        self._touch(("capability", name))
        return True

    def _fold_file(self, behaviour: tuple[str, str | None, bool, str], path_of: PathMapper) -> bool:
        literal, old, owner, perms = behaviour
        path = self._pattern(literal, path_of, perms)
        target = self._pattern(old, path_of, perms) if old else ""
        key = (path, target, owner)
        have = self.files.get(key)
        if have is None and self._full():
            return False
        self._examples(path, literal)
        if old:
            self._examples(target, old)
        if have is None:
            self.files[key] = set(perms)
        elif all(p in have for p in perms):
            # Another name of a glob, or another replica: the rule stays, its
            # provenance may gain a source.
            self._again(("file", *key))
            return False
        else:
            have.update(perms)
        self._touch(("file", *key))
        return True

    def _fold_exec(self, literal: str, path_of: PathMapper) -> bool:
        path = self._pattern(literal, path_of, "x")
        if path in self.executions:
            self._examples(path, literal)
            self._again(("exec", path))
            return False
        if self._full():
            return False
        self._examples(path, literal)
        self.executions.add(path)
        self._touch(("exec", path))
        return True

    def _fold_network(self, behaviour: NetworkKey, _path_of: PathMapper) -> bool:
        if behaviour in self.networks:
            self._again(("network", *behaviour))
            return False
        self.networks.add(behaviour)
        self._touch(("network", *behaviour))
        return True

    def _fold_signal(self, behaviour: tuple[str, str, str], _path_of: PathMapper) -> bool:
        peer, direction, signal = behaviour
        dirs, sigs = self.signals.setdefault(peer, (set(), set()))
        if direction in dirs and signal in sigs:
            self._again(("signal", peer))
            return False
        dirs.add(direction)
        sigs.add(signal)
        self._touch(("signal", peer))
        return True

    def _fold_ptrace(self, behaviour: tuple[str, str], _path_of: PathMapper) -> bool:
        peer, mode = behaviour
        modes = self.ptraces.setdefault(peer, set())
        if mode in modes:
            self._again(("ptrace", peer))
            return False
        modes.add(mode)
        self._touch(("ptrace", peer))
        return True

    def _fold_mount(self, behaviour: tuple[str, str, str], path_of: PathMapper) -> bool:
        op, path, fstype = behaviour
        mount = (op, self._pattern(path, path_of, "w"), fstype)  # a mount replaces a path
        if mount in self.mounts:
            self._examples(mount[1], path)
            self._again(("mount", *mount))
            return False
        if self._full():
            return False
        self._examples(mount[1], path)
        self.mounts.add(mount)
        self._touch(("mount", *mount))
        return True

    def _pattern(self, literal: str, path_of: PathMapper, perms: str = "") -> str:
        """The pattern a literal path folds into (nothing recorded: a rule refused by the
        budget must leave nothing behind; :meth:`_examples` records it once kept)."""
        mapper = self._mapper
        if mapper is None or mapper[0] is not path_of:
            scoped = getattr(path_of, "scoped", None)
            mapper = self._mapper = (path_of, scoped() if scoped is not None else path_of)
        path_of = mapper[1]
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
        return pattern

    def _examples(self, pattern: str, literal: str) -> None:
        """Record ``literal`` as an example of ``pattern`` when the classifier collapsed
        it (the report shows what a glob replaced)."""
        if pattern != escape_literal(literal):
            self.record_example(pattern, literal)

    def record_example(self, pattern: str, literal: str) -> None:
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
                    self.record_example(learned, literal)
            folded.setdefault((target, old, owner), set()).update(perms)
        self.files = folded
        self.remap_provenance()

    def fold_subsumed(self, allows: Callable[[str, str], bool] | None = None) -> int:
        """Fold each file rule whose name glob matches only names that another rule of
        the same directory, link target and owner already allows with at least its
        permissions (``/tmp/tmpr_*`` beside ``/tmp/tmp*``); returns how many were folded.

        Such a rule allows nothing more, and whether a stream made it depends on what the
        classifier had learned when its name arrived; folding it gives the same model for
        the same behaviour, whatever the order. Nothing is widened: the broader rule and
        its permissions were there already. ``allows(pattern, perms)``, when given, must
        accept the broader rule as it stands (a stored glob the policy refuses later is
        replaced by its examples, and a rule folded into it would be lost).
        """
        groups: dict[tuple[str, str, bool], list[str]] = {}
        for path, old, owner in self.files:
            parent, _, name = path.rpartition("/")
            if has_wildcard(name) and not has_wildcard(parent):
                groups.setdefault((parent, old, owner), []).append(path)
        folded = 0
        # rules, execs and mounts naming each pattern: its examples go with the last one
        uses: Counter[str] = Counter()
        for path, old, _owner in self.files:
            uses[path] += 1
            uses[old] += 1
        uses.update(self.executions)
        uses.update(mount[1] for mount in self.mounts)
        for (_parent, old, owner), paths in groups.items():
            if len(paths) < 2:
                continue
            shapes = {p: _name_shape(p.rpartition("/")[2]) for p in paths}
            letters = {p: frozenset("".join(self.files[(p, old, owner)])) for p in paths}
            # plain prefix*suffix globs by prefix: a narrow glob's covers are among the
            # prefixes of its own fixed prefix (linear in names, not pairs of rules)
            by_prefix: dict[str, list[str]] = {}
            for p in sorted(paths):
                shape = shapes[p]
                if shape is not None and shape[2] and (
                        allows is None or allows(p, "".join(sorted(letters[p])))):
                    by_prefix.setdefault(shape[0], []).append(p)
            for narrow in sorted(paths, key=lambda p: (-_fixed_length(shapes[p]), p)):
                shape = shapes[narrow]
                if shape is None:
                    continue
                wide = next((w for k in range(len(shape[0]) + 1)
                             for w in by_prefix.get(shape[0][:k], ())
                             if w != narrow and (w, old, owner) in self.files
                             and letters[narrow] <= letters[w]
                             and _name_within(shape, shapes[w])), None)
                if wide is None:
                    continue
                self._fold_file_rule((narrow, old, owner), (wide, old, owner))
                uses[narrow] -= 1
                uses[old] -= 1
                if uses[narrow] <= 0:  # no other rule names it: its examples went along
                    self.collapsed.pop(narrow, None)
                folded += 1
        return folded

    def _fold_file_rule(self, key: FileKey, into: FileKey) -> None:
        """Drop the rule ``key`` that ``into`` covers; its examples are copied and its
        provenance goes to ``into``."""
        del self.files[key]
        for literal in sorted(self.collapsed.get(key[0], ())):
            self.record_example(into[0], literal)
        origin = self.provenance.pop(("file", *key), None)
        if origin is not None:
            self.note_provenance(("file", *into), origin)

    def remap_provenance(self) -> None:
        """Carry the provenance of file rules that a collapse replaced over to the rule
        that replaced them (the one whose pattern matches the old literal name)."""
        orphans = [e for e in self.provenance
                   if e[0] == "file" and (e[1], e[2], e[3]) not in self.files]
        if not orphans:
            return
        globs: dict[tuple[str, bool], list[str]] = {}
        for path, old, owner in self.files:
            if has_wildcard(path):
                globs.setdefault((old, owner), []).append(path)
        for entry in orphans:
            origin = self.provenance.pop(entry)
            literal = unescape_literal(entry[1])
            for owner in (entry[3], not entry[3]):  # a glob may drop ``owner``
                found = next((p for p in sorted(globs.get((entry[2], owner), ()))
                              if matches(p, literal)), None)
                if found is not None:
                    self.note_provenance(("file", found, entry[2], owner), origin)
                    break

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
        if kind == "origin":
            first, sources = self.provenance[_origin_target(entry)]
            return [first, list(sources)]
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
        keys += [("origin", *k) for k in self.provenance]
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
        elif kind == "origin":
            target = _origin_target(entry)
            origin = (int(value[0]), tuple(str(s) for s in value[1]))
            self.provenance[target] = merge_provenance(self.provenance.get(target), origin)
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
        for entry, origin in other.provenance.items():
            self.provenance[entry] = merge_provenance(self.provenance.get(entry), origin)
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

    def to_dict(self, provenance: bool = True) -> dict[str, Any]:
        """The model document armorflow stores and publishes; ``provenance`` lists, for
        each rule, when it was first seen and which sources made it."""
        doc: dict[str, Any] = {
            "dynamicResult": self.to_dynamic_result(),
            "collapsed": {k: sorted(v) for k, v in sorted(self.collapsed.items())},
        }
        if provenance and self.provenance:
            doc["provenance"] = [
                {"entry": list(entry), "firstSeen": first, "sources": list(sources)}
                for entry, (first, sources) in sorted(self.provenance.items(), key=_entry_order)
            ]
        return doc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BehaviourModel:
        model = cls.from_dynamic_result(data.get("dynamicResult") or {})
        for pattern, examples in (data.get("collapsed") or {}).items():
            model.collapsed[pattern] = set(examples)
            model._index_pattern(pattern)
        for row in data.get("provenance") or ():
            entry = tuple(row["entry"])
            origin = (int(row["firstSeen"]), tuple(str(s) for s in row.get("sources") or ()))
            model.provenance[entry] = merge_provenance(model.provenance.get(entry), origin)
        return model

    def canonical_json(self) -> bytes:
        """Byte-stable JSON: equal models give equal bytes (provenance, which depends on
        which of many events came first, is left out)."""
        return orjson.dumps(self.to_dict(provenance=False), option=orjson.OPT_SORT_KEYS)


def _origin_target(entry: EntryKey) -> EntryKey:
    """The entry an ``("origin", ...)`` row is about (a file key's owner as a bool)."""
    target = tuple(entry[1:])
    if target and target[0] == "file" and len(target) == 4:
        target = (*target[:3], bool(target[3]))
    return target


def _entry_order(item: tuple[EntryKey, Provenance]) -> bytes:
    return orjson.dumps(list(item[0]))


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


#: A file name glob as (fixed prefix, fixed suffix, plain): the literal characters before
#: its first and after its last wildcard, and whether it is exactly ``prefix*suffix``.
NameShape = tuple[str, str, bool]


def _name_shape(name: str) -> NameShape | None:
    """The shape of a one-segment name glob, or None for one this cannot judge (``**``
    crosses directories, an alternation may match the empty name)."""
    try:
        tokens = parse(name)
    except GlobError:
        return None
    if any(t.kind in ("dstar", "open", "sep", "close")
           or (t.kind == "class" and (t.negated or "/" in t.text)) for t in tokens):
        return None  # a class that might take a "/" could reach below the directory
    if all(t.kind == "lit" for t in tokens):
        return None  # a literal name: fold_learned's business
    first = next(i for i, t in enumerate(tokens) if t.kind != "lit")
    last = max(i for i, t in enumerate(tokens) if t.kind != "lit")
    prefix = "".join(t.text for t in tokens[:first])
    suffix = "".join(t.text for t in tokens[last + 1:])
    plain = first == last and tokens[first].kind == "star"
    return prefix, suffix, plain


def _fixed_length(shape: NameShape | None) -> int:
    return -1 if shape is None else len(shape[0]) + len(shape[1])


def _name_within(narrow: NameShape | None, wide: NameShape | None) -> bool:
    """Every name ``narrow`` matches is matched by ``wide``, a plain ``prefix*suffix``: a
    name of ``narrow`` is its prefix, something, its suffix; ``wide``'s star then takes
    the middle (a star filling a whole name needs one character, and ``narrow``'s names
    are never empty: it holds a wildcard that takes at least one or a fixed part)."""
    if narrow is None or wide is None or not wide[2]:
        return False
    return narrow[0].startswith(wide[0]) and narrow[1].endswith(wide[1])
