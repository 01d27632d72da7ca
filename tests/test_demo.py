"""`armorflow demo` on the shipped recording: the seed's walkthrough end to end, in
under 90 s, printing a profile that compiles and a Seccomp profile, leaving nothing
running behind it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from armorflow.demo import PROFILE, recording_path
from armorflow.events import Rejects, read_events
from support.apparmor_check import compile_check

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_shipped_recording_is_small_real_and_valid() -> None:
    path = recording_path()
    assert path.stat().st_size < 1_000_000
    rejects = Rejects()
    events = list(read_events(path, rejects))
    assert rejects.count == 0
    execs = {e["path"] for e in events if e["kind"] == "exec"}
    assert {"/usr/bin/cat", "/usr/bin/unshare", "/usr/bin/id", "/usr/bin/sleep"} <= execs
    files = {e["path"] for e in events if e["kind"] == "file"}
    assert {"/etc/shadow", "/root/c1"} <= files


def test_demo_runs_the_seed_walkthrough(tmp_path: Path) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "armorflow"), "demo", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-3000:]
    assert elapsed < 90
    text = out.stdout
    profile = text.split("base64-decoded):\n", 1)[1].split("[armorflow demo] Seccomp", 1)[0]
    assert f"profile {PROFILE} flags=(attach_disconnected,mediate_deleted)" in profile
    for rule in ("/usr/bin/unshare ix,", "owner /etc/shadow r,", "capability sys_admin,",
                 "umount,"):
        assert rule in profile
    compile_check(profile)
    seccomp_text = text.split("seccompContent, base64-decoded):\n", 1)[1]
    seccomp = json.loads(seccomp_text[: seccomp_text.index("\n}\n") + 2])
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for group in seccomp["syscalls"] for n in group["names"]}
    assert {"unshare", "execve", "openat"} <= allowed
    resource_path = tmp_path / "varmor" / f"{PROFILE}.yaml"
    assert f"ArmorProfileModel written to {resource_path}" in text
    resource = yaml.safe_load(resource_path.read_text())
    assert resource["kind"] == "ArmorProfileModel"
    assert resource["apiVersion"] == "crd.varmor.org/v1beta1"
    # Nothing left running: no broker or worker of the demo survives it.
    left = subprocess.run(["pgrep", "-f", "armorflow-demo"], capture_output=True, text=True)
    assert not re.search(r"\d", left.stdout), left.stdout
