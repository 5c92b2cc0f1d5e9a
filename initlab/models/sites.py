"""Measurement sites: the named points of any model where probe statistics are taken.

A model places a ``Site`` module wherever a statistic is wanted: ``ActivationSite`` wraps each
nonlinearity (its input is the pre-activation h, its output phi(h)); a plain ``Site`` marks a
residual block's output, a normalization's output, the logits. Outside a probe pass a site is
the identity (or just its activation), so training pays nothing for it.

Inside ``with probing(model) as probe:`` every site called hands its tensors to the probe made
for that pass, in forward order, and adds a zero ``shift`` to h whose gradient is the backward
signal delta = dL/dh. Values live on the probe, never on the modules, so the same code runs under
``torch.func`` transforms. A site module called twice in one pass is an error: each call of a
reused module (torchvision's BasicBlock calls one ReLU twice) needs its own site.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn

KINDS = ("hidden", "output", "residual", "norm", "attention", "embedding")

_ACTIVE: contextvars.ContextVar[Optional["Probe"]] = contextvars.ContextVar("initlab_probe", default=None)


@dataclass
class Tap:
    """What one site saw in one pass: pre-activation ``pre`` (h), output ``post`` (phi(h); h for a
    plain site) and the zero ``shift`` added to h (None unless the probe asked for shifts)."""

    site: str
    kind: str
    weight: Optional[str]
    pre: torch.Tensor
    post: torch.Tensor
    shift: Optional[torch.Tensor]


class Probe:
    """The taps of one forward pass, by site name in the order the sites ran."""

    def __init__(self, names: dict[int, str], shifts: bool):
        self._names = names
        self.shifts = shifts
        self.taps: dict[str, Tap] = {}

    def _shifted(self, h: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if not self.shifts:
            return h, None
        shift = torch.zeros_like(h, requires_grad=True)
        return h + shift, shift

    def _record(self, site: "Site", pre: torch.Tensor, post: torch.Tensor, shift: Optional[torch.Tensor]) -> None:
        name = self._names.get(id(site))
        if name is None:
            raise RuntimeError(f"a {type(site).__name__} ran that is not a submodule of the probed model")
        if name in self.taps:
            raise RuntimeError(f"site {name!r} ran twice in one pass: give each call its own site module")
        self.taps[name] = Tap(name, site.kind, site.weight, pre, post, shift)


class Site(nn.Module):
    """An identity at a measurement point (a residual sum, a norm's output, the logits).

    ``kind`` is one of KINDS; ``weight`` is the dotted name of the parameter whose layer produces
    this site's input (``"hidden.0.weight"``), so that layer's weight statistics share the row.
    """

    def __init__(self, kind: str, weight: Optional[str] = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"site kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.weight = kind, weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        probe = _ACTIVE.get()
        if probe is None:
            return h
        h, shift = probe._shifted(h)
        probe._record(self, h, h, shift)
        return h

    def extra_repr(self) -> str:
        return f"kind={self.kind}" + (f", weight={self.weight}" if self.weight else "")


class ActivationSite(Site):
    """A nonlinearity phi with a site at its input: records h and phi(h).

    An in-place activation (``nn.ReLU(inplace=True)``) is switched to out-of-place, so h survives.
    """

    def __init__(self, activation: nn.Module, kind: str = "hidden", weight: Optional[str] = None):
        super().__init__(kind, weight)
        if getattr(activation, "inplace", False):
            activation.inplace = False
        self.activation = activation

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        probe = _ACTIVE.get()
        if probe is None:
            return self.activation(h)
        h, shift = probe._shifted(h)
        out = self.activation(h)
        probe._record(self, h, out, shift)
        return out


def sites(model: nn.Module) -> dict[str, Site]:
    """Every site of ``model`` by dotted module name, in module-registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Site)}


@contextmanager
def probing(model: nn.Module, shifts: bool = True) -> Iterator[Probe]:
    """Collect every site's tensors during the forward passes run inside the block.

    ``shifts=True`` adds a zero tensor to each h (needs grad mode), so ``torch.autograd.grad``
    of a loss with respect to ``probe.taps[name].shift`` is delta at that site.
    """
    probe = Probe({id(m): name for name, m in sites(model).items()}, shifts)
    token = _ACTIVE.set(probe)
    try:
        yield probe
    finally:
        _ACTIVE.reset(token)
