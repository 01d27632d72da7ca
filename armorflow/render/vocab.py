"""Closed vocabularies of AppArmor rules, and the kernel numbers events may carry instead.

Agents report what the kernel said: capability numbers or ``CAP_`` names, ``AF_``
families, ``SOCK_`` types, signal numbers or ``SIG`` names. These tables turn each into
the word ``apparmor_parser`` (3.0, ``abi <abi/3.0>``) accepts, or ``None`` when AppArmor
has no word for it; the renderer then drops the rule and counts why.
"""

from __future__ import annotations

from typing import Final

#: Linux capability numbers in order (capability.h); all are AppArmor capability names.
CAPABILITIES: Final = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)

#: Address family number -> AppArmor family name (None: the parser has no name for it;
#: AF_DECnet = 12 is refused by the 3.0 parser).
FAMILIES: Final[dict[int, str | None]] = {
    1: "unix", 2: "inet", 3: "ax25", 4: "ipx", 5: "appletalk", 6: "netrom", 7: "bridge",
    8: "atmpvc", 9: "x25", 10: "inet6", 11: "rose", 12: None, 13: "netbeui",
    14: "security", 15: "key", 16: "netlink", 17: "packet", 18: "ash", 19: "econet",
    20: "atmsvc", 21: "rds", 22: "sna", 23: "irda", 24: "pppox", 25: "wanpipe", 26: "llc",
    27: "ib", 28: "mpls", 29: "can", 30: "tipc", 31: "bluetooth", 32: "iucv", 33: "rxrpc",
    34: "isdn", 35: "phonet", 36: "ieee802154", 37: "caif", 38: "alg", 39: "nfc",
    40: "vsock", 41: "kcm", 42: "qipcrtr", 43: "smc", 44: "xdp", 45: "mctp",
}
#: Kernel spellings that are aliases of an AppArmor family name.
_FAMILY_ALIASES: Final = {"local": "unix", "file": "unix", "route": "netlink"}

#: Socket type number -> AppArmor type name (SOCK_DCCP = 6 has none).
SOCK_TYPES: Final[dict[int, str | None]] = {
    1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 6: None, 10: "packet",
}
#: The bits of a socket(2) type argument that are the type (the rest are flags).
SOCK_TYPE_MASK: Final = 0xF

#: (family, IP protocol number) pairs AppArmor's network rule can name, only in place of
#: a type. The 3.0 parser refuses ``network inet6 icmp`` (and has no word for ICMPv6).
PROTOCOLS: Final[dict[tuple[str, int], str]] = {
    ("inet", 1): "icmp", ("inet", 6): "tcp", ("inet", 17): "udp",
    ("inet6", 6): "tcp", ("inet6", 17): "udp",
}
#: The protocol a (family, type) pair gets when socket(2) is given protocol 0.
DEFAULT_PROTOCOL: Final[dict[tuple[str, str], int]] = {
    ("inet", "stream"): 6, ("inet6", "stream"): 6,
    ("inet", "dgram"): 17, ("inet6", "dgram"): 17,
}

#: Signal number -> AppArmor signal name (x86 numbering).
SIGNALS: Final[dict[int, str]] = {
    1: "hup", 2: "int", 3: "quit", 4: "ill", 5: "trap", 6: "abrt", 7: "bus", 8: "fpe",
    9: "kill", 10: "usr1", 11: "segv", 12: "usr2", 13: "pipe", 14: "alrm", 15: "term",
    16: "stkflt", 17: "chld", 18: "cont", 19: "stop", 20: "stp", 21: "ttin", 22: "ttou",
    23: "urg", 24: "xcpu", 25: "xfsz", 26: "vtalrm", 27: "prof", 28: "winch", 29: "io",
    30: "pwr", 31: "sys",
}
_SIGNAL_ALIASES: Final = {
    "iot": "abrt", "tstp": "stp", "poll": "io", "cld": "chld", "alarm": "alrm",
    "0": "exists", "exists": "exists", "emt": "emt", "lost": "lost",
}
#: AppArmor's ``rtmin+N`` is kernel signal 32 + N (32..64). The C library reserves 32 and
#: 33, so its ``SIGRTMIN`` (what Python's ``signal`` module and glibc call ``SIGRTMIN+n``)
#: is kernel 34 and its ``SIGRTMAX`` kernel 64.
_KERNEL_RTMIN: Final = 32
_LIBC_RTMIN: Final = 34
_RTMAX: Final = 64


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def capability_name(raw: str) -> str | None:
    """``CAP_SYS_ADMIN`` / ``sys_admin`` / ``21`` -> ``sys_admin``; None if unknown."""
    word = raw.strip().lower().removeprefix("cap_")
    number = _number(word)
    if number is not None:
        return CAPABILITIES[number] if number < len(CAPABILITIES) else None
    return word if word in CAPABILITIES else None


def family_name(raw: str) -> str | None:
    """``AF_INET`` / ``inet`` / ``2`` -> ``inet``; None if AppArmor has no name for it."""
    word = raw.strip().lower()
    for prefix in ("af_", "pf_"):
        word = word.removeprefix(prefix)
    number = _number(word)
    if number is not None:
        return FAMILIES.get(number)
    word = _FAMILY_ALIASES.get(word, word)
    return word if word in FAMILIES.values() else None


def sock_type_name(raw: str) -> str | None:
    """``SOCK_STREAM`` / ``stream`` / ``524289`` (with flags) -> ``stream``; None if unknown."""
    word = raw.strip().lower().removeprefix("sock_")
    number = _number(word)
    if number is not None:
        return SOCK_TYPES.get(number & SOCK_TYPE_MASK)
    return word if word in SOCK_TYPES.values() else None


def _realtime(number: int) -> str | None:
    return f"rtmin+{number - _KERNEL_RTMIN}" if _KERNEL_RTMIN <= number <= _RTMAX else None


def signal_name(raw: str) -> str | None:
    """An event's signal as AppArmor names it, or None.

    Numbers are kernel numbers (``15``, ``37``). ``SIG``-prefixed names follow the C
    library (``SIGTERM``; ``SIGRTMIN+3`` is kernel 37); bare names are AppArmor's own
    words (``term``; ``rtmin+3`` is kernel 35).
    """
    word = raw.strip().lower()
    libc = word.startswith("sig")
    word = word.removeprefix("sig")
    if word in _SIGNAL_ALIASES:
        return _SIGNAL_ALIASES[word]
    number = _number(word)
    if number is not None:
        return SIGNALS.get(number) or _realtime(number)
    if word in SIGNALS.values():
        return word
    for base, sign in (("rtmin", 1), ("rtmax", -1)):
        if not word.startswith(base):
            continue
        offset = _number(word[len(base) + 1 :]) if len(word) > len(base) else 0
        if offset is None or (len(word) > len(base) and word[len(base)] != "+-"[sign < 0]):
            return None
        if base == "rtmax":
            return _realtime(_RTMAX - offset)
        return _realtime((_LIBC_RTMIN if libc else _KERNEL_RTMIN) + offset)
    return None
