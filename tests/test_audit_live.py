"""Real audit records produced on this machine.

A child process loads a seccomp filter whose only non-default action is ``SCMP_ACT_LOG``
for one syscall, then makes that call: the kernel emits a SECCOMP record even with
auditing disabled. We read it (1) straight from the audit netlink multicast group, with
no daemon, and (2) from a real ``auditd`` writing an ENRICHED log in a temporary
directory, across a real log rotation (``SIGUSR1``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.agents.audit import AuditSource, Observation, parse_record

pytestmark = pytest.mark.root

_CHILD = """
import os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.LOG, "getcwd")
f.add_rule(seccomp.LOG, "getppid")
f.load()
for _ in range(int(sys.argv[1])):
    os.getcwd()
os.getppid()
"""


def spawn_logged_child(calls: int = 3) -> int:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(calls)])
    assert child.wait(30) == 0
    return child.pid


def collect(source: AuditSource, pid: int, want: int, timeout_s: float = 15.0) -> list[Observation]:
    got: list[Observation] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(got) < want:
        got += [o for o in source.poll(timeout_s=0.2) if o.pid == pid]
    return got


def test_netlink_reads_seccomp_log_records_without_a_daemon(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CAP_AUDIT_READ)")
    source = AuditSource([tmp_path / "none.log"])
    try:
        assert source.mode == "netlink"
        pid = spawn_logged_child(calls=3)
        got = collect(source, pid, want=4)
    finally:
        source.close()
    names = [o.fields["name"] for o in got]
    assert names == ["getcwd"] * 3 + ["getppid"], names
    assert all(o.source == "seccomp" and o.verdict == "allowed" for o in got)
    event = got[0].to_event("local-profile", node="n1")
    assert event["kind"] == "syscall" and event["pid"] == pid and event["ts"] > 0
    assert source.stats()["malformed"] == 0


_AUDITD_CONF = """\
local_events = yes
write_logs = yes
log_file = {log}
log_format = ENRICHED
flush = INCREMENTAL_ASYNC
freq = 1
max_log_file = 8
num_logs = 3
max_log_file_action = ROTATE
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
q_depth = 2000
overflow_action = IGNORE
plugin_dir = {plugins}
end_of_event_timeout = 2
"""


def _audit_status(key: str) -> str:
    out = subprocess.run(["auditctl", "-s"], capture_output=True, text=True, check=True).stdout
    return next(line.split()[1] for line in out.splitlines() if line.split()[0] == key)


@pytest.fixture
def auditd(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real auditd, config and log in tmp_path; -n keeps it attached (-f logs to stderr)."""
    binary = shutil.which("auditd") or "/usr/sbin/auditd"
    if os.geteuid() != 0 or not Path(binary).exists():
        pytest.fail("needs root and Debian's auditd (make setup)")
    conf_dir = tmp_path / "etc"
    (conf_dir / "plugins.d").mkdir(parents=True)
    log = tmp_path / "log" / "audit.log"
    log.parent.mkdir()
    conf = conf_dir / "auditd.conf"
    conf.write_text(_AUDITD_CONF.format(log=log, plugins=conf_dir / "plugins.d"))
    conf.chmod(0o600)
    was_enabled = _audit_status("enabled")
    proc = subprocess.Popen([binary, "-n", "-c", str(conf_dir)], stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "auditd.err").open("wb"))
    try:
        deadline = time.monotonic() + 10
        # Ready once the kernel knows it as the audit daemon; it opens its log lazily,
        # so one logged record makes the file appear.
        while _audit_status("pid") != str(proc.pid) or not log.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("auditd did not start: "
                            + (tmp_path / "auditd.err").read_text()[-1000:])
            if _audit_status("pid") == str(proc.pid):
                spawn_logged_child(calls=0)
            time.sleep(0.1)
        yield proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # auditd leaves auditing enabled behind it: restore what the machine had.
        subprocess.run(["auditctl", "-e", was_enabled], capture_output=True, check=False)


def test_auditd_enriched_log_followed_across_a_real_rotation(
    auditd: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    proc, log = auditd
    source = AuditSource([log], checkpoint_path=tmp_path / "ck", from_start=True)
    first_pid = spawn_logged_child(calls=2)
    first = collect(source, first_pid, want=3)
    assert [o.fields["name"] for o in first] == ["getcwd", "getcwd", "getppid"]
    source.commit()
    # auditd rotates its logs on SIGUSR1: audit.log -> audit.log.1, a new audit.log.
    old_inode = log.stat().st_ino
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while (not log.exists() or log.stat().st_ino == old_inode) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.stat().st_ino != old_inode, "auditd did not rotate"
    second_pid = spawn_logged_child(calls=1)
    second = collect(source, second_pid, want=2)
    assert [o.fields["name"] for o in second] == ["getcwd", "getppid"]
    assert source.stats()["rotations"] == 1
    assert source.stats()["malformed"] == 0
    # The real line is ENRICHED, with the unknown-syscall quirk auditd shows here.
    rotated = (log.parent / "audit.log.1").read_text()
    # str.splitlines() would also split at the \x1d separator.
    line = next(ln for ln in rotated.split("\n") if f"pid={first_pid} " in ln)
    record = parse_record(line)
    assert record is not None and record.type_name == "SECCOMP"
    assert "SYSCALL" in record.enriched and "ARCH" in record.enriched
    source.commit()
    source.close()
    # Restart: nothing is read twice.
    restarted = AuditSource([log], checkpoint_path=tmp_path / "ck")
    assert [o for o in restarted.poll(0.3) if o.pid in (first_pid, second_pid)] == []
    restarted.close()
