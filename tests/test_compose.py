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


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as name -> (host, port)."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_containers_and_the_host_each_get_a_listener_they_can_reach() -> None:
    """A client connects to the address the broker advertises: containers must be given
    one on the compose network (kafka:29092), the host one on its loopback (the published
    127.0.0.1:9092); kafka-init and the health check use the containers' one."""
    doc = yaml.safe_load(COMPOSE.read_text())
    kafka = doc["services"]["kafka"]
    env = kafka["environment"]
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) == set(protocols) == {"INTERNAL", "EXTERNAL", "CONTROLLER"}
    # every advertised listener is bound on its port; the controller is not advertised
    assert set(advertised) == {"INTERNAL", "EXTERNAL"}
    for name, (_host, port) in advertised.items():
        assert bound[name][1] == port, name
    assert advertised["EXTERNAL"] == ("127.0.0.1", 9092)
    internal_host, internal_port = advertised["INTERNAL"]
    assert internal_host in doc["services"]  # a compose service name: resolvable inside
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    # only the host's listener is published
    published = {int(p.split(":")[-1]) for p in kafka["ports"]}
    assert published == {advertised["EXTERNAL"][1]}
    internal = f"{internal_host}:{internal_port}"
    script = "\n".join(doc["services"]["kafka-init"]["command"])
    assert re.findall(r"--bootstrap-server (\S+)", script) == [internal]
    assert f"--bootstrap-server {internal} " in kafka["healthcheck"]["test"][1]
    assert "127.0.0.1" not in script
