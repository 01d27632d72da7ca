"""The behaviour model: what a workload was seen doing, as sets that only grow.

One type for every component (pipeline, offline ``armorflow model``, renderer, sink). Its
JSON form is vArmor's ``dynamicResult``. Every operation is a set union, so merging is
commutative, associative and idempotent: a duplicated or replayed event changes nothing,
and at-least-once delivery gives exact results. :func:`reduce_events` is the one reducer
both the streaming and the offline path use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from armorflow.aaglob import escape_literal
from armorflow.events import FILE_PERMS, Event

#: Maps a literal path from an event to the pattern the model stores.
PathMapper = Callable[[str], str]

#: How many literal examples the model keeps per collapsed pattern (the smallest ones,
#: so that keeping them stays a commutative, idempotent union).
COLLAPSE_EXAMPLES = 3

FileKey = tuple[str, str, bool]  # (path pattern, old_path pattern or "", owner)
NetworkKey = tuple[str, str, int]  # (family, sock_type, protocol)
MountKey = tuple[str, str, str]  # (op, path pattern, fstype)


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

    # --- growing -----------------------------------------------------------------------

    def add(self, event: Event, path_of: PathMapper = escape_literal) -> bool:
        """Fold one validated event in; returns True when the model changed."""
        kind = event["kind"]
        before = self.size()
        profile = event["profile"]
        if profile not in self.profiles:
            self.profiles.add(profile)
        if kind == "file":
            path = self._pattern(event["path"], path_of)
            old = event.get("old_path")
            key = (path, self._pattern(old, path_of) if old else "", bool(event["owner"]))
            have = self.files.get(key)
            if have is None:
                self.files[key] = set(event["perms"])
                return True
            n = len(have)
            have.update(event["perms"])
            return len(have) != n or self.size() != before
        if kind == "syscall":
            self.syscalls.add(event["name"])
        elif kind == "exec":
            self.executions.add(self._pattern(event["path"], path_of))
        elif kind == "capability":
            self.capabilities.add(event["name"])
        elif kind == "network":
            self.networks.add((event["family"], event["sock_type"], event["protocol"]))
        elif kind == "signal":
            dirs, sigs = self.signals.setdefault(event["peer"], (set(), set()))
            n = len(dirs) + len(sigs)
            dirs.add(event["direction"])
            sigs.add(event["signal"])
            return len(dirs) + len(sigs) != n or self.size() != before
        elif kind == "ptrace":
            modes = self.ptraces.setdefault(event["peer"], set())
            n = len(modes)
            modes.add(event["mode"])
            return len(modes) != n or self.size() != before
        elif kind == "mount":
            self.mounts.add(
                (event["op"], self._pattern(event["path"], path_of), event["fstype"])
            )
        else:
            self.unhandled.add(kind)
        return self.size() != before

    def _pattern(self, literal: str, path_of: PathMapper) -> str:
        pattern = path_of(literal)
        if pattern != escape_literal(literal):
            examples = self.collapsed.setdefault(pattern, set())
            if literal not in examples:
                examples.add(literal)
                if len(examples) > COLLAPSE_EXAMPLES:
                    examples.discard(max(examples))
        return pattern

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
