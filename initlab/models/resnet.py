"""torchvision's ResNet-18 with measurement sites swapped in at build time.

torchvision's BasicBlock calls one in-place ReLU module twice, so a hook on it sees two calls and
never a pre-activation. Each block gets instead two ActivationSites, ``act1`` (after bn1) and
``act2`` (after the residual sum), a ``Site("residual")`` on its output, and a forward that uses
them; the stem's ReLU becomes the site ``act`` and the logits get ``Site("output")``. The
``activation`` choice thus reaches every nonlinearity. Parameter names stay torchvision's
(``layer3.1.conv2.weight``), so its state dicts still load.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from initlab.models.branches import Bias, Branched, branch_gain
from initlab.models.sites import ActivationSite, Site


class SiteBasicBlock(BasicBlock, Branched):
    """BasicBlock whose two nonlinearities are separate sites; its branch conv1 -> bn1 -> act1 ->
    conv2 -> bn2 ends in bn2 (what torchvision's zero_init_residual zeroes; conv2 without norm). rezero moves act2
    into the branch: identity + alpha act2(bn2(conv2(...))) (initlab.models.branches)."""

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2]

    def branch_end(self) -> nn.Module:
        return self.conv2 if isinstance(self.bn2, nn.Identity) else self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.branch_init == "rezero":
            return self.residual(identity + self.scaled(self.act2(out)))
        return self.residual(self.act2(self.scaled(out) + identity))


class FixupBasicBlock(SiteBasicBlock):
    """The Fixup block (Zhang et al. 2019, fig. 1 right; no BatchNorm): scalar biases before each
    conv and activation, the multiplier ``alpha`` at the branch's end; the projection shortcut
    sees the first bias too, as in the authors' code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = self.bias1a(x)
        identity = x if self.downsample is None else self.downsample(shifted)
        out = self.act1(self.bias1b(self.conv1(shifted)))
        out = self.bias2b(self.scaled(self.conv2(self.bias2a(out))))
        return self.residual(self.act2(out + identity))


class SiteResNet(ResNet):
    """ResNet whose stem activation and logits are sites."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.output(self.fc(torch.flatten(self.avgpool(x), 1)))


class FixupResNet(SiteResNet):
    """The Fixup network: a scalar bias after the stem conv and one before the classifier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bias1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.output(self.fc(self.bias2(torch.flatten(self.avgpool(x), 1))))


def resnet18(in_channels: int, n_classes: int, activation: Callable[[], nn.Module],
             cifar_stem: bool = True, norm: str = "batchnorm", branch_init: str = "default") -> ResNet:
    """torchvision.models.resnet18(weights=None, num_classes=n_classes) on sites.

    ``cifar_stem``: first conv 3x3 stride 1 and no max-pool (for 32x32 inputs); otherwise
    torchvision's 7x7 stride-2 conv and max-pool. The first conv takes ``in_channels``.
    ``norm``: ``batchnorm`` (torchvision's) or ``none`` (every BatchNorm2d becomes the identity).
    ``branch_init``: initlab.models.branches; ``fixup`` needs ``norm="none"`` (ValueError) and
    builds the paper's network (FixupBasicBlock, FixupResNet).
    """
    if norm not in ("batchnorm", "none"):
        raise ValueError(f"norm must be batchnorm or none, got {norm!r}")
    if branch_init == "fixup" and norm != "none":
        raise ValueError("branch_init=fixup needs a network without normalization (norm='none')")
    model = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    del model.relu
    fixup = branch_init == "fixup"
    if norm == "none":
        model.bn1 = nn.Identity()
    model.act = ActivationSite(activation(), weight="conv1.weight")
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            del block.relu
            if norm == "none":
                block.bn1, block.bn2 = nn.Identity(), nn.Identity()
                if block.downsample is not None:
                    block.downsample[1] = nn.Identity()
            block.act1 = ActivationSite(activation(), weight=f"{stage}.{i}.conv1.weight")
            block.act2 = ActivationSite(activation(), weight=f"{stage}.{i}.conv2.weight")
            block.residual = Site("residual")
            block.branch_init, block.gain = branch_init, branch_gain(branch_init)
            if fixup:
                block.bias1a, block.bias1b, block.bias2a, block.bias2b = Bias(), Bias(), Bias(), Bias()
            block.__class__ = FixupBasicBlock if fixup else SiteBasicBlock
    model.output = Site("output", weight="fc.weight")
    if fixup:
        model.bias1, model.bias2 = Bias(), Bias()
    model.__class__ = FixupResNet if fixup else SiteResNet
    return model
