"""Gradient-boosted trees as plain lists: exported from scikit-learn, evaluated in Python.

The file stores numbers only. At load time the trees are turned into one Python
function of nested conditional expressions (generated here from those numbers, never
from text in the file), which is several times faster than walking node lists and
needs no numpy round trip for a single word or span.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
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


    def expression(self, node: int = 0) -> str:
        """This tree as one conditional expression over ``x`` (numbers only)."""
        f = self.feature[node]
        if f < 0:
            return repr(float(self.value[node]))
        left = self.expression(self.left[node])
        right = self.expression(self.right[node])
        return f"({left} if x[{int(f)}] <= {float(self.threshold[node])!r} else {right})"


@dataclass
class Ensemble:
    trees: list[Tree]
    baseline: float
    _raw: Callable[[list[float]], float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compile once, up front, so that model load time includes it.
        self._raw = self._compile()

    def _compile(self) -> Callable[[list[float]], float]:
        lines = ["def raw(x):", f"    z = {float(self.baseline)!r}"]
        lines += [f"    z += {t.expression()}" for t in self.trees]
        lines.append("    return z")
        namespace: dict[str, Any] = {"__builtins__": {}}
        exec(compile("\n".join(lines), "<armorflow-trees>", "exec"), namespace)
        fn: Callable[[list[float]], float] = namespace["raw"]
        return fn

    def prob(self, x: list[float]) -> float:
        z = self._raw(x)
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
