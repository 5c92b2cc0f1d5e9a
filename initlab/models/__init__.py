"""The models under study; every one exposes measurement sites (initlab.models.sites)."""

from initlab.models.mlp import MLP

__all__ = ["MLP"]
