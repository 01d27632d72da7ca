"""``armorflow demo``: the seed's walkthrough on one machine, in well under 90 seconds.

Starts the embedded broker and one pipeline worker, opens the modeling window of the
seed's cluster policy ``demo-4``, replays a recording of the seed's commands (made with
``armorflow trace`` on real programs, see scripts/record-demo.sh), shortens the window as
the seed's step 5 does, and prints the profiles as its step 6 shows them. Every process
it starts is stopped before it returns.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from confluent_kafka import Consumer

from armorflow.broker import EmbeddedBroker
from armorflow.control import PHASE_COMPLETED, PolicyRef, make_control
from armorflow.kafka import EventProducer
from armorflow.signals import stop_process_group
from armorflow.topics import CONTROL_TOPIC, MODELS_TOPIC, STATUS_TOPIC

PROFILE = "varmor-cluster-varmor-demo-4"
NS = 1_000_000_000


def recording_path() -> Path:
    return Path(str(resources.files("armorflow.data").joinpath("demo-4.jsonl")))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@contextlib.contextmanager
def _worker(broker: EmbeddedBroker, workdir: Path, sink_dir: Path) -> Iterator[Path]:
    log_path = workdir / "pipeline.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "armorflow"), "pipeline",
             "-b", broker.bootstrap_servers, "--app-id", "armorflow-demo",
             "--instance-id", "demo-0", "--grace-s", "2", "--sink", f"file://{sink_dir}",
             "--data-dir", str(workdir / "faust"), "--fetch-pacing"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "ARMORFLOW_STATE_DIR": str(workdir)},
        )
    try:
        deadline = time.monotonic() + 60
        while "Worker ready" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pipeline worker did not start; see {log_path}")
            time.sleep(0.2)
        yield log_path
    finally:
        stop_process_group(proc)


def _wait_for_model(broker: EmbeddedBroker, timeout_s: float) -> dict[str, Any]:
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": "armorflow-demo-reader",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([STATUS_TOPIC, MODELS_TOPIC])
    completed = False
    document: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not (completed and document):
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or (msg.key() or b"").decode() != PROFILE:
                continue
            value = orjson.loads(msg.value() or b"{}")
            if msg.topic() == STATUS_TOPIC and value.get("phase") == PHASE_COMPLETED:
                completed = True
            elif msg.topic() == MODELS_TOPIC:
                document = value
    finally:
        consumer.close()
    if document is None or not completed:
        raise RuntimeError(f"the window of {PROFILE} did not complete within {timeout_s}s")
    return document


def demo(
    recording: Annotated[
        Path | None, typer.Option(help="Recording to replay (default: the shipped one).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where the ArmorProfileModel is written.")
    ] = None,
) -> None:
    """Run the seed's BehaviorModeling walkthrough locally and print the profiles."""
    from armorflow.users.replay import ReplayOptions, replay_file

    started = time.monotonic()
    source = recording or recording_path()
    workdir = Path(tempfile.mkdtemp(prefix="armorflow-demo-"))
    sink_dir = out or workdir / "out"
    sink_dir.mkdir(parents=True, exist_ok=True)
    step = "[armorflow demo]"
    with EmbeddedBroker(impl="noida", data_dir=workdir / "broker") as broker:
        typer.echo(f"{step} embedded broker on {broker.bootstrap_servers}")
        with _worker(broker, workdir, sink_dir):
            typer.echo(f"{step} pipeline worker ready")
            # Step 2: the policy's window opens (modelingOptions.duration: 30 minutes),
            # as if modeling had been running for two minutes already.
            now = time.time_ns()
            window_start = now - 120 * NS
            producer = EventProducer(broker.settings())
            policy = PolicyRef(kind="VarmorClusterPolicy", name="demo-4")
            control = make_control("start", PROFILE, policy=policy, duration_s=30 * 60,
                                   start_ts=window_start)
            producer.produce_raw(CONTROL_TOPIC, PROFILE, control.encode())
            producer.flush()
            typer.echo(f"{step} window opened for {PROFILE} (duration 30 min)")
            # Step 4: the workload's behaviour, replayed into the window.
            result = replay_file(
                broker.settings(), source,
                ReplayOptions(rebase_to_ns=window_start + NS, profile=PROFILE),
            )
            typer.echo(f"{step} replayed {result.published} events from {source.name}"
                       f" ({result.rejects.count} rejected)")
            # Step 5: shorten the duration to 1 minute: modeling ends.
            producer.produce_raw(
                CONTROL_TOPIC, PROFILE, make_control("update", PROFILE, duration_s=60).encode()
            )
            producer.flush()
            typer.echo(f"{step} duration patched to 1 minute: modeling ends")
            document = _wait_for_model(broker, timeout_s=60)
    # Step 6: the result, read back from the ArmorProfileModel the sink wrote, decoded as
    # `kubectl get ArmorProfileModel ... -o jsonpath='{.data.profile.content}' | base64 -d`.
    resource_path = sink_dir / "varmor" / f"{PROFILE}.yaml"
    resource = yaml.safe_load(resource_path.read_text())
    profile = resource["data"]["profile"]
    typer.echo(f"\n{step} AppArmor profile (data.profile.content, base64-decoded):\n")
    typer.echo(base64.b64decode(profile["content"]).decode())
    typer.echo(f"{step} Seccomp profile (data.profile.seccompContent, base64-decoded):\n")
    seccomp = orjson.loads(base64.b64decode(profile["seccompContent"]))
    typer.echo(orjson.dumps(seccomp, option=orjson.OPT_INDENT_2).decode())
    if document.get("apparmor") != base64.b64decode(profile["content"]).decode():
        raise RuntimeError("the resource's profile differs from the published model")
    typer.echo(f"{step} ArmorProfileModel written to {resource_path}")
    for path in sorted(resource_path.parent.glob(f"{PROFILE}.*")):
        if path != resource_path:
            typer.echo(f"{step} also wrote {path}")
    typer.echo(f"{step} done in {time.monotonic() - started:.1f} s")
