"""The stages a window's model passes through, the same for the streaming and the
offline path: paths are collapsed on the way in (so state grows with distinct
behaviour, not with events), siblings are collapsed when the window closes, then the
profiles are rendered. Each stage is a small object with one job, called through
:class:`Stages`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from armorflow.aaglob import escape_literal
from armorflow.model import BehaviourModel, PathMapper

log = logging.getLogger(__name__)


@dataclass
class ClosedWindow:
    """What a closing window hands to the stages."""

    profile: str
    namespace: str
    policy: dict[str, str]
    enforcer: str
    start_ts: int
    end_ts: int
    model: BehaviourModel
    counts: dict[str, int] = field(default_factory=dict)
    #: Filled by the render stage.
    apparmor: str | None = None
    seccomp: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The model document published on ``armorflow.models``."""
        return {
            "profile": self.profile,
            "namespace": self.namespace,
            "policy": self.policy,
            "enforcer": self.enforcer,
            "window": {"start_ts": self.start_ts, "end_ts": self.end_ts},
            "model": self.model.to_dict(),
            "apparmor": self.apparmor,
            "seccomp": self.seccomp,
            "counts": self.counts,
            "notes": self.notes,
        }


class Stage(Protocol):
    name: str

    def close(self, window: ClosedWindow) -> ClosedWindow: ...


class ClassifierStage:
    """Collapses random path segments with the shipped classifier, under the safety policy
    (armorflow/pipeline/classifier/safety.py): no glob widens write or exec permissions in
    a protected place, whichever step proposed it."""

    name = "classifier"

    def __init__(self, sibling_threshold: int | None = None, content: bool = True) -> None:
        from armorflow.pipeline.classifier import DEFAULT_THRESHOLD, load_default
        from armorflow.pipeline.classifier.safety import SafeCollapse

        self._classifier = load_default()
        self._sibling_threshold = (
            DEFAULT_THRESHOLD if sibling_threshold is None else sibling_threshold
        )
        #: Generalise read-only content trees (classifier/content.py) and written work
        #: areas (classifier/workdirs.py).
        self._content = content
        #: The way-in mapper; its ``refused`` counts way-in refusals per safety rule.
        self.mapper = SafeCollapse(self._classifier.collapse, scoped=self._classifier.scoped)

    def path_mapper(self) -> PathMapper:
        return self.mapper

    def close(self, window: ClosedWindow) -> ClosedWindow:
        from armorflow.pipeline.classifier import (
            content,
            guard,
            replicas,
            safety,
            workdirs,
            written,
        )

        model = window.model
        model.fold_learned(safety.allows)
        model.fold_subsumed(safety.allows)
        guard.guarded_sibling_collapse(model, self._sibling_threshold)
        merged = replicas.collapse_replicas(model)
        if merged:
            window.counts["replicaGlobs"] = len(merged)
            window.notes.extend(f"{g.pattern}: {g.describe()} ({', '.join(g.literals)})"
                                for g in merged)
        generated, refused_written = written.collapse_written(model)
        if generated:
            window.counts["writtenGlobs"] = len(generated)
            window.notes.extend(f"{g.pattern}: {g.describe()} ({', '.join(g.literals)})"
                                for g in generated)
        if refused_written:
            window.counts["writtenGlobsRefused"] = refused_written
        if self._content:
            # written work areas first: a directory blocked for writing keeps its read
            # rules literal for the read-only pass to judge
            areas = workdirs.generalise_written_content(model)
            if areas:
                window.counts["writtenContentGlobs"] = len(areas)
                window.notes.extend(f"{g.pattern} {g.perms}: {g.describe()}" for g in areas)
            made = content.generalise_content(model)
            if made:
                window.counts["contentGlobs"] = len(made)
                window.notes.extend(f"{g.pattern} r: {g.describe()}" for g in made)
        # the passes above may have made a glob that covers earlier ones (logs/* over
        # logs/app.log.*.gz): fold those too, so no rule repeats what another allows
        model.fold_subsumed(safety.allows)
        refused = guard.merge_refusals(
            guard.enforce_stored_globs(model),
            guard.refused_collapses(model, self._classifier.pure_collapse,
                                    self._sibling_threshold),
        )
        if refused:
            window.counts["collapsesRefused"] = len(refused)
            window.notes.extend(guard.refusal_notes(refused))
        model.remap_provenance()
        return window


class IdentityPaths:
    """No classifier: literal paths are only escaped into patterns."""

    name = "literal-paths"

    def path_mapper(self) -> PathMapper:
        return escape_literal

    def close(self, window: ClosedWindow) -> ClosedWindow:
        return window


class RenderStage:
    """Renders the AppArmor and Seccomp profiles of the model."""

    name = "render"

    def close(self, window: ClosedWindow) -> ClosedWindow:
        from armorflow.render import render_apparmor, render_seccomp

        rendered = render_apparmor(window.profile, window.model)
        window.apparmor = rendered.text
        window.seccomp = render_seccomp(window.model)
        return window


@dataclass
class Stages:
    """The path stage used on the way in and the stages run at close, in order."""

    paths: ClassifierStage | IdentityPaths
    at_close: list[Stage]

    @classmethod
    def default(cls, *, classify: bool = True, render: bool = True) -> Stages:
        paths: ClassifierStage | IdentityPaths = ClassifierStage() if classify else IdentityPaths()
        at_close: list[Stage] = [paths]
        if render:
            at_close.append(RenderStage())
        return cls(paths=paths, at_close=at_close)

    def path_mapper(self) -> PathMapper:
        return self.paths.path_mapper()

    def close(self, window: ClosedWindow) -> ClosedWindow:
        for stage in self.at_close:
            window = stage.close(window)
        return window
