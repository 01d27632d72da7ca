"""The offline path: the same reducer and stages as the streaming pipeline, over a
recording, with no broker. One window per profile over the whole recording (or the
first ``duration_s`` from each profile's first event)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from armorflow.events import Event
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
) -> list[ClosedWindow]:
    """Reduce a recording to one closed, staged window per profile (sorted by profile)."""
    path_of = stages.path_mapper()
    models: dict[str, BehaviourModel] = {}
    windows: dict[str, OfflineWindow] = {}
    for event in events:
        profile = event["profile"]
        ts = event["ts"]
        window = windows.get(profile)
        if window is None:
            end = ts + int(duration_s * NS) if duration_s is not None else 0
            window = windows[profile] = OfflineWindow(start_ts=ts, end_ts=end)
            models[profile] = BehaviourModel()
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
        closed.append(
            stages.close(
                ClosedWindow(
                    profile=profile, namespace=namespace, policy={}, enforcer=enforcer,
                    start_ts=w.start_ts, end_ts=w.end_ts, model=models[profile],
                    counts={"events": w.events, "droppedOutside": w.outside},
                )
            )
        )
    return closed
