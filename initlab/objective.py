"""The number a job returns to a sweeper that optimizes (hydra/sweeper=optuna), and its direction.

The value is the run's final metric named by ``objective`` (result.json ``final``: the last
epoch's, or the restored best epoch's under early stopping). A run that diverged, or whose metric
is not finite, gets the metric's worst value (accuracy 0, loss +inf), so the sweeper records a
complete, bad trial instead of failing the sweep; the sampler then steers away from it. Torch-free:
the analysis uses it too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

MAXIMIZED = ("val_acc", "train_acc")  # accuracies; the losses are minimized


def name(objective: Any) -> str:
    """The metric's name, from a string or an ``initlab.config.Objective``."""
    return str(getattr(objective, "value", objective))


def direction(objective: Any) -> str:
    """``maximize`` for an accuracy, ``minimize`` for a loss (Optuna's direction names)."""
    return "maximize" if name(objective) in MAXIMIZED else "minimize"


def worst(objective: Any) -> float:
    """The worst value the metric can take: 0.0 for an accuracy, +inf for a loss."""
    return 0.0 if name(objective) in MAXIMIZED else math.inf


def value(result: Mapping[str, Any], objective: Any) -> float:
    """The objective of one finished job, from its result.json dict.

    ``result["status"] == "diverged"``, or a metric that is absent, null or not finite, gives
    ``worst(objective)``.
    """
    if result.get("status") == "diverged":
        return worst(objective)
    metric = (result.get("final") or {}).get(name(objective))
    try:
        metric = float(metric)
    except (TypeError, ValueError):
        return worst(objective)
    return metric if math.isfinite(metric) else worst(objective)
