"""Profile and namespace names: checked once, where a message enters, by one function each.

A process being modeled, or anyone who can write to a topic, chooses the names that
travel with events and control messages. A profile name becomes an AppArmor profile
name, a Kubernetes object name, a file name in the file sink and part of a table key,
so it must be safe for all four: a DNS-1123 subdomain (lowercase letters, digits, ``-``
and ``.``, each dot-separated label starting and ending with a letter or digit, at most
253 characters) — which also rules out NUL, ``/``, ``..`` and whitespace. A namespace is
a DNS-1123 label (at most 63 characters, no dots), as Kubernetes requires.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final

MAX_PROFILE_NAME: Final = 253
MAX_NAMESPACE: Final = 63

_LABEL: Final = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_PROFILE_NAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAMESPACE: Final = re.compile(_LABEL)
#: AppArmor's name for "no profile": never a profile armorflow writes.
_RESERVED: Final = frozenset({"unconfined"})


class InvalidName(ValueError):
    """A profile or namespace name that is not safe to use; ``reason`` is a counter key."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _shown(name: str) -> str:
    return repr(name[:60] + ("..." if len(name) > 60 else ""))


@functools.lru_cache(maxsize=4096)
def check_profile_name(name: str) -> str:
    """``name`` if it may name a profile, else :class:`InvalidName` (cached: a worker sees
    the same few names in every batch)."""
    if len(name) > MAX_PROFILE_NAME:
        raise InvalidName(f"profile name {_shown(name)} is longer than {MAX_PROFILE_NAME}",
                          "profile_too_long")
    if not _PROFILE_NAME.fullmatch(name) or name in _RESERVED:
        raise InvalidName(
            f"profile name {_shown(name)} is not a DNS-1123 name (lowercase letters, "
            f"digits, '-' and '.', at most {MAX_PROFILE_NAME} characters)", "invalid_profile")
    return name


@functools.lru_cache(maxsize=1024)
def check_namespace(name: str) -> str:
    """``name`` if it may name a Kubernetes namespace, else :class:`InvalidName`."""
    if len(name) > MAX_NAMESPACE or not _NAMESPACE.fullmatch(name):
        raise InvalidName(
            f"namespace {_shown(name)} is not a DNS-1123 label (lowercase letters, digits "
            f"and '-', at most {MAX_NAMESPACE} characters)", "invalid_namespace")
    return name


def path_under(root: Path, *parts: str) -> Path:
    """``root/part/...`` after checking that it stays inside ``root``.

    Each part must be one plain path component (no ``/``, NUL, ``.`` or ``..``), and the
    resolved result must lie below the resolved root, so that neither a hostile name nor
    a symlink planted under the root can send a sink's write elsewhere.
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\x00" in part:
            raise InvalidName(f"{_shown(part)} is not a plain file name", "path_escape")
    base = root.resolve()
    target = base.joinpath(*parts)
    resolved = target.resolve()
    if resolved != base and base not in resolved.parents:
        raise InvalidName(f"{target} resolves outside {base}", "path_escape")
    return target
