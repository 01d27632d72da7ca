"""Verbs of the pipeline: ``pipeline`` (the Faust worker), ``window`` (control messages
from the command line) and ``model`` (the offline path)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt, duration_option, kafka_settings
from armorflow.model import RULE_BUDGET


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)
    app.command("model")(model)
    window_app = typer.Typer(
        help="Open, change and close modeling windows (what the operator does).",
        no_args_is_help=True,
    )
    window_app.command("start")(window_start)
    window_app.command("update")(window_update)
    window_app.command("stop")(window_stop)
    window_app.command("delete")(window_delete)
    app.add_typer(window_app, name="window")


def pipeline(
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
    sink: Annotated[
        str | None, typer.Option(help="Where completed models go: file://DIR or k8s://")
    ] = None,
    grace_s: Annotated[float, duration_option(
        "--grace", "--grace-s", help="Grace period for late events")] = 30.0,
    app_id: Annotated[str, typer.Option(help="Consumer group and table prefix.")] = (
        "armorflow-pipeline"
    ),
    processing_guarantee: Annotated[
        str, typer.Option(help="at_least_once or exactly_once (needs transactions).")
    ] = "at_least_once",
    partitions: Annotated[int, typer.Option(help="Partitions of the profile-keyed topics.")] = 4,
    classify: Annotated[bool, typer.Option(help="Collapse random path segments.")] = True,
    render: Annotated[bool, typer.Option(help="Render the profiles at close.")] = True,
    instance_id: Annotated[
        str | None,
        typer.Option(
            envvar="ARMORFLOW_INSTANCE_ID",
            help="Stable member id (e.g. the pod name): a restarted worker resumes at once.",
        ),
    ] = None,
    status_every_s: Annotated[float, duration_option(
        "--status-every", "--status-every-s",
        help="How often open windows that changed report their counts")] = 10.0,
    data_dir: Annotated[Path | None, typer.Option(help="Faust data directory.")] = None,
    close_attempts: Annotated[int, typer.Option(
        min=1, help="Attempts to write a window's model before it ends as Failed.")] = 6,
    close_retry_s: Annotated[float, duration_option(
        "--close-retry", "--close-retry-s",
        help="Wait after the first failed attempt to write a model; doubles, at most 5 min",
    )] = 5.0,
    fetch_pacing: Annotated[bool, typer.Option(
        envvar="ARMORFLOW_FETCH_PACING",
        help="Pace the consumer's fetch loop: for a broker that answers empty fetches at "
             "once (the embedded noida-db, see docs/brokers.md); Kafka does not need it.",
    )] = False,
    loglevel: Annotated[str, typer.Option(help="Worker log level.")] = "info",
    metrics_port: Annotated[int, typer.Option(
        min=0, help="Port of /metrics, /healthz and /readyz (0: none).")] = 0,
    max_rules: Annotated[int, typer.Option(
        min=1, help="Most path rules (file rules and executed paths) a model holds while "
                    "its window is open, about 1 KB of memory each; a window past it ends "
                    "Failed, saying so.")] = RULE_BUDGET,
) -> None:
    """Run a pipeline worker: window events per profile, merge, classify, render, sink."""
    from armorflow.config import state_dir
    from armorflow.pipeline.worker import PipelineConfig, PipelineWorker

    if processing_guarantee not in ("at_least_once", "exactly_once"):
        raise typer.BadParameter(
            "at_least_once or exactly_once", param_hint="--processing-guarantee"
        )
    config = PipelineConfig(
        settings=kafka_settings(bootstrap_servers, kafka_option),
        app_id=app_id, partitions=partitions, grace_s=grace_s,
        processing_guarantee=processing_guarantee, classify=classify, render=render,
        sink_url=sink, status_every_s=status_every_s, instance_id=instance_id,
        data_dir=data_dir or state_dir() / f"pipeline-{app_id}",
        close_attempts=close_attempts, close_retry_first_s=close_retry_s,
        fetch_pacing=fetch_pacing, metrics_port=metrics_port, max_rules=max_rules,
    )
    PipelineWorker(config).run(loglevel=loglevel)


def _send_control(
    kind: str, profile: str, bootstrap_servers: str | None, kafka_option: list[str] | None,
    **fields: object,
) -> None:
    from armorflow.control import ControlError, PolicyRef, make_control
    from armorflow.kafka import EventProducer
    from armorflow.topics import CONTROL_TOPIC

    policy = fields.pop("policy", None)
    ref = PolicyRef()
    if isinstance(policy, str) and policy:
        ns, _, name = policy.rpartition("/")
        ref = PolicyRef(
            kind="VarmorPolicy" if ns else "VarmorClusterPolicy", namespace=ns, name=name
        )
    try:
        control = make_control(kind, profile, policy=ref, **fields)  # type: ignore[arg-type]
    except ControlError as exc:
        raise typer.BadParameter(str(exc)) from None
    producer = EventProducer(kafka_settings(bootstrap_servers, kafka_option))
    producer.produce_raw(CONTROL_TOPIC, profile, control.encode())
    producer.flush()
    typer.echo(f"{kind} {profile}: sent to {CONTROL_TOPIC}")


ProfileArg = Annotated[str, typer.Argument(help="Profile name, e.g. varmor-cluster-varmor-demo-4.")]


def window_start(
    profile: ProfileArg,
    duration_s: Annotated[float, duration_option(
        "--duration", "--duration-s", help="Window length")],
    policy: Annotated[
        str | None, typer.Option(help="NS/NAME, or NAME for a cluster policy.")
    ] = None,
    namespace: Annotated[str, typer.Option(help="Namespace of the ArmorProfileModel.")] = "varmor",
    enforcer: Annotated[str, typer.Option(help="AppArmor, Seccomp, AppArmorSeccomp...")] = (
        "AppArmorSeccomp"
    ),
    start_ts: Annotated[int | None, typer.Option(help="Window start, ns (default: now).")] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
) -> None:
    """Open a modeling window for PROFILE."""
    if not duration_s > 0:  # also NaN; the upper bound is the control message's own
        raise typer.BadParameter("a window needs a duration above 0 seconds",
                                 param_hint="--duration")
    _send_control(
        "start", profile, bootstrap_servers, kafka_option, duration_s=duration_s,
        policy=policy, namespace=namespace, enforcer=enforcer, start_ts=start_ts,
    )


def window_update(
    profile: ProfileArg,
    duration_s: Annotated[float, duration_option(
        "--duration", "--duration-s", help="New window length (shorter than what has "
        "passed: the window ends now)")],
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
) -> None:
    """Change the window's duration (shortening it may end modeling at once)."""
    _send_control("update", profile, bootstrap_servers, kafka_option, duration_s=duration_s)


def window_stop(
    profile: ProfileArg, bootstrap_servers: BootstrapOpt = None, kafka_option: KafkaOpt = None
) -> None:
    """End the window now."""
    _send_control("stop", profile, bootstrap_servers, kafka_option)


def window_delete(
    profile: ProfileArg, bootstrap_servers: BootstrapOpt = None, kafka_option: KafkaOpt = None
) -> None:
    """Forget the profile's window and model."""
    _send_control("delete", profile, bootstrap_servers, kafka_option)


def model(
    source: Annotated[Path, typer.Option("--from", help="Recording (.jsonl, .zst, .gz).")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    duration_s: Annotated[float | None, duration_option(
        "--duration", help="Window length per profile (default: the whole recording)")] = None,
    classify: Annotated[bool, typer.Option(help="Collapse random path segments.")] = True,
    namespace: Annotated[str, typer.Option(help="Namespace of the ArmorProfileModel.")] = "varmor",
    max_rules: Annotated[int, typer.Option(
        min=1, help="Most path rules a model holds (about 1 KB each); a profile past it "
                    "is not written, saying so.")] = RULE_BUDGET,
) -> None:
    """Build models offline from a recording: the same reducer, no broker.

    Exit status: 0 when every line was modeled; 3 when some input was skipped or some
    profile not written (bad lines, a profile the sink refused or past --max-rules, a
    truncated compressed file; the summary says how many); 1 when nothing could be read.
    """
    from armorflow.events import Rejects
    from armorflow.pipeline.deliver import write_offline
    from armorflow.pipeline.offline import model_recording
    from armorflow.pipeline.sink.base import SinkError
    from armorflow.pipeline.stages import Stages
    from armorflow.users.recording import read_recording

    if not source.is_file():
        raise typer.BadParameter(f"{source} does not exist", param_hint="--from")
    rejects = Rejects()
    events, report = read_recording(source, rejects)
    closed = model_recording(
        events, Stages.default(classify=classify),
        duration_s=duration_s, namespace=namespace, rejects=rejects, rule_budget=max_rules,
    )
    for note in report.notes("modeled what was read"):
        typer.echo(note, err=True)
    if report.damage is not None and not closed:
        typer.echo(f"no model written: no event could be read from {source}", err=True)
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    unwritten: list[str] = []
    for window in closed:
        over = window.counts.get("droppedOverBudget", 0)
        if over:  # a profile without those rules would deny what the workload did
            unwritten.append(f"{window.profile}: the model reached --max-rules {max_rules:,} "
                             f"and {over:,} more events that would add a rule were not "
                             "modeled")
            continue
        try:
            paths = write_offline(out, window)
        except SinkError as exc:  # one profile the sink refuses must not cost the others
            unwritten.append(f"{window.profile}: {exc}")
            continue
        for path in paths:
            typer.echo(str(path))
    if rejects.count:
        typer.echo(f"skipped {rejects.count:,} bad line(s):", err=True)
        for reason in rejects.samples:
            typer.echo(f"  {reason}", err=True)
        if rejects.count > len(rejects.samples):
            typer.echo(f"  ... and {rejects.count - len(rejects.samples):,} more", err=True)
    for reason in unwritten:
        typer.echo(f"not written: {reason}", err=True)
    modeled = len(closed) - len(unwritten)
    skipped = [f"{n:,} {what}" for n, what in (
        (rejects.count, "bad line(s) skipped"), (len(unwritten), "profile(s) not written")) if n]
    if report.damage is not None:
        skipped.append(f"recording cut short after {report.events:,} events")
    typer.echo(f"{modeled} profile(s) modeled into {out}"
               + (f"; {', '.join(skipped)}" if skipped else ""))
    if skipped:
        raise typer.Exit(3)
