"""Run a command under an OCI Seccomp profile, the way a container runtime would.

The filter is built with libseccomp (Debian's python3-seccomp) from the profile's JSON,
loaded into a small wrapper process, and then the wrapper ``exec``s the command: the
command's own ``execve`` and everything after it run under the filter, as in a
container. Tests use it to check that a rendered profile really lets its workload run
and really denies what it never did::

    python tests/support/seccomp_exec.py PROFILE.json -- CMD ARGS...
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_ARCHES = {
    "SCMP_ARCH_X86_64": "X86_64",
    "SCMP_ARCH_X86": "X86",
    "SCMP_ARCH_X32": "X32",
    "SCMP_ARCH_AARCH64": "AARCH64",
    "SCMP_ARCH_ARM": "ARM",
}
_OPS = {
    "SCMP_CMP_NE": "NE",
    "SCMP_CMP_LT": "LT",
    "SCMP_CMP_LE": "LE",
    "SCMP_CMP_EQ": "EQ",
    "SCMP_CMP_GE": "GE",
    "SCMP_CMP_GT": "GT",
    "SCMP_CMP_MASKED_EQ": "MASKED_EQ",
}


class SeccompProfileError(ValueError):
    """A profile this helper cannot turn into a filter (says which part)."""


def _action(seccomp: Any, name: str, errno_ret: int | None) -> Any:
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    if name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(errno_ret or 0)
    raise SeccompProfileError(f"unsupported action {name!r}")


def build_filter(profile: Mapping[str, Any]) -> Any:
    """A ``seccomp.SyscallFilter`` equivalent to the OCI profile (not loaded yet).

    Syscall names unknown to libseccomp are skipped, as runc does (with a warning).
    """
    import seccomp

    default_errno = profile.get("defaultErrnoRet")
    filt = seccomp.SyscallFilter(
        _action(seccomp, str(profile.get("defaultAction", "")), default_errno)
    )
    for arch in profile.get("architectures") or ():
        if arch not in _ARCHES:
            raise SeccompProfileError(f"unsupported architecture {arch!r}")
        token = getattr(seccomp.Arch, _ARCHES[arch])
        # The native architecture is in every new filter already (adding it again fails
        # with EEXIST); libseccomp reports it unsigned, the Arch constants signed.
        if int(token) & 0xFFFFFFFF != int(seccomp.system_arch()) & 0xFFFFFFFF:
            filt.add_arch(token)
    for i, rule in enumerate(profile.get("syscalls") or ()):
        errno_ret = rule.get("errnoRet", default_errno)
        action = _action(seccomp, str(rule.get("action", "")), errno_ret)
        args = []
        for arg in rule.get("args") or ():
            op = _OPS.get(arg.get("op", ""))
            if op is None:
                raise SeccompProfileError(f"syscalls[{i}]: unsupported op {arg.get('op')!r}")
            args.append(
                seccomp.Arg(
                    int(arg["index"]),
                    getattr(seccomp, op),
                    int(arg.get("value", 0)),
                    int(arg.get("valueTwo", 0)),
                )
            )
        for name in rule.get("names") or ():
            try:
                filt.add_rule(action, name, *args)
            except RuntimeError:
                print(f"seccomp_apply: skipping unknown syscall {name!r}", file=sys.stderr)
    return filt


def load_profile(profile: Mapping[str, Any]) -> None:
    """Install the profile's filter on the calling process (irreversible)."""
    build_filter(profile).load()


def wrapper_command(profile_file: Path | str, argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` under the profile stored in ``profile_file``."""
    return [sys.executable, str(Path(__file__).with_name("seccomp_exec.py")), str(profile_file),
            "--", *argv]


def apply_seccomp_and_exec(
    profile: Mapping[str, Any],
    argv: Sequence[str],
    *,
    prefix: Sequence[str] = (),
    timeout: float = 60.0,
    **run_kwargs: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` under ``profile`` in a child process and return its result.

    ``prefix`` goes in front of the wrapper (e.g. ``strace -f -o FILE``, to see which
    syscall got which error); output is captured unless ``run_kwargs`` say otherwise.
    """
    with tempfile.TemporaryDirectory(prefix="armorflow-seccomp-") as tmp:
        path = Path(tmp) / "profile.json"
        path.write_text(json.dumps(profile), encoding="utf-8")
        run_kwargs.setdefault("capture_output", True)
        return subprocess.run(
            [*prefix, *wrapper_command(path, argv)], timeout=timeout, check=False, **run_kwargs
        )
