"""docs/users.md's five-command walkthrough, run as written (root: the tracer), with only
a wait for the window to close before the last command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armorflow.broker import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.broker]


def _walkthrough() -> list[str]:
    text = (REPO / "docs" / "users.md").read_text()
    block = re.search(r"in five commands\n.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "the walkthrough's sh block is missing"
    lines = [line.split("  #")[0].rstrip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.strip()]


def test_the_five_command_walkthrough_works_as_written(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (the eBPF tracer)")
    commands = _walkthrough()
    assert [c.split()[1] for c in commands if c.startswith("armorflow")] == [
        "broker", "pipeline", "window", "trace", "report"]
    # The walkthrough's port, unless a test broker holds it: then a free one, everywhere.
    port = "9092"
    try:
        import socket

        with socket.create_connection(("127.0.0.1", 9092), timeout=0.2):
            port = str(free_port())
    except OSError:
        pass
    script = "\n".join(c.replace("9092", port) if port != "9092" else c for c in commands)
    script = script.replace("armorflow broker &", f"armorflow broker --port {port} &")
    *setup, report = script.splitlines()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "ARMORFLOW_STATE_DIR": str(tmp_path / "state"),
           "ARMORFLOW_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    wait = ("for i in $(seq 120); do [ -e out/varmor/my-app.model.json ] && break; "
            "sleep 1; done")
    # Files, not pipes: the broker and the worker run on in the background and would
    # hold a pipe open after the shell is done.
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        shell = subprocess.Popen(
            ["bash", "-c", "set -e\n" + "\n".join(setup) + f"\n{wait}\n{report}\n"],
            cwd=tmp_path, env=env, stdout=out_file, stderr=err_file,
            start_new_session=True, text=True)
        try:
            shell.wait(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)  # the broker and worker of steps 1-2
            time.sleep(1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
    out, err = out_path.read_text(), err_path.read_text()
    assert shell.returncode == 0, err[-3000:]
    # the broker's and the worker's lines share stdout with the report
    start = out.index('{\n  "models"')
    doc, _end = json.JSONDecoder().raw_decode(out[start:])
    (model,) = doc["models"]
    assert model["profile"] == "my-app"
    assert "/etc/hostname r," in model["apparmor"] and "bin/ls ix," in model["apparmor"]
    assert {"openat", "execve"} <= set(model["seccomp_allowed"])
