"""Shared fixtures: real brokers started once per session on free loopback ports."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.broker import EmbeddedBroker

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


def _start(impl: str) -> EmbeddedBroker:
    return EmbeddedBroker(impl=impl).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def noida_broker() -> Iterator[EmbeddedBroker]:
    """The embedded default broker, fresh data dir, for the whole session."""
    broker = _start("noida")
    yield broker
    broker.cleanup()


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[EmbeddedBroker]:
    broker = _start("tansu")
    yield broker
    broker.cleanup()


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
