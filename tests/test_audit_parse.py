"""The audit parser on real reference lines, read in place from ../shared/data/audit.

Oracles are independent of the parser: libapparmor's own parse of its test cases
(``test_multi.jsonl``), libseccomp's syscall table for SECCOMP numbers, and the records
written by hand below from reading the lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import seccomp

from armorflow.agents.audit import AuditParser, Observation, parse_record, top_profile
from armorflow.agents.audit.records import text_field

SHARED = Path(__file__).resolve().parents[2] / "shared"
AUDIT = SHARED / "data" / "audit"

_ARCH = {"x86_64": seccomp.Arch.X86_64, "i386": seccomp.Arch.X86}


def libseccomp_name(number: int, arch: str = "x86_64") -> str:
    name: bytes = seccomp.resolve_syscall(_ARCH[arch], number)
    return name.decode()


def parse_file(path: Path, **kwargs: Any) -> tuple[list[Observation], AuditParser]:
    parser = AuditParser(**kwargs)
    out = []
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            obs = parser.feed(line, f"{path.name}:{lineno}")
            if obs is not None:
                out.append(obs)
    return out, parser


def assert_accounted(parser: AuditParser) -> None:
    """Every line lands in exactly one bucket."""
    s = parser.stats
    assert s.lines == s.non_audit + s.records
    dropped_denied = 0 if parser.include_denied else s.denied
    assert s.records == s.observations + dropped_denied + sum(s.ignored.values()) + s.malformed


def test_varmor_lines_give_the_right_events() -> None:
    path = AUDIT / "varmor" / "varmor_test_audit_lines.log"
    observations, parser = parse_file(path)
    assert_accounted(parser)
    assert parser.stats.malformed == 0
    # Two DENIED records belong to enforcement: counted, not modeled.
    assert parser.stats.denied == 2
    seccomp_obs = [o for o in observations if o.source == "seccomp"]
    assert [(o.pid, o.fields["name"]) for o in seccomp_obs] == [
        (699016, libseccomp_name(72)), (698839, libseccomp_name(11)),
        (3315793, libseccomp_name(268)), (2684228, libseccomp_name(439)),
        (2045941, libseccomp_name(268)), (2159619, libseccomp_name(272)),
        (6412, libseccomp_name(268)),
    ]
    # subj==NAME//null-/bin/sleep (complain) names the profile; unconfined and ? do not.
    assert [o.label for o in seccomp_obs] == [
        None, "varmor-cluster-varmor-demo-4", "cri-containerd.apparmor.d", None, None, None, None,
    ]
    assert seccomp_obs[0].ts == 1734766505_185_000_000
    assert seccomp_obs[0].comm == "runc:[2:INIT]"
    apparmor = [o for o in observations if o.source == "apparmor"]
    # The AVC line and its kern.log twin (<5> and [T55] prefixes) give the same event.
    assert [(o.kind, o.label, o.fields, o.verdict) for o in apparmor] == [
        ("file", "varmor-demo-demo-4",
         {"path": "/usr/lib/x86_64-linux-gnu/libidn2.so.0.3.4", "perms": "rm", "owner": True},
         "allowed"),
        ("file", "varmor-demo-demo-1",
         {"path": "/run/secrets/kubernetes.io/serviceaccount/..2025_05_28_06_46_38.392375317/token",
          "perms": "r", "owner": True}, "audit"),
        ("file", "varmor-demo-demo-4",
         {"path": "/usr/lib/x86_64-linux-gnu/libidn2.so.0.3.4", "perms": "rm", "owner": True},
         "allowed"),
    ]
    event = apparmor[0].to_event("varmor-demo-demo-4", node="n1")
    assert event["kind"] == "file" and event["pid"] == 3711187 and event["comm"] == "ping"


def test_denied_records_are_available_on_request() -> None:
    path = AUDIT / "varmor" / "varmor_test_audit_lines.log"
    observations, parser = parse_file(path, include_denied=True)
    assert_accounted(parser)
    denied = [o for o in observations if o.verdict == "denied"]
    assert [(o.label, o.pid) for o in denied] == [
        ("varmor-demo-demo-1", 1032243), ("cri-containerd.apparmor.d", 1032243),
    ]


def test_spo_lines_and_enriched_suffix_without_separator() -> None:
    observations, parser = parse_file(AUDIT / "security-profiles-operator" /
                                      "spo_test_audit_lines.log")
    assert_accounted(parser)
    assert parser.stats.malformed == 0
    assert [(o.pid, o.fields["name"]) for o in observations if o.source == "seccomp"] == [
        (615549, libseccomp_name(1)), (4709, libseccomp_name(13)), (2039886, libseccomp_name(3)),
        (72503, libseccomp_name(56)), (3109464, libseccomp_name(0)),
    ]
    # SELinux AVCs are not AppArmor; the two AppArmor exec records are DENIED.
    assert parser.stats.ignored["AVC record"] == 2
    assert parser.stats.denied == 2
    # The ENRICHED fields that lost their \x1d separator are split off the code value.
    record = parse_record(
        (AUDIT / "security-profiles-operator" / "spo_test_audit_lines.log")
        .read_text().splitlines()[2]
    )
    assert record is not None
    assert record.fields["code"] == "0x7ffc0000"
    assert record.enriched["SYSCALL"] == "close" and record.enriched["ARCH"] == "x86_64"


def test_spo_broken_lines_are_counted_not_fatal() -> None:
    broken = (AUDIT / "security-profiles-operator" / "spo_negative_mutated_lines.log")
    good = (AUDIT / "security-profiles-operator" / "spo_test_audit_lines.log")
    parser = AuditParser()
    lines = broken.read_bytes().splitlines() + good.read_bytes().splitlines()[:1]
    results = [parser.feed(line, f"mixed:{i}") for i, line in enumerate(lines, 1)]
    # Missing uid/gid and uid=invalid / gid=invalid are malformed; type=1016 is not ours.
    assert parser.stats.malformed == 3
    assert parser.stats.ignored == {"1016 record": 1}
    assert [i for i, r in enumerate(results, 1) if r is not None] == [5]
    assert all(s.startswith("mixed:") for s in parser.stats.malformed_samples)
    assert_accounted(parser)


def test_this_machine_seccomp_records_in_every_form() -> None:
    """auditd ENRICHED (with the unknown-syscall(-1) quirk), dmesg, and netlink lines."""
    files = {
        "audit_seccomp.log": 4,
        "dmesg_seccomp_no_auditd.txt": 3,
        "netlink_mcast_seccomp_audit_disabled.txt": None,
        "netlink_mcast_with_auditd.txt": None,
    }
    for name, expected in files.items():
        path = AUDIT / "this-machine" / name
        observations, parser = parse_file(path)
        assert_accounted(parser)
        assert parser.stats.malformed == 0, parser.stats.malformed_samples
        seccomp_lines = [ln for ln in path.read_text().split("\n") if "SECCOMP" in ln
                         or "type=1326" in ln]
        assert len(observations) == len(seccomp_lines) == (expected or len(seccomp_lines))
        assert {o.fields["name"] for o in observations} == {libseccomp_name(257)}
    first = (AUDIT / "this-machine" / "audit_seccomp.log").read_text().splitlines()[0]
    record = parse_record(first)
    assert record is not None and record.enriched["SYSCALL"] == "unknown-syscall(-1)"


def test_other_record_types_are_ignored_without_errors() -> None:
    for path in sorted((AUDIT / "this-machine").glob("audit_*.log")) + sorted(
        (AUDIT / "go-libaudit" / "reassembler").glob("*.log")
    ) + sorted((AUDIT / "audit-userspace").glob("*.log")) + sorted(
        (AUDIT / "go-libaudit" / "auparse").glob("*.log")
    ):
        _, parser = parse_file(path)
        assert_accounted(parser)
        assert parser.stats.malformed == 0, (path, parser.stats.malformed_samples)


def _libapparmor_cases() -> list[dict[str, Any]]:
    cases = []
    for raw in (AUDIT / "apparmor-testsuite" / "test_multi.jsonl").read_text().splitlines():
        case = json.loads(raw)
        fields = {}
        for line in case["out"].splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                fields[key] = value
        case["fields"] = fields
        cases.append(case)
    return cases


def test_apparmor_testsuite_agrees_with_libapparmor() -> None:
    cases = _libapparmor_cases()
    parser = AuditParser(include_denied=True)
    produced: dict[str, Observation] = {}
    for case in cases:
        obs = parser.feed(case["in"].rstrip("\n"), case["name"])
        if obs is not None:
            produced[case["name"]] = obs
    assert_accounted(parser)
    assert parser.stats.malformed >= 1  # the suite holds deliberately broken records
    checked = {"file": 0, "exec": 0, "capability": 0, "network": 0}
    for case in cases:
        f = case["fields"]
        obs = produced.get(case["name"])
        event_type = f["Event type"]
        if event_type in ("AA_RECORD_INVALID", "AA_RECORD_STATUS", "AA_RECORD_HINT"):
            assert obs is None, case["name"]
            continue
        if obs is None:
            continue
        assert obs.label == top_profile(f.get("Profile")), case["name"]
        assert str(obs.pid) == f.get("PID"), case["name"]
        assert obs.verdict == event_type.removeprefix("AA_RECORD_").lower(), case["name"]
        if obs.kind in ("file", "exec"):
            assert obs.fields["path"] == f["Name"], case["name"]
        if obs.kind == "file":
            mask = f.get("Mask") or f["Denied Mask"]
            assert set(obs.fields["perms"]) <= set(mask) | {"w"}, case["name"]
            if "fsuid" in f and "ouid" in f:
                assert obs.fields["owner"] == (f["fsuid"] == f["ouid"]), case["name"]
        if obs.kind == "network":
            assert obs.fields["family"] == f["Network family"], case["name"]
            assert obs.fields["sock_type"] == f["Socket type"], case["name"]
        if obs.kind == "capability":
            assert obs.fields["name"] == f["Name"], case["name"]
        if obs.kind in checked:
            checked[obs.kind] += 1
    # Every ALLOWED/AUDIT open or mmap record with a name and a mask became a file event.
    for case in cases:
        f = case["fields"]
        if (f["Event type"] in ("AA_RECORD_ALLOWED", "AA_RECORD_AUDIT")
                and f.get("Operation") in ("open", "file_mmap", "getattr", "mkdir")
                and f.get("Name") and f.get("Mask") and "Class" not in f):
            assert case["name"] in produced, case["name"]
            assert produced[case["name"]].kind == "file"
    assert all(n > 0 for n in checked.values()), checked


def test_hex_encoded_names_and_labels() -> None:
    line = ('type=AVC msg=audit(1700000000.001:7): apparmor="ALLOWED" operation="open" '
            'profile="p1//null-/bin/x" name=2F746D702F6120622E747874 pid=9 comm="x" '
            'requested_mask="wc" denied_mask="wc" fsuid=0 ouid=1000')
    record = parse_record(line)
    assert record is not None and text_field(record, "name") == "/tmp/a b.txt"
    obs = AuditParser().feed(line)
    assert obs is not None
    assert (obs.label, obs.fields) == ("p1", {"path": "/tmp/a b.txt", "perms": "w",
                                              "owner": False})
    assert obs.ts == 1_700_000_000_001_000_000
    # A decimal pid is never mistaken for hex.
    assert record.fields["pid"] == "9"


@pytest.mark.parametrize("line, kind, fields", [
    ('audit: type=1400 audit(1.001:1): apparmor="ALLOWED" operation="capable" profile="p" '
     'pid=3 comm="c" capability=21  capname="sys_admin"', "capability", {"name": "sys_admin"}),
    ('type=AVC msg=audit(1.001:2): apparmor="AUDIT" operation="connect" profile="p" pid=3 '
     'comm="c" family="inet" sock_type="stream" protocol=6 requested_mask="connect"',
     "network", {"family": "inet", "sock_type": "stream", "protocol": 6}),
    ('type=AVC msg=audit(1.001:3): apparmor="ALLOWED" operation="signal" profile="p" pid=3 '
     'comm="c" requested_mask="send" denied_mask="send" signal=term peer="q//null-x"',
     "signal", {"signal": "SIGTERM", "peer": "q", "direction": "send"}),
    ('type=AVC msg=audit(1.001:4): apparmor="ALLOWED" operation="ptrace" profile="p" pid=3 '
     'comm="c" requested_mask="read" denied_mask="read" peer="unconfined"',
     "ptrace", {"mode": "read", "peer": "unconfined"}),
    ('type=AVC msg=audit(1.001:5): apparmor="ALLOWED" operation="mount" info="failed flags '
     'match" error=-13 profile="p" name="/mnt/x" pid=3 comm="mount" fstype="tmpfs" '
     'srcname="tmpfs" flags="rw, remount"', "mount",
     {"op": "remount", "path": "/mnt/x", "fstype": "tmpfs"}),
    ('type=AVC msg=audit(1.001:6): apparmor="ALLOWED" operation="exec" profile="p" '
     'name="/usr/bin/id" pid=3 comm="sh" requested_mask="x" denied_mask="x" fsuid=0 ouid=0 '
     'target="p//null-/usr/bin/id"', "exec", {"path": "/usr/bin/id"}),
])
def test_operation_kinds(line: str, kind: str, fields: dict[str, Any]) -> None:
    parser = AuditParser()
    obs = parser.feed(line)
    assert obs is not None, parser.stats.as_dict()
    assert (obs.kind, obs.fields, obs.label) == (kind, fields, "p")
    obs.to_event("p")  # validates against the schema


def _seccomp(arch: str, number: int, enriched: str = "") -> str:
    return (f"type=SECCOMP msg=audit(1.001:1): auid=0 uid=0 gid=0 ses=1 pid=5 comm=\"x\" "
            f"exe=\"/x\" sig=0 arch={arch} syscall={number} compat=0 ip=0x1 code=0x7ffc0000"
            + (f"\x1d{enriched}" if enriched else ""))


def test_seccomp_arches_and_the_enriched_fallback() -> None:
    parser = AuditParser()
    i386 = parser.feed(_seccomp("40000003", 11))
    assert i386 is not None and i386.fields["name"] == libseccomp_name(11, "i386")
    # An arch armorflow does not name (aarch64): auditd's interpretation is the fallback...
    arm = parser.feed(_seccomp("c00000b7", 56, "ARCH=aarch64 SYSCALL=openat"))
    assert arm is not None and arm.fields["name"] == "openat"
    # ... except its unknown-syscall quirk, which names nothing.
    assert parser.feed(_seccomp("c00000b7", 56, "ARCH=aarch64 SYSCALL=unknown-syscall(56)")) is None
    assert parser.stats.ignored == {"no name for syscall 56 on arch 0xc00000b7": 1}
    # A killing action is enforcement, not behaviour to model.
    killed = _seccomp("c000003e", 59).replace("code=0x7ffc0000", "code=0x80000000")
    assert parser.feed(killed) is None and parser.stats.denied == 1


def _file_record(serial: int, operation: str, name: str, mask: str, extra: str = "",
                 ouid: int = 1000) -> str:
    """An ALLOWED file record as the kernel writes it (security/apparmor/file.c: name,
    requested_mask, fsuid and ouid; a link adds target)."""
    return (f'type=AVC msg=audit(1700000001.{serial:03d}:{serial}): apparmor="ALLOWED" '
            f'operation="{operation}" class="file" profile="p" name="{name}" pid=42 '
            f'comm="app" requested_mask="{mask}" denied_mask="{mask}" fsuid=1000 '
            f'ouid={ouid}{extra}')


@pytest.mark.parametrize("line, fields", [
    # Directories: AppArmor's name already ends in "/".
    (_file_record(1, "mkdir", "/tmp/d1/", "c"), {"path": "/tmp/d1/", "perms": "w"}),
    (_file_record(2, "rmdir", "/tmp/d1/", "d"), {"path": "/tmp/d1/", "perms": "w"}),
    (_file_record(3, "unlink", "/tmp/f2", "d"), {"path": "/tmp/f2", "perms": "w"}),
    # A rename is two records, each a plain rule of its own name.
    (_file_record(4, "rename_src", "/tmp/f1", "wrd"), {"path": "/tmp/f1", "perms": "rw"}),
    (_file_record(5, "rename_dest", "/tmp/f2", "wc"), {"path": "/tmp/f2", "perms": "w"}),
    (_file_record(6, "link", "/tmp/f3", "l", ' target="/tmp/f2"'),
     {"path": "/tmp/f3", "perms": "l", "old_path": "/tmp/f2"}),
    # A symlink's target is text AppArmor never checks: no old_path.
    (_file_record(7, "symlink", "/tmp/sym", "c", ' target="/etc/shadow"'),
     {"path": "/tmp/sym", "perms": "w"}),
    (_file_record(8, "file_mmap", "/opt/app/lib.so", "mr"),
     {"path": "/opt/app/lib.so", "perms": "rm"}),
    (_file_record(9, "file_lock", "/var/lib/app/db.lock", "k"),
     {"path": "/var/lib/app/db.lock", "perms": "k"}),
    (_file_record(10, "file_lock", "/var/lib/app/db.lock", "wk"),
     {"path": "/var/lib/app/db.lock", "perms": "wk"}),
    (_file_record(11, "chmod", "/srv/data/", "w"), {"path": "/srv/data/", "perms": "w"}),
    (_file_record(12, "chown", "/srv/data/f", "w"), {"path": "/srv/data/f", "perms": "w"}),
    (_file_record(13, "truncate", "/srv/data/f", "w"), {"path": "/srv/data/f", "perms": "w"}),
    (_file_record(14, "mknod", "/run/app/fifo", "c"), {"path": "/run/app/fifo", "perms": "w"}),
    # A unix socket connected by path is mediated as that file (rw); bound, created (c).
    (_file_record(15, "connect", "/run/app/app.sock", "wr"),
     {"path": "/run/app/app.sock", "perms": "rw"}),
    (_file_record(16, "mknod", "/run/app/app.sock", "c"),
     {"path": "/run/app/app.sock", "perms": "w"}),
])
def test_file_operations_map_to_the_tracers_events(line: str, fields: dict[str, Any]) -> None:
    parser = AuditParser()
    obs = parser.feed(line)
    assert obs is not None, parser.stats.as_dict()
    assert obs.kind == "file" and obs.label == "p"
    assert obs.fields == {**fields, "owner": True}  # fsuid == ouid
    obs.to_event("p")  # validates against the schema


def test_file_operation_owner_and_hostile_names() -> None:
    # Another owner's file; a hex-encoded hostile name (the kernel hex-encodes names
    # with spaces, quotes or control bytes).
    name = '/tmp/a "b"*{c}\nd/'
    line = (f'type=AVC msg=audit(1700000002.001:1): apparmor="ALLOWED" operation="mkdir" '
            f'class="file" profile="p" name={name.encode().hex().upper()} pid=42 comm="app" '
            f'requested_mask="c" denied_mask="c" fsuid=1000 ouid=0')
    obs = AuditParser().feed(line)
    assert obs is not None
    assert obs.fields == {"path": name, "perms": "w", "owner": False}
    event = obs.to_event("p")
    assert event["path"].endswith("/")
