"""Residual-branch inits (``model.branch_init``): how a residual block's branch starts out.

A residual block computes x -> combine(skip(x), F(x)), F being its branch. The choices:

- ``default``: the branch as the init choice left it.
- ``zero_last``: the branch's final op with a weight starts at zero: its norm's weight where the
  branch ends in a norm (post-activation blocks with a norm: torchvision's ``zero_init_residual``),
  else its last Linear/Conv (weight and bias). The block then returns act(skip(x)).
- ``fixup`` (Zhang, Dauphin & Ma 2019, "Fixup initialization", rules 1-3): the last layer of
  every branch and the classification layer start at zero, the branch's other weight layers are
  multiplied by L^(-1/(2m-2)) (L branches, m weight layers per branch; no factor for m = 1), and
  each branch gets a learnable scalar multiplier ``alpha`` = 1 at its end. The paper's scalar
  biases ``beta`` = 0 before each conv, linear and activation are added where the layers have no
  bias (resnet18: ``Bias`` modules); in resmlp and cnn every Linear/Conv already has a bias
  vector, which subsumes them. The paper removes normalization; with a norm the scaling would be
  divided away and a norm after a zero layer divides by sqrt(eps), so the config refuses norms
  (initlab.config; resnet18 with ``model.norm=none``).
- ``skipinit`` (De & Smith 2020, "Batch normalization biases residual blocks towards the identity
  function"): a learnable scalar ``alpha`` = 0 multiplies the branch's output before the sum; the
  block keeps its order otherwise (post-activation: act(skip(x) + alpha F(x))).
- ``rezero`` (Bachlechner et al. 2020, "ReZero is all you need"): x -> skip(x) + alpha F(x) with a
  learnable ``alpha`` = 0 and nothing after the sum; a post-activation block's activation moves
  into its branch, as in the paper's x + alpha sigma(W x). In pre-activation blocks, already
  x + F(x), skipinit and rezero build the same block.

With skipinit, rezero and zero_last every block whose skip is the identity returns its input at
init (post-activation zero_last/skipinit: act(x), which is x for inputs that came out of a ReLU).

Order: ``initlab.inits.initialize`` fills every weight by the init choice first, then calls
``init_branches`` here, which rescales or zeroes what the init drew and resets each ``alpha``
and ``beta``. These are parameters of ``Gain`` and ``Bias`` modules, not Linear/Conv weights, so
they have no layers.csv rows (their gradients still count in the total gradient norm).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

BRANCH_INITS = ("default", "zero_last", "fixup", "skipinit", "rezero")

#: the value ``alpha`` starts at, for the branch inits that add one
ALPHA_INIT = {"fixup": 1.0, "skipinit": 0.0, "rezero": 0.0}


class Gain(nn.Module):
    """A learnable scalar ``alpha`` multiplying a branch's output (shape () parameter)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.alpha = nn.Parameter(torch.full((), value))

    def reset(self) -> None:
        """``alpha`` back to its starting value."""
        with torch.no_grad():
            self.alpha.fill_(self.value)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.alpha * h


class Bias(nn.Module):
    """Fixup's learnable scalar bias ``beta`` (shape () parameter, starts at 0), added to its input."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(()))

    def reset(self) -> None:
        with torch.no_grad():
            self.beta.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.beta


def branch_gain(branch_init: str) -> Optional[Gain]:
    """The branch multiplier ``branch_init`` adds, or None (ValueError for an unknown choice)."""
    if branch_init not in BRANCH_INITS:
        raise ValueError(f"branch_init must be one of {', '.join(BRANCH_INITS)}, got {branch_init!r}")
    return Gain(ALPHA_INIT[branch_init]) if branch_init in ALPHA_INIT else None


class Branched(nn.Module):
    """Base of a residual block: ``branch_init``, its ``gain`` (or None) and the branch's weight layers.

    Subclasses give ``branch_layers()`` (the branch's Linear/Conv layers in forward order) and
    ``branch_end()`` (the branch's final module with a weight: a norm or the last layer).
    """

    def __init__(self, branch_init: str):
        super().__init__()
        self.branch_init = branch_init
        self.gain = branch_gain(branch_init)

    def scaled(self, h: torch.Tensor) -> torch.Tensor:
        """The branch output times ``alpha`` where the choice has one."""
        return h if self.gain is None else self.gain(h)

    def branch_layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def branch_end(self) -> nn.Module:
        raise NotImplementedError


def fixup_factor(n_branches: int, m: int) -> float:
    """Fixup's L^(-1/(2m-2)) for L = ``n_branches`` branches of ``m`` weight layers (Zhang et al.
    2019, eq. 5 / rule 2); 1 for m = 1, where the branch's only layer is its zeroed last one."""
    return 1.0 if m == 1 else n_branches ** (-1.0 / (2 * m - 2))


@torch.no_grad()
def init_branches(model: nn.Module, head_name: Callable[[nn.Module], str]) -> None:
    """Apply every residual block's ``branch_init`` to the weights the init choice drew.

    ``head_name(model)``: the module name of the classification layer, zeroed under fixup (rule 1;
    called only then). Blocks are the model's ``Branched`` modules; a model without any is left
    as it is.
    """
    for scalar in model.modules():
        if isinstance(scalar, (Gain, Bias)):
            scalar.reset()
    blocks = [m for m in model.modules() if isinstance(m, Branched)]
    for block in blocks:
        if block.branch_init == "zero_last":
            end = block.branch_end()
            end.weight.zero_()
            if getattr(end, "bias", None) is not None:
                end.bias.zero_()
        elif block.branch_init == "fixup":
            layers = block.branch_layers()
            factor = fixup_factor(len(blocks), len(layers))
            for layer in layers[:-1]:
                layer.weight.mul_(factor)
            layers[-1].weight.zero_()
            if layers[-1].bias is not None:
                layers[-1].bias.zero_()
    if any(b.branch_init == "fixup" for b in blocks):
        head = model.get_submodule(head_name(model))
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
