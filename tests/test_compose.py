"""docker-compose.kafka.yaml parses and creates the topics the code expects, on the port
the code defaults to (Docker does not run on these machines, so this is what we can check)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from armorflow.config import DEFAULT_BOOTSTRAP
from armorflow.topics import topic_specs

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.kafka.yaml"


def test_compose_creates_the_topic_layout() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    script = "\n".join(doc["services"]["kafka-init"]["command"])
    created = {
        m.group(1): (int(m.group(2)), bool(m.group(3)))
        for m in re.finditer(r"^\s*create (\S+) (\d+)( compact)?\s*$", script, re.M)
    }
    assert created == {s.name: (s.partitions, s.compacted) for s in topic_specs()}


def test_compose_listens_where_the_code_looks() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    kafka = doc["services"]["kafka"]
    port = DEFAULT_BOOTSTRAP.rsplit(":", 1)[1]
    assert f"{port}:{port}" in kafka["ports"]
    assert kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"].endswith(DEFAULT_BOOTSTRAP)
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
