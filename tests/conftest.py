"""Shared fixtures: real brokers started once per session on free loopback ports."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armorflow.broker import EmbeddedBroker, running_broker

REPO = Path(__file__).resolve().parents[1]
# Test helper modules (tests/*_support.py) import by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
#: Reference data lives beside the checkout (CI copies shared/ next to the clone).
SHARED = REPO.parent / "shared"

os.environ.setdefault("PATH", "")
_TOOLS = str(REPO / ".tools" / "bin")
if _TOOLS not in os.environ["PATH"].split(os.pathsep):
    os.environ["PATH"] = _TOOLS + os.pathsep + os.environ["PATH"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"reference data missing: expected {SHARED}")
    return SHARED


# Every broker a test uses comes from these fixtures, all through running_broker: the
# session's two implementations, a module's own, and a fresh one a test may stop,
# kill and start again.


@pytest.fixture(scope="session")
def noida_broker() -> Iterator[EmbeddedBroker]:
    """The embedded default broker, fresh data dir, for the whole session."""
    with running_broker("noida") as broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[EmbeddedBroker]:
    with running_broker("tansu") as broker:
        yield broker


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """A broker of the test module's own (noida): for modules that read whole topics or
    use the walkthrough's fixed profile names, which must not meet other modules' data."""
    with running_broker("noida") as own:
        yield own


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A noida broker of this test's own, its data in the test's tmp_path: stop() or
    kill() it and start() it again on the same port and data (restarts, outages)."""
    with running_broker("noida", data_dir=tmp_path / "broker") as own:
        yield own


@pytest.fixture(scope="session", params=["noida", "tansu"])
def any_broker(request: pytest.FixtureRequest) -> EmbeddedBroker:
    """Broker-agnostic integration tests run against both implementations."""
    name = "noida_broker" if request.param == "noida" else "tansu_broker"
    broker: EmbeddedBroker = request.getfixturevalue(name)
    return broker


@pytest.fixture
def apparmor_parser() -> str:
    path = shutil.which("apparmor_parser") or "/usr/sbin/apparmor_parser"
    if not Path(path).exists():
        pytest.fail("apparmor_parser missing: run make setup")
    return path


@pytest.fixture(scope="module")
def tracer() -> Iterator[Any]:
    """The eBPF tracer, loaded once per test module (root: BPF)."""
    from armorflow.agents.bpf import Tracer

    if os.geteuid() != 0:
        pytest.fail("the tracer tests need root (BPF)")
    t = Tracer(node="test-node").start()
    yield t
    t.stop()
