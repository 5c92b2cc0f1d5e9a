"""K modules of one architecture whose parameters live in one stacked tensor per name.

Each member's own nn.Module keeps its parameters, but their storage is a view into the stacked
leaf (K, ...) (``Parameter.data`` re-pointed, as FSDP does with its flat parameters): the
probes, Jacobians, records, checkpoints and a per-member torch.optim optimizer all work on the
member's module unchanged, while the forward runs all members at once through
``torch.func.functional_call`` under ``torch.func.vmap`` (for the plain MLP, as batched
matmuls written out: initlab.ensemble.direct). Each stacked leaf's ``.grad`` is allocated once
per restack and zeroed in place each step (autograd accumulates into it in place), and each
member's ``.grad`` is a view of its slice, so no per-step gradient re-pointing or re-allocation
is needed; where one update reads the stacked gradients directly (plain SGD), they are released
before each backward instead, and the members' views re-pointed once per epoch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from initlab.ensemble.direct import direct_forward, supports


def _own_copies(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """state_dict hook: a member's tensors are views into the whole stack; copy them, so a
    checkpoint or early stopping's best weights hold this member's values only."""
    for key, value in state_dict.items():
        if (isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter)
                and value.untyped_storage().nbytes() > value.numel() * value.element_size()):
            state_dict[key] = value.clone()


class Stacked:
    """The members' modules (same architecture, no buffers updated in training) and, for the
    ``active`` ones, the stacked parameters ``params[name]`` of shape (K_active, *shape).

    ``restack(active)`` rebuilds the stack from the active members' current values (a member
    leaving the ensemble gets its own storage back).
    """

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        self.names = [name for name, p in self.models[0].named_parameters() if p.requires_grad]
        self.members = [dict(m.named_parameters()) for m in self.models]
        for model in self.models:
            model._register_state_dict_hook(_own_copies)
        self.direct = supports(self.models[0])
        self.active: list[int] = []
        self.params: dict[str, torch.Tensor] = {}
        self.restack(range(len(self.models)))

    @property
    def base(self) -> nn.Module:
        return self.models[self.active[0] if self.active else 0]

    def restack(self, active: Sequence[int]) -> None:
        """Stack the parameters of the members ``active`` (indexes into ``models``)."""
        active = list(active)
        with torch.no_grad():
            for i in set(self.active) - set(active):
                for p in self.members[i].values():
                    p.data = p.data.clone()
                    p.grad = None
            params = {}
            for name in self.names:
                stacked = torch.stack([self.members[i][name].detach() for i in active]) if active else None
                if stacked is not None:
                    stacked.requires_grad_(True)
                    stacked.grad = torch.zeros_like(stacked)
                    for j, i in enumerate(active):
                        self.members[i][name].data = stacked.detach()[j]
                        self.members[i][name].grad = stacked.grad[j]
                params[name] = stacked
        self.active, self.params = active, params

    def forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits (K_active, B, C) of every active member: ``x`` (B, ...) the same inputs for all
        (``shared``), else (K_active, B, ...) one batch per member."""
        base = self.base
        if self.direct:
            return direct_forward(base, self.params, x, shared)

        def one(params, xb):
            return functional_call(base, params, (xb,))
        return vmap(one, in_dims=(0, None if shared else 0))(self.params, x)

    def zero_grad(self) -> None:
        """Zero the stacked gradients in place (the members' ``.grad`` views follow)."""
        if self.params:
            torch._foreach_zero_([self.params[name].grad for name in self.names])

    def release_grads(self) -> None:
        """Drop the stacked gradients, so the next backward hands its fresh gradient tensors over
        as they are (no zeroing, no accumulation); the members' ``.grad`` views go stale until
        ``adopt_grads``. Only for an update that reads the stacked gradients (epoch.stacked_sgd)."""
        for name in self.names:
            self.params[name].grad = None

    def adopt_grads(self) -> None:
        """Point every active member's ``.grad`` at its slice of the stacked gradients again
        (zeros for a parameter the last backward did not reach)."""
        with torch.no_grad():
            for name in self.names:
                stacked = self.params[name]
                if stacked.grad is None:
                    stacked.grad = torch.zeros_like(stacked)
                for j, i in enumerate(self.active):
                    self.members[i][name].grad = stacked.grad[j]

    def train(self, mode: bool = True) -> None:
        for model in self.models:
            model.train(mode)

