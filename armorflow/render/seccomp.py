"""Render a behaviour model as a deny-by-default OCI / Kubernetes ``localhost`` Seccomp profile.

The profile allows the syscalls the workload was seen making plus the few a container
runtime makes under the filter while starting it (:mod:`runtime_syscalls`), and answers
every other syscall with EPERM (``SCMP_ACT_ERRNO``). The output is deterministic: equal
models give equal JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any, Final

from armorflow.model import BehaviourModel
from armorflow.render.drops import Drops
from armorflow.render.runtime_syscalls import RUNTIME_SYSCALLS

DEFAULT_ACTION: Final = "SCMP_ACT_ERRNO"
ALLOW: Final = "SCMP_ACT_ALLOW"
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
) -> dict[str, Any]:
    """The Seccomp profile of ``model`` as a JSON-ready dict.

    ``extra`` adds syscalls (a user's allow-list); ``runtime=False`` leaves out the
    runtime start-up set, for a filter a process installs on itself right before its
    own exec. Unknown names are dropped (counted in ``drops`` when given), because
    libseccomp refuses a filter that names them.
    """
    wanted = set(model.syscalls) | set(extra)
    if runtime:
        wanted |= RUNTIME_SYSCALLS.keys()
    names: list[str] = []
    for name in sorted(wanted):
        if syscall_name_ok(name):
            names.append(name)
        elif drops is not None:
            drops.add("seccomp", "unknown-syscall", name)
    return {
        "defaultAction": DEFAULT_ACTION,
        "architectures": list(ARCHITECTURES),
        "syscalls": [{"names": names, "action": ALLOW}] if names else [],
    }


def seccomp_json(profile: dict[str, Any]) -> str:
    """Byte-stable JSON text of a profile (what the ArmorProfileModel stores)."""
    return json.dumps(profile, indent=2) + "\n"
