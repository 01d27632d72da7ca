"""Kernel numbers and names to AppArmor's words, and the parser accepts every word we write."""

from __future__ import annotations

import pytest

from armorflow.render.vocab import (
    CAPABILITIES,
    FAMILIES,
    PROTOCOLS,
    SOCK_TYPES,
    capability_name,
    family_name,
    signal_name,
    sock_type_name,
)
from support.apparmor_check import compile_check


def _profile(*rules: str) -> str:
    body = "".join(f"  {r}\n" for r in rules)
    return f"abi <abi/3.0>,\nprofile t {{\n{body}}}\n"


def test_parser_accepts_every_word_the_tables_can_produce() -> None:
    families = sorted({f for f in FAMILIES.values() if f})
    types = sorted({t for t in SOCK_TYPES.values() if t})
    rules = [f"capability {c}," for c in CAPABILITIES]
    rules += [f"network {f} {t}," for f in families for t in types]
    rules += [f"network {f} {p}," for (f, _), p in PROTOCOLS.items()]
    signals = sorted({signal_name(str(n)) or "" for n in range(0, 65)} - {""})
    assert len(signals) == 31 + 33 + 1
    rules.append(f"signal (send,receive) set=({','.join(signals)}) peer=x,")
    compile_check(_profile(*rules))


@pytest.mark.parametrize(
    ("raw", "word"),
    [("CAP_SYS_ADMIN", "sys_admin"), ("sys_admin", "sys_admin"), ("21", "sys_admin"),
     ("cap_checkpoint_restore", "checkpoint_restore"), ("41", None), ("bogus", None)],
)
def test_capability_names(raw: str, word: str | None) -> None:
    assert capability_name(raw) == word


@pytest.mark.parametrize(
    ("raw", "word"),
    [("AF_INET", "inet"), ("PF_INET6", "inet6"), ("2", "inet"), ("unix", "unix"),
     ("AF_LOCAL", "unix"), ("route", "netlink"), ("12", None), ("AF_DECnet", None),
     ("99", None), ("٢", None)],
)
def test_family_names(raw: str, word: str | None) -> None:
    assert family_name(raw) == word


@pytest.mark.parametrize(
    ("raw", "word"),
    [("SOCK_STREAM", "stream"), ("dgram", "dgram"), ("524289", "stream"), ("2050", "dgram"),
     ("10", "packet"), ("SOCK_DCCP", None), ("6", None), ("x", None)],
)
def test_socket_type_names(raw: str, word: str | None) -> None:
    assert sock_type_name(raw) == word


@pytest.mark.parametrize(
    ("raw", "word"),
    [("SIGTERM", "term"), ("term", "term"), ("15", "term"), ("0", "exists"),
     ("SIGIOT", "abrt"), ("SIGPOLL", "io"), ("SIGTSTP", "stp"), ("SIGCHLD", "chld"),
     # Kernel numbers: rtmin+N is signal 32 + N.
     ("37", "rtmin+5"), ("64", "rtmin+32"), ("65", None),
     # C library names (Python's signal module): SIGRTMIN is kernel 34.
     ("SIGRTMIN", "rtmin+2"), ("SIGRTMIN+3", "rtmin+5"), ("SIGRTMAX", "rtmin+32"),
     ("SIGRTMAX-2", "rtmin+30"), ("SIGRTMIN+31", None),
     # AppArmor's own words.
     ("rtmin+3", "rtmin+3"), ("rtmin+33", None), ("rtmin-1", None), ("SIGBOGUS", None)],
)
def test_signal_names(raw: str, word: str | None) -> None:
    assert signal_name(raw) == word
