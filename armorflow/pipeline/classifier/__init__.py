"""Classifier stage: collapse the random parts of literal paths into AppArmor globs.

``load_default().collapse("/proc/1106048/fdinfo/10") == "/proc/*/fdinfo/*"``. See
docs/classifier.md for the model, its training data and its measured accuracy.
"""

from __future__ import annotations

from armorflow.pipeline.classifier.classifier import Explanation, PathClassifier, load_default
from armorflow.pipeline.classifier.siblings import DEFAULT_THRESHOLD, collapse_siblings
from armorflow.pipeline.classifier.span_model import DEFAULT_MODEL_PATH, FORMAT_VERSION, SpanModel

__all__ = [
    "DEFAULT_MODEL_PATH",
    "DEFAULT_THRESHOLD",
    "FORMAT_VERSION",
    "Explanation",
    "PathClassifier",
    "SpanModel",
    "collapse_siblings",
    "load_default",
]
