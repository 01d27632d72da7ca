"""The stages a window's model passes through, the same for the streaming and the
offline path: paths are collapsed on the way in (so state grows with distinct
behaviour, not with events), siblings are collapsed when the window closes, then the
profiles are rendered. Each stage is a small object with one job, called through
:class:`Stages`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    """Collapses random path segments with the shipped classifier."""

    name = "classifier"

    def __init__(self, sibling_threshold: int | None = None) -> None:
        from armorflow.pipeline.classifier import load_default

        self._classifier = load_default()
        self._sibling_threshold = sibling_threshold

    def path_mapper(self) -> PathMapper:
        collapse: Callable[[str], str] = self._classifier.collapse
        return collapse

    def close(self, window: ClosedWindow) -> ClosedWindow:
        from armorflow.pipeline.classifier import collapse_siblings

        model = window.model
        model.fold_learned()
        patterns = {key[0] for key in model.files}
        kwargs = {} if self._sibling_threshold is None else {"threshold": self._sibling_threshold}
        mapping = collapse_siblings(patterns, **kwargs)
        if any(src != dst for src, dst in mapping.items()):
            files: dict[tuple[str, str, bool], set[str]] = {}
            for (path, old, owner), perms in model.files.items():
                new = mapping.get(path, path)
                if new != path:
                    examples = model.collapsed.setdefault(new, set())
                    examples.update(model.collapsed.pop(path, {path}))
                files.setdefault((new, old, owner), set()).update(perms)
            model.files = files
            # Keep the bounded example sets bounded after merging.
            for pattern, examples in model.collapsed.items():
                while len(examples) > 3:
                    examples.discard(max(examples))
                model.collapsed[pattern] = examples
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
