"""Render a behaviour model as a deny-by-default AppArmor profile, in the seed's layout.

Everything in a model that came from inside a container (paths, peers, fstypes) is
untrusted. Each value is written through a validator or an escaper, and anything that
cannot be written exactly is dropped and counted with its reason; nothing is ever pasted
into the profile text as is. docs/profiles.md describes the layout and the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from armorflow.aaglob import (
    REPLACEMENT_CHAR,
    GlobError,
    escape_literal,
    parse,
    to_profile_path,
)
from armorflow.model import BehaviourModel
from armorflow.names import InvalidName, check_profile_name
from armorflow.render.drops import Drops
from armorflow.render.vocab import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    capability_name,
    family_name,
    signal_name,
    sock_type_name,
)

HEADER: Final = "## == Managed by vArmor == ##"
ABI: Final = "abi <abi/3.0>,"
FLAGS: Final = "flags=(attach_disconnected,mediate_deleted)"
INDENT: Final = "  "
# The fixed peer rules (and their comments) of the seed, which come from the container
# runtimes' default profiles: ``ps`` inside a container reads its siblings, the host
# stops containers with signals, and container processes signal each other.
PTRACE_COMMENT: Final = (
    "## suppress ptrace denials when using 'docker ps' or using 'ps' inside a container"
)
SIGNAL_HOST_COMMENT: Final = (
    "## host (privileged) processes may send signals to container processes."
)
SIGNAL_PEER_COMMENT: Final = "## container processes may send signals amongst themselves."

#: File permission letters in the order AppArmor's own tools write them.
FILE_PERM_ORDER: Final = "mrwalk"

#: Names of Kubernetes objects (DNS-1123 subdomain), which profile names derive from.
#: A peer label: profile names and the child labels AppArmor joins with ``//``. No glob
#: characters, because ``peer=`` takes a pattern and ``*`` there would allow everyone.
_PEER_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,254}(?://[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,254})*")
_FSTYPE = re.compile(r"[a-z0-9][a-z0-9._+-]{0,63}")

#: Library directories whose read-only and mmap accesses collapse to ``DIR/** mr``:
#: the multiarch trees and the lib32/lib64/libx32 ones (see docs/profiles.md).
DEFAULT_LIBRARY_TREES: Final = (
    r"(?:/usr(?:/local)?)?/lib/[a-z0-9_]+-linux-gnu[a-z0-9_]*/",
    r"(?:/usr)?/lib(?:32|64|x32)/",
)

_PTRACE_MODES: Final = ("trace", "read", "tracedby", "readby")
_SIGNAL_DIRECTIONS: Final = ("send", "receive")


#: The renderer refuses a profile name :func:`armorflow.names.check_profile_name` refuses.
ProfileNameError = InvalidName


@dataclass(frozen=True)
class RenderOptions:
    """Choices that change what the profile allows (the defaults are the strict ones)."""

    #: Write a plain ``network,`` (vArmor's output) instead of the observed socket rules.
    allow_all_network: bool = False
    #: Collapse read/mmap-only accesses below a library tree to ``TREE/** mr``.
    collapse_library_trees: bool = True
    #: Regular expressions of library tree directories (each ends with ``/``).
    library_trees: tuple[str, ...] = DEFAULT_LIBRARY_TREES
    #: Add ptrace/signal rules for peers seen in the model (besides the fixed ones).
    observed_peers: bool = True


@dataclass(frozen=True)
class RenderedAppArmor:
    """A rendered profile: its name, its text, and what was dropped on the way."""

    name: str
    text: str
    drops: Drops
    rule_count: int


#: Most single-character wildcards (``?``, classes) a pattern with a star may hold. The
#: parser's DFA grows exponentially with them after a star: ``/**a`` + 13 ``?`` takes
#: seconds, + 20 never finishes. The classifier never writes them; a model from elsewhere
#: might.
MAX_SINGLE_WILDCARDS: Final = 8


def _too_complex(pattern: str) -> bool:
    try:
        tokens = parse(pattern)
    except GlobError:
        return False  # reported as invalid by to_profile_path
    kinds = [t.kind for t in tokens]
    singles = kinds.count("any") + kinds.count("class")
    return singles > MAX_SINGLE_WILDCARDS and ("star" in kinds or "dstar" in kinds)


def _profile_path(pattern: str, section: str, drops: Drops) -> str | None:
    """The profile token for a model path, or None (dropped and counted)."""
    if ("?" in pattern or "[" in pattern) and _too_complex(pattern):
        drops.add(section, "too-complex", pattern)
        return None
    if REPLACEMENT_CHAR in pattern:
        # The producer could not decode the name: the real bytes are unknown, and a rule
        # for U+FFFD would allow some other file while the observed one stays denied.
        drops.add(section, "lossy-utf8", pattern)
        return None
    try:
        return to_profile_path(pattern)
    except GlobError as exc:
        drops.add(section, f"invalid-pattern ({exc})", pattern)
        return None


def _perm_string(perms: Iterable[str]) -> str:
    letters = set(perms)
    if "w" in letters:
        letters.discard("a")  # write implies append; AppArmor refuses both on one rule
    return "".join(p for p in FILE_PERM_ORDER if p in letters)


def _literal_prefix(pattern: str) -> str | None:
    """The literal characters before the first operator, or None if malformed."""
    if "\\" not in pattern and not any(c in pattern for c in "*?[{}]"):
        return pattern
    try:
        tokens = parse(pattern)
    except GlobError:
        return None
    out: list[str] = []
    for t in tokens:
        if t.kind != "lit":
            break
        out.append(t.text)
    return "".join(out)


def _library_tree(pattern: str, trees: list[re.Pattern[str]]) -> str | None:
    prefix = _literal_prefix(pattern)
    if prefix is None:
        return None
    for tree in trees:
        found = tree.match(prefix)
        # Only entries below the tree collapse, never the directory itself.
        if found and pattern != escape_literal(found.group()):
            return found.group()
    return None


def _file_rules(model: BehaviourModel, opts: RenderOptions, drops: Drops) -> list[str]:
    trees = [re.compile(t) for t in opts.library_trees] if opts.collapse_library_trees else []
    merged: dict[tuple[str, bool], set[str]] = {}
    links: set[tuple[str, str, bool]] = set()
    for (path, old, owner), perms in model.files.items():
        # Per letter: a dynamicResult loaded from elsewhere may hold "rw" as one item.
        letters = set("".join(perms))
        known = letters & set(FILE_PERM_ORDER)
        for p in sorted(letters - known):
            drops.add("file", f"unknown-permission {p!r}", path)
        if not known:
            drops.add("file", "no-permissions", path)
            continue
        if old and "l" in known:
            links.add((path, old, owner))
            known.discard("l")
            if not known:
                continue
        tree = _library_tree(path, trees) if known <= {"m", "r"} and not old else None
        key = (escape_literal(tree) + "**" if tree else path, owner)
        merged.setdefault(key, set()).update(known)
    rules: list[str] = []
    for (path, owner), perms in merged.items():
        token = _profile_path(path, "file", drops)
        if token is not None:
            rules.append(f"{'owner ' if owner else ''}{token} {_perm_string(perms)},")
    for path, old, owner in links:
        new_token = _profile_path(path, "file", drops)
        old_token = _profile_path(old, "file", drops)
        if new_token is not None and old_token is not None:
            rules.append(f"{'owner ' if owner else ''}link {new_token} -> {old_token},")
    return sorted(rules)


def _network_rules(model: BehaviourModel, drops: Drops) -> list[str]:
    rules: set[str] = set()
    for raw_family, raw_type, protocol in model.networks:
        family = family_name(raw_family)
        if family is None:
            drops.add("network", "unknown-family", raw_family)
            continue
        if raw_type:
            sock_type = sock_type_name(raw_type)
            if sock_type is None:
                drops.add("network", "unknown-socket-type", (raw_family, raw_type))
                continue
            if protocol not in (0, DEFAULT_PROTOCOL.get((family, sock_type), 0)):
                # AppArmor's rule names a type or a protocol, never both; the type rule
                # is what the kernel mediates and it covers this protocol too.
                drops.add("network", "protocol-covered-by-type", (family, sock_type, protocol))
            rules.add(f"network {family} {sock_type},")
        elif (family, protocol) in PROTOCOLS:
            rules.add(f"network {family} {PROTOCOLS[family, protocol]},")
        else:
            if protocol:
                drops.add("network", "protocol-has-no-name", (family, protocol))
            rules.add(f"network {family},")
    return sorted(rules)


def _peer(peer: str, section: str, drops: Drops) -> str | None:
    if _PEER_LABEL.fullmatch(peer):
        return peer
    drops.add(section, "invalid-peer", peer)
    return None


def _ptrace_rules(name: str, model: BehaviourModel, drops: Drops) -> list[str]:
    rules: list[str] = []
    for raw_peer, modes in model.ptraces.items():
        peer = _peer(raw_peer, "ptrace", drops)
        if peer is None or peer == name:  # the fixed rule already allows every mode
            continue
        unknown = modes - set(_PTRACE_MODES)
        for mode in sorted(unknown):
            drops.add("ptrace", "unknown-mode", mode)
        wanted = [m for m in _PTRACE_MODES if m in modes]
        if wanted:
            rules.append(f"ptrace ({','.join(wanted)}) peer={peer},")
    return sorted(rules)


def _signal_rules(name: str, model: BehaviourModel, drops: Drops) -> list[str]:
    rules: list[str] = []
    for raw_peer, (directions, signals) in model.signals.items():
        peer = _peer(raw_peer, "signal", drops)
        if peer is None or peer == name:  # the fixed send,receive rule covers it
            continue
        dirs = [d for d in _SIGNAL_DIRECTIONS if d in directions]
        if peer == "unconfined" and dirs == ["receive"]:
            continue  # the fixed receive-from-unconfined rule covers it
        for d in sorted(directions - set(_SIGNAL_DIRECTIONS)):
            drops.add("signal", "unknown-direction", d)
        names: set[str] = set()
        for raw in signals:
            sig = signal_name(raw)
            if sig is None:
                drops.add("signal", "unknown-signal", raw)
            else:
                names.add(sig)
        if not dirs or not names:
            # A signal rule without a set would allow every signal: never widen.
            drops.add("signal", "nothing-to-allow", raw_peer)
            continue
        rules.append(f"signal ({','.join(dirs)}) set=({','.join(sorted(names))}) peer={peer},")
    return sorted(rules)


def _mount_rules(model: BehaviourModel, drops: Drops) -> list[str]:
    rules: set[str] = set()
    for op, path, fstype in model.mounts:
        if op == "umount":
            continue  # the fixed ``umount,`` rule covers every unmount
        if op not in ("mount", "remount", "pivot_root"):
            drops.add("mount", "unknown-op", op)
            continue
        token = _profile_path(path, "mount", drops)
        if token is None:
            continue
        if op == "mount":
            if fstype and not _FSTYPE.fullmatch(fstype):
                drops.add("mount", "invalid-fstype", fstype)
                continue
            rules.add(f"mount fstype={fstype} -> {token}," if fstype else f"mount -> {token},")
        else:
            rules.add(f"{op} {token},")
    return sorted(rules)


def _capability_rules(model: BehaviourModel, drops: Drops) -> list[str]:
    rules: set[str] = set()
    for raw in model.capabilities:
        cap = capability_name(raw)
        if cap is None:
            drops.add("capability", "unknown-capability", raw)
        else:
            rules.add(f"capability {cap},")
    return sorted(rules)


def _exec_rules(model: BehaviourModel, drops: Drops) -> list[str]:
    rules = []
    for pattern in model.executions:
        token = _profile_path(pattern, "exec", drops)
        if token is not None:
            rules.append(f"{token} ix,")
    return sorted(rules)


def render_apparmor(
    name: str, model: BehaviourModel, *, options: RenderOptions | None = None
) -> RenderedAppArmor:
    """Render ``model`` as the AppArmor profile ``name`` (seed layout, sorted sections).

    Raises :class:`ProfileNameError` for an unusable name; any unusable model entry is
    dropped and counted in the result's ``drops``.
    """
    opts = options or RenderOptions()
    check_profile_name(name)
    drops = Drops()
    for kind in sorted(model.unhandled):
        drops.add("model", "unhandled-kind", kind)

    sections: list[tuple[str, list[str]]] = [
        ("EXEC", _exec_rules(model, drops)),
        ("FILE", _file_rules(model, opts, drops)),
        ("CAPABILITY", _capability_rules(model, drops)),
        ("NETWORK", ["network,"] if opts.allow_all_network else _network_rules(model, drops)),
        (
            "PTRACE",
            [
                PTRACE_COMMENT,
                f"ptrace (trace,read,tracedby,readby) peer={name},",
                *_observed(_ptrace_rules(name, model, drops) if opts.observed_peers else []),
            ],
        ),
        (
            "SIGNAL",
            [
                SIGNAL_HOST_COMMENT,
                "signal (receive) peer=unconfined,",
                SIGNAL_PEER_COMMENT,
                f"signal (send,receive) peer={name},",
                *_observed(_signal_rules(name, model, drops) if opts.observed_peers else []),
            ],
        ),
        ("ADDITIONAL", ["umount,", *_mount_rules(model, drops)]),
    ]

    lines = [
        HEADER,
        "",
        ABI,
        "#include <tunables/global>",
        "",
        f"profile {name} {FLAGS} {{",
        "",
        f"{INDENT}#include <abstractions/base>",
    ]
    rule_count = 0
    for title, rules in sections:
        lines += ["", f"{INDENT}# ---- {title} ----"]
        lines += [INDENT + r for r in rules]
        rule_count += sum(1 for r in rules if not r.startswith("#"))
    lines += ["", "}", "", ""]
    return RenderedAppArmor(name=name, text="\n".join(lines), drops=drops, rule_count=rule_count)


def _observed(rules: list[str]) -> list[str]:
    return ["## observed peers", *rules] if rules else []
