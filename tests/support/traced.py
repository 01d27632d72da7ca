"""Run one command in a local container as a target of the eBPF tracer, and collect what
the tracer saw of it (the tests of the classifier's passes on real recordings)."""

from __future__ import annotations

import time

from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf import Tracer
from armorflow.agents.localrun import LocalContainer
from armorflow.events import Event


def run_traced(tracer: Tracer, argv: list[str], attribution: Attribution,
               timeout_s: float = 60) -> list[Event]:
    """Every event the tracer captured while ``argv`` ran as ``attribution``'s container;
    the command must exit 0 within ``timeout_s``."""
    box = LocalContainer(argv).spawn()
    target = tracer.add_target(attribution, mntns=box.mntns, pid=box.pid)
    box.release()
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while box.poll() is None:
        assert time.monotonic() < deadline, f"{argv} still running after {timeout_s} s"
        events += tracer.poll(50)
    events += tracer.drain()
    tracer.remove_target(target)
    assert box.poll() == 0
    return events
