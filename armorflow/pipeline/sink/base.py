"""What every sink shares: the result type, the interface, and the merge of a new model
into the one already stored (a second node's model adds to the first, never replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from armorflow.model import BehaviourModel
from armorflow.render import render_apparmor, render_seccomp
from armorflow.resource import CompletedModel


class SinkError(RuntimeError):
    """A write that could not be completed (after its retries)."""


@dataclass(frozen=True)
class SinkResult:
    """Where a completed model went and how."""

    #: ``k8s://NAMESPACE/NAME`` or the YAML file written.
    location: str
    namespace: str
    name: str
    #: The resource's ``storageType`` (CRDInternal or LocalDisk).
    storage_type: str
    #: How the model was stored: Plain, Gzip, LocalDisk or NotStored (armorflow.resource).
    stored: str
    #: True when a stored model was merged with the new one.
    merged: bool
    #: Write attempts (1 + conflict retries).
    attempts: int
    #: JSON size of the resource written.
    size: int
    resource_version: str | None = None


class Sink(Protocol):
    """Writes completed models somewhere; synchronous (call it in a thread from async code)."""

    url: str

    def write(self, completed: CompletedModel) -> SinkResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Merged:
    """The model and profiles to write after merging with what was stored."""

    model: BehaviourModel
    apparmor: str | None
    seccomp: dict[str, Any] | None
    merged: bool


def merge_with_stored(completed: CompletedModel, stored: dict[str, Any] | None) -> Merged:
    """Union ``completed.model`` into the stored dynamicResult; profiles are re-rendered
    from the union when it differs from the new model (same renderers, default options)."""
    if not stored:
        return Merged(completed.model, completed.apparmor, completed.seccomp, merged=False)
    union = BehaviourModel.from_dynamic_result(stored)
    union.merge(completed.model)
    if union.to_dynamic_result() == completed.model.to_dynamic_result():
        return Merged(completed.model, completed.apparmor, completed.seccomp, merged=True)
    apparmor = None
    if completed.apparmor is not None:
        apparmor = render_apparmor(completed.profile, union).text
    seccomp = render_seccomp(union) if completed.seccomp is not None else None
    return Merged(union, apparmor, seccomp, merged=True)
