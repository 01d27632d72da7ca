"""The offline path: the same reducer and stages as the streaming pipeline, over a
recording, with no broker. One window per profile over the whole recording (or the
first ``duration_s`` from each profile's first event).

An event whose profile or namespace name is not safe (:mod:`armorflow.names`) is skipped
and counted in ``rejects``; the other profiles are modeled. The recording readers refuse
such lines already; checking here too keeps a caller that passes events straight in from
producing a model it could never write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from armorflow.events import Event, EventError, Rejects, check_names
from armorflow.model import BehaviourModel
from armorflow.pipeline.stages import ClosedWindow, Stages
from armorflow.pipeline.window import NS


@dataclass
class OfflineWindow:
    start_ts: int
    end_ts: int
    events: int = 0
    outside: int = 0


def model_recording(
    events: Iterable[Event],
    stages: Stages,
    *,
    duration_s: float | None = None,
    namespace: str = "varmor",
    enforcer: str = "AppArmorSeccomp",
    rejects: Rejects | None = None,
    rule_budget: int | None = None,
) -> list[ClosedWindow]:
    """Reduce a recording to one closed, staged window per profile (sorted by profile).

    Events with an unsafe profile or namespace name go to ``rejects`` (without it, the
    first one raises :class:`~armorflow.events.EventError`). A model past ``rule_budget``
    path rules keeps no more of them; its window counts them as ``droppedOverBudget``.
    """
    path_of = stages.path_mapper()
    models: dict[str, BehaviourModel] = {}
    windows: dict[str, OfflineWindow] = {}
    for event in events:
        profile = event["profile"]
        if not _names_ok(event, rejects):
            continue
        ts = event["ts"]
        window = windows.get(profile)
        if window is None:
            end = ts + int(duration_s * NS) if duration_s is not None else 0
            window = windows[profile] = OfflineWindow(start_ts=ts, end_ts=end)
            models[profile] = BehaviourModel(rule_budget=rule_budget)
        if duration_s is not None and not (window.start_ts <= ts < window.end_ts):
            window.outside += 1
            continue
        if duration_s is None:
            window.start_ts = min(window.start_ts, ts)
            window.end_ts = max(window.end_ts, ts + 1)
        window.events += 1
        models[profile].add(event, path_of)
    closed = []
    for profile in sorted(models):
        w = windows[profile]
        if models[profile].over_budget:
            # never written (a profile without the refused rules would deny what the
            # workload did): not worth classifying and rendering
            closed.append(ClosedWindow(
                profile=profile, namespace=namespace, policy={}, enforcer=enforcer,
                start_ts=w.start_ts, end_ts=w.end_ts, model=models[profile],
                counts={"events": w.events, "droppedOutside": w.outside,
                        "droppedOverBudget": models[profile].over_budget}))
            continue
        closed.append(
            stages.close(
                ClosedWindow(
                    profile=profile, namespace=namespace, policy={}, enforcer=enforcer,
                    start_ts=w.start_ts, end_ts=w.end_ts, model=models[profile],
                    counts={"events": w.events, "droppedOutside": w.outside,
                            "droppedOverBudget": models[profile].over_budget},
                )
            )
        )
    return closed


def _names_ok(event: Event, rejects: Rejects | None) -> bool:
    """Whether the event's names are safe (cheap: the name checks are cached)."""
    try:
        check_names(event["profile"], event["namespace"])
    except EventError as exc:
        if rejects is None:
            raise
        rejects.add(exc)
        return False
    return True
