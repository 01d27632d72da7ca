"""Render a behaviour model as a deny-by-default OCI / Kubernetes ``localhost`` Seccomp profile.

The profile allows the syscalls the workload was seen making plus the few a container
runtime makes under the filter while starting it (:mod:`runtime_syscalls`), the variants
and timing-dependent calls a second run may make instead (:mod:`syscall_families`), and answers
every other syscall with EPERM (``SCMP_ACT_ERRNO``). The output is deterministic: equal
models give equal JSON.

The syscalls that create or join namespaces are allowed only with the namespace flags the
workload was seen using (:mod:`armorflow.nsflags`): ``clone``, ``unshare`` and ``setns``
get one argument filter per observed flag set, and ``clone3``, whose flags a filter
cannot read, is answered with ENOSYS (so that the C library falls back to ``clone``)
unless the workload asked it for a namespace. docs/profiles.md explains each rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from armorflow.model import BehaviourModel
from armorflow.nsflags import FLAGS_ARGUMENT, NAMESPACE_SYSCALLS
from armorflow.render.drops import Drops
from armorflow.render.runtime_syscalls import RUNTIME_SYSCALLS
from armorflow.render.syscall_families import TIMING_SYSCALLS, with_families

DEFAULT_ACTION: Final = "SCMP_ACT_ERRNO"
ALLOW: Final = "SCMP_ACT_ALLOW"
ERRNO: Final = "SCMP_ACT_ERRNO"
MASKED_EQ: Final = "SCMP_CMP_MASKED_EQ"
#: What clone3 gets when it is not allowed: "not implemented" makes glibc (>= 2.34),
#: musl and Rust's std retry with clone, which the filter can inspect; EPERM would not.
ENOSYS: Final = 38
#: x86_64 and its companions: 32-bit x86 and x32 binaries run on the same kernel, and
#: runtimes list them so that a filter also covers those entry points.
ARCHITECTURES: Final = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")

_SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


@cache
def _known_to_libseccomp() -> Any:
    """A name -> bool check backed by libseccomp, or None when it is not installed."""
    try:
        import seccomp
    except ImportError:  # pragma: no cover - python3-seccomp is installed by setup.sh
        return None
    arches = (seccomp.Arch.X86_64, seccomp.Arch.X86, seccomp.Arch.X32)

    def known(name: str) -> bool:
        # A name is usable when at least one of the profile's architectures has it
        # (a 32-bit-only name such as _llseek is valid for the x86 entry point).
        return any(seccomp.resolve_syscall(a, name) >= 0 for a in arches)

    return known


def syscall_name_ok(name: str) -> bool:
    """True when ``name`` is a syscall of one of the profile's architectures."""
    if not _SYSCALL_NAME.fullmatch(name):
        return False
    known = _known_to_libseccomp()
    return True if known is None else bool(known(name))


def render_seccomp(
    model: BehaviourModel,
    *,
    extra: Iterable[str] = (),
    runtime: bool = True,
    drops: Drops | None = None,
    families: bool = True,
    timing: bool = True,
) -> dict[str, Any]:
    """The Seccomp profile of ``model`` as a JSON-ready dict.

    ``extra`` adds syscalls (a user's allow-list, taken as it is); ``runtime=False``
    leaves out the runtime start-up set, for a filter a process installs on itself right
    before its own exec. Each syscall the workload made brings its family
    (:mod:`syscall_families`: the variants its next input may take instead) unless
    ``families=False``, and the syscalls whose use depends on timing
    (:data:`TIMING_SYSCALLS`) are allowed unless ``timing=False``. Unknown names are
    dropped (counted in ``drops`` when given), because libseccomp refuses a filter that
    names them.
    """
    seen = set(model.syscalls)
    wanted = (with_families(seen) if families else seen) | set(extra)
    if timing:
        wanted |= TIMING_SYSCALLS.keys()
    if runtime:
        wanted |= RUNTIME_SYSCALLS.keys()
    filtered = namespace_rules(model, wanted)
    names: list[str] = []
    for name in sorted(wanted - NAMESPACE_SYSCALLS.keys()):
        if syscall_name_ok(name):
            names.append(name)
        elif drops is not None:
            drops.add("seccomp", "unknown-syscall", name)
    if filtered.allow_clone3:
        names = sorted([*names, "clone3"])
    rules: list[dict[str, Any]] = [{"names": names, "action": ALLOW}] if names else []
    for name, bits in filtered.allowed:
        rules.append({"names": [name], "action": ALLOW, "args": [{
            "index": FLAGS_ARGUMENT[name], "value": NAMESPACE_SYSCALLS[name], "valueTwo": bits,
            "op": MASKED_EQ}]})
    if filtered.clone3_enosys:
        rules.append({"names": ["clone3"], "action": ERRNO, "errnoRet": ENOSYS})
    return {
        "defaultAction": DEFAULT_ACTION,
        "architectures": list(ARCHITECTURES),
        "syscalls": rules,
    }


@dataclass(frozen=True)
class NamespaceRules:
    """How a profile treats the namespace syscalls (see :func:`namespace_rules`)."""

    #: (syscall, namespace bits) pairs allowed, each its own argument-filtered rule
    allowed: tuple[tuple[str, int], ...]
    #: clone3 allowed without a filter: the workload asked it for a namespace
    allow_clone3: bool
    #: clone3 answered with ENOSYS, so that the C library falls back to clone
    clone3_enosys: bool


def namespace_rules(model: BehaviourModel, wanted: set[str]) -> NamespaceRules:
    """The namespace syscalls among ``wanted`` and the flag sets each may use.

    A name without recorded flag sets (a model from before flags were recorded, the
    audit log, a user's ``extra``) counts as seen without namespace flags.
    """
    def flag_sets(name: str) -> set[int]:
        if name not in wanted:
            return set()
        return set(model.namespace_flags.get(name) or ()) or {0}

    clone3 = flag_sets("clone3")
    allow_clone3 = any(bits for bits in clone3)
    clone = flag_sets("clone")
    if clone3 and not allow_clone3:
        # clone3 gets ENOSYS; the C library then makes the same call through clone.
        clone |= clone3
    allowed = [("clone", bits) for bits in sorted(clone)]
    for name in ("unshare", "setns"):
        allowed += [(name, bits) for bits in sorted(flag_sets(name))]
    return NamespaceRules(
        allowed=tuple(allowed),
        allow_clone3=allow_clone3,
        clone3_enosys=bool(clone) and not allow_clone3,
    )


def unfiltered_namespace_syscalls(profile: dict[str, Any]) -> list[str]:
    """clone/unshare/setns that a profile allows without an argument filter, i.e. with
    any namespace flag (a profile rendered before flags were recorded, or hand-written)."""
    found = set()
    for rule in profile.get("syscalls") or ():
        if rule.get("action") == ALLOW and not rule.get("args"):
            found.update(set(rule.get("names") or ()) & FLAGS_ARGUMENT.keys())
    return sorted(found)


def seccomp_json(profile: dict[str, Any]) -> str:
    """Byte-stable JSON text of a profile (what the ArmorProfileModel stores)."""
    return json.dumps(profile, indent=2) + "\n"
