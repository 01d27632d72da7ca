"""Following an audit log: rotation, truncation and restarts lose and repeat nothing."""

from __future__ import annotations

import os
from pathlib import Path

from armorflow.agents.audit import AuditSource, Checkpoint, FileFollower


def seccomp_line(i: int) -> bytes:
    return (
        f"type=SECCOMP msg=audit(1700000000.{i % 1000:03d}:{i}): auid=4294967295 uid=0 gid=0 "
        f'ses=4294967295 pid={i} comm="w" exe="/usr/bin/w" sig=0 arch=c000003e syscall=0 '
        f"compat=0 ip=0x7f0000000000 code=0x7ffc0000\n"
    ).encode()


def write(path: Path, ids: range, mode: str = "ab") -> None:
    with path.open(mode) as f:
        for i in ids:
            f.write(seccomp_line(i))


def drain(source: AuditSource) -> list[int]:
    pids: list[int] = []
    while True:
        batch = source.poll(timeout_s=0.05)
        if not batch:
            return pids
        pids.extend(o.pid for o in batch)


def test_rotation_by_rename_reads_the_old_file_to_its_end(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, range(0, 100))
    source = AuditSource([log], checkpoint_path=tmp_path / "ck.json", from_start=True)
    seen = drain(source)
    # The writer still holds the old file open: it appends after the rename, then a new
    # file takes the name (auditd's and logrotate's rotation).
    with log.open("ab") as writer:
        writer.write(seccomp_line(100))
        os.rename(log, tmp_path / "audit.log.1")
        writer.write(seccomp_line(101))
    write(log, range(102, 150), mode="wb")
    seen += drain(source)
    assert seen == list(range(150))
    assert source.stats()["rotations"] == 1
    source.close()


def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    write(log, range(0, 50))
    source = AuditSource([log], from_start=True)
    assert drain(source) == list(range(50))
    with log.open("wb"):
        pass  # truncate, as copytruncate does
    write(log, range(50, 60))
    assert drain(source) == list(range(50, 60))
    assert source.stats()["truncations"] == 1


def test_partial_lines_wait_for_their_newline(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    line = seccomp_line(7)
    log.write_bytes(line[:40])
    follower = FileFollower(log)
    assert follower.read_lines() == []
    with log.open("ab") as f:
        f.write(line[40:])
    lines = follower.read_lines()
    assert [ln for ln, _ in lines] == [line.rstrip(b"\n")]
    assert lines[0][1].offset == len(line)


def test_restart_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    checkpoint = tmp_path / "state" / "audit.ck"
    write(log, range(0, 40))
    first = AuditSource([log], checkpoint_path=checkpoint, from_start=True)
    got = drain(first)
    first.commit()
    first.close()
    write(log, range(40, 80))
    second = AuditSource([log], checkpoint_path=checkpoint)
    got += drain(second)
    second.commit()
    second.close()
    assert got == list(range(80))
    # Uncommitted reads are read again after a crash: repeated, never skipped.
    write(log, range(80, 90))
    crashed = AuditSource([log], checkpoint_path=checkpoint)
    assert drain(crashed) == list(range(80, 90))
    crashed.close()  # no commit: as if killed
    again = AuditSource([log], checkpoint_path=checkpoint)
    assert drain(again) == list(range(80, 90))
    again.close()


def test_restart_after_rotation_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    checkpoint = tmp_path / "audit.ck"
    write(log, range(0, 30))
    first = AuditSource([log], checkpoint_path=checkpoint, from_start=True)
    got = drain(first)
    first.commit()
    first.close()
    write(log, range(30, 45))  # written while the agent was down ...
    os.rename(log, tmp_path / "audit.log.1")  # ... then rotated away
    write(log, range(45, 70), mode="wb")
    second = AuditSource([log], checkpoint_path=checkpoint)
    got += drain(second)
    second.commit()
    assert got == list(range(70))
    saved = Checkpoint(checkpoint).load()
    assert saved is not None and saved.inode == log.stat().st_ino
    assert saved.offset == log.stat().st_size


def test_first_start_without_checkpoint_begins_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    checkpoint = tmp_path / "audit.ck"
    write(log, range(0, 10))  # history before the agent existed is not replayed
    source = AuditSource([log], checkpoint_path=checkpoint)
    source.commit()
    source.close()
    write(log, range(10, 15))
    restarted = AuditSource([log], checkpoint_path=checkpoint)
    assert drain(restarted) == list(range(10, 15))


def test_malformed_lines_in_a_followed_file_are_counted_with_their_offset(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, range(0, 3))
    with log.open("ab") as f:
        f.write(b"type=SECCOMP msg=audit(1700000000.000:9): uid=0 gid=0 pid=oops syscall=0 "
                b"arch=c000003e code=0x7ffc0000\n")
        f.write(b"Oct 29 09:20:01 host kernel: [87589.487390] __ratelimit: 36 callbacks\n")
    write(log, range(3, 6))
    source = AuditSource([log], from_start=True)
    assert drain(source) == list(range(6))
    stats = source.stats()
    assert stats["malformed"] == 1 and stats["non_audit"] == 1
    offset = 3 * len(seccomp_line(0))
    assert stats["malformed_samples"] == [f"{log}@{offset}: field 'pid'='oops' is not a number"]


def test_the_first_existing_path_wins(tmp_path: Path) -> None:
    missing, present = tmp_path / "audit" / "audit.log", tmp_path / "kern.log"
    write(present, range(3))
    source = AuditSource(f"{missing}|{present}", from_start=True)
    assert source.mode == "file" and drain(source) == [0, 1, 2]


def test_audit_verb_writes_schema_events(tmp_path: Path) -> None:
    """`armorflow audit --from FILE --out FILE.jsonl`: a local parse for analysts."""
    import json
    import subprocess
    import sys

    from armorflow.events import read_events

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "audit" / "varmor" / (
        "varmor_test_audit_lines.log")
    out = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "armorflow.cli", "audit", "--from", str(source), "--out", str(out),
         "--node", "n1"], capture_output=True, timeout=60, check=True)
    events = list(read_events(out))
    stats = json.loads(done.stderr.decode().strip().splitlines()[-1])
    # Without --profile only records naming an AppArmor profile become events: 3 AppArmor
    # ALLOWED/AUDIT lines and the 2 SECCOMP lines whose subj names a profile.
    assert stats["written"] == len(events) == 5 and stats["unattributed"] == 5
    assert stats["denied"] == 2 and stats["malformed"] == 0
    assert {e["profile"] for e in events} == {
        "varmor-demo-demo-4", "varmor-demo-demo-1", "varmor-cluster-varmor-demo-4",
        "cri-containerd.apparmor.d"}
    assert all(e["node"] == "n1" for e in events)
    with_profile = tmp_path / "all.jsonl"
    subprocess.run([sys.executable, "-m", "armorflow.cli", "audit", "--from", str(source),
                    "--out", str(with_profile), "--profile", "fallback"],
                   capture_output=True, timeout=60, check=True)
    fallback = [e for e in read_events(with_profile) if e["profile"] == "fallback"]
    assert len(fallback) == 5 and {e["kind"] for e in fallback} == {"syscall"}
