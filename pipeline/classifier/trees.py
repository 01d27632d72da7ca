"""Gradient-boosted trees as plain lists: exported from scikit-learn, evaluated in Python.

Inference walks a few dozen shallow trees per word or span; for the handful of
features involved that is cheaper than a numpy round trip, and the file stays JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Tree:
    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    #: Leaf value (raw log-odds contribution); only read at leaves (feature == -1).
    value: list[float]

    def raw(self, x: list[float]) -> float:
        node = 0
        feature, threshold = self.feature, self.threshold
        while feature[node] >= 0:
            node = self.left[node] if x[feature[node]] <= threshold[node] else self.right[node]
        return self.value[node]


@dataclass
class Ensemble:
    trees: list[Tree]
    baseline: float

    def prob(self, x: list[float]) -> float:
        z = self.baseline
        for t in self.trees:
            z += t.raw(x)
        if z < -60:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def to_json(self) -> dict[str, object]:
        return {
            "baseline": self.baseline,
            "trees": [[t.feature, t.threshold, t.left, t.right, t.value] for t in self.trees],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ensemble:
        trees = [
            Tree([int(v) for v in f], [float(v) for v in th], [int(v) for v in le],
                 [int(v) for v in ri], [float(v) for v in va])
            for f, th, le, ri, va in data["trees"]
        ]
        return cls(trees, float(data["baseline"]))

    @classmethod
    def from_sklearn(cls, clf: Any) -> Ensemble:
        """From a fitted binary ``HistGradientBoostingClassifier`` (numeric features only)."""
        trees = []
        for (predictor,) in clf._predictors:
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            features = zip(nodes["feature_idx"], leaf, strict=True)
            trees.append(
                Tree(
                    feature=[-1 if lf else int(f) for f, lf in features],
                    threshold=[round(float(t), 6) for t in nodes["num_threshold"]],
                    left=[int(v) for v in nodes["left"]],
                    right=[int(v) for v in nodes["right"]],
                    value=[round(float(v), 6) for v in nodes["value"]],
                )
            )
        return cls(trees, round(float(clf._baseline_prediction.ravel()[0]), 6))
