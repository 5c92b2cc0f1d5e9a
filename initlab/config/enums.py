"""The closed sets of values config fields take (each enum's values are its YAML spellings)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A config enum that reads as its YAML spelling wherever it becomes text: ``${device}`` in
    a folder name is ``cuda``, not ``Device.cuda``."""

    def __str__(self) -> str:
        return self.value


class FanMode(Choice):
    fan_in = "fan_in"
    fan_out = "fan_out"


class BiasInit(Choice):
    zeros = "zeros"
    normal = "normal"
    torch_default = "torch_default"  # U(+-1/sqrt(fan_in)), what nn.Linear/nn.Conv2d draw when built


class Norm(Choice):
    none = "none"
    batchnorm = "batchnorm"
    layernorm = "layernorm"


class BranchInit(Choice):  # initlab.models.branches
    default = "default"
    zero_last = "zero_last"
    fixup = "fixup"
    skipinit = "skipinit"
    rezero = "rezero"


class ConvNorm(Choice):
    none = "none"
    batchnorm = "batchnorm"


class ApplyTo(Choice):
    all = "all"    # every Linear/Conv weight (and Embedding with init.embedding=true)
    head = "head"  # only the output layer (the weight the model's output site names)


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


NO_GPU = "device=cuda but no CUDA GPU is visible; valid here: auto or cpu"


class Objective(Choice):
    """What train.py returns to a sweeper that optimizes (hydra/sweeper=optuna): a final metric
    of the run (initlab.objective). Test metrics are not offered: a search tuned on the test split
    leaves no unbiased estimate of the chosen settings."""

    val_acc = "val_acc"
    val_loss = "val_loss"
    train_acc = "train_acc"
    train_loss = "train_loss"


class Loss(Choice):
    """The training objective (initlab.losses): cross-entropy on the logits, or the mean squared
    error between the logits and one-hot targets."""

    cross_entropy = "cross_entropy"
    mse = "mse"


class Monitor(Choice):
    """A validation metric that drives training decisions (never the test set's)."""

    val_loss = "val_loss"
    val_acc = "val_acc"


class PlateauMonitor(Choice):
    train_loss = "train_loss"
    train_acc = "train_acc"
    val_loss = "val_loss"
    val_acc = "val_acc"


class KeptCheckpoint(Choice):
    """Which checkpoints a job keeps once it ends: ``last`` is checkpoint.pt (the whole train state
    after the last epoch, which lets the run be extended), ``best`` is best.pt (the weights of the
    best epoch by ``early_stopping.monitor``)."""

    none = "none"
    last = "last"
    best = "best"
    both = "both"


class Transform(Choice):
    """Kernel shaping of the activation (initlab.kernel_shaping, DeepMind's ``dks`` package):
    ``tat`` (Zhang et al. 2022) or ``dks`` (Martens et al. 2021), solved for the built network."""

    none = "none"
    tat = "tat"
    dks = "dks"
