"""Compile AppArmor profiles with the real ``apparmor_parser``, without loading them.

``apparmor_parser -Q -K`` parses and compiles a profile to its binary form and skips the
kernel, so it works on machines whose kernel has no AppArmor (CI, these VMs). Tests of
every component that writes a profile call :func:`compile_check`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: Printed on every run on a kernel without AppArmor; not about the profile.
_NOISE = ("Cache read/write disabled",)

_FALLBACK = "/usr/sbin/apparmor_parser"


class AppArmorCompileError(RuntimeError):
    """apparmor_parser refused a profile; the message is the parser's own."""

    def __init__(self, message: str, text: str):
        self.parser_message = message
        self.text = text
        super().__init__(f"apparmor_parser refused the profile: {message}")


def parser_path() -> str:
    """Where apparmor_parser is (root's PATH has /usr/sbin, others may not)."""
    found = shutil.which("apparmor_parser")
    if found:
        return found
    if Path(_FALLBACK).exists():
        return _FALLBACK
    raise FileNotFoundError("apparmor_parser not found: install Debian's apparmor package")


def _run(text: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="armorflow-aa-") as tmp:
        profile = Path(tmp) / "profile"
        profile.write_text(text, encoding="ascii", errors="strict")
        return subprocess.run(
            [parser_path(), "-Q", "-K", *extra, str(profile)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def _message(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").splitlines()
    return "\n".join(ln for ln in lines if ln and not ln.startswith(_NOISE))


def compile_check(text: str, *, timeout: float = 120.0) -> None:
    """Compile ``text`` (one or more profiles); raise :class:`AppArmorCompileError` if refused.

    Profiles are written as ASCII (the renderer escapes everything else), so a profile
    holding any other character is refused here before the parser sees it.
    """
    try:
        text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise AppArmorCompileError(f"profile text is not ASCII: {exc}", text) from None
    proc = _run(text, ["-o", "/dev/null"], timeout)
    if proc.returncode != 0:
        raise AppArmorCompileError(
            _message(proc.stderr) or f"exit status {proc.returncode}", text
        )


def compile_binary(text: str, *, timeout: float = 120.0) -> bytes:
    """The compiled binary policy (``-S``): equal bytes mean equal rules, whatever spelling."""
    proc = _run(text, ["-S"], timeout)
    if proc.returncode != 0:
        raise AppArmorCompileError(
            _message(proc.stderr) or f"exit status {proc.returncode}", text
        )
    return proc.stdout
