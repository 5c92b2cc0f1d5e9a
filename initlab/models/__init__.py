"""The models under study; every one exposes measurement sites (initlab.models.sites).

``build_model`` here builds the MLP only; the registry of every model family replaces it.
"""

from __future__ import annotations

from torch import nn

from initlab.activations import build_activation
from initlab.models.mlp import MLP

__all__ = ["MLP", "build_model"]


def build_model(exp, data) -> nn.Module:
    """The model ``exp.model`` describes, for ``data``'s input size and classes (CPU, torch defaults)."""
    return MLP(data.n_features, data.n_classes, exp.model.width, exp.depth, build_activation(exp.activation),
               norm=exp.model.norm.value)
