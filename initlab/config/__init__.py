"""Typed configuration: one dataclass per config-group choice, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` hold the values; these dataclasses hold the types and the ranges.
Hydra rejects unknown keys and badly typed values while composing; ``to_experiment`` turns the
composed config into dataclass instances, whose ``__post_init__`` checks every field against the
range declared next to it (``field(metadata=...)`` built with ``number``/``numbers``) and raises
``ConfigError`` with one line: the full dotted name, the value and the valid range.

Ranges are the real ones, including limits that scikit-learn, NumPy or torch would otherwise
enforce deep inside a run (seeds < 2**32 for scikit-learn's ``random_state``, Adam's betas in
[0, 1), ...). Checks that need the data (split sizes against the sample count) live in
``initlab.data`` and run right after loading, before any model is built.

One module per part: ``ranges`` (declared ranges and the refusals' words), ``enums``, one module
per config group (``activation``, ``init``, ``dataset``, ``model``; ``training`` for the optimizer,
logger, scheduler and early stopping) and ``experiment`` (the whole run, ``SCHEMAS``,
``to_experiment``).
"""

from initlab.config.activation import DKS_NAMES, LEAKY_RELU_SLOPE, ActivationConfig, check_transform, dks_name
from initlab.config.dataset import DatasetConfig
from initlab.config.enums import (ApplyTo, BiasInit, BranchInit, ConvNorm, Device, KeptCheckpoint, Loss, Norm,
                                  Objective, Transform)
from initlab.config.experiment import (SCHEMAS, TOP_LEVEL_KEYS, ExperimentConfig, register_configs,
                                       reject_unknown_top_level_keys, to_experiment)
from initlab.config.init import InitConfig
from initlab.config.model import MODELS, ModelConfig
from initlab.config.ranges import (INT_MAX, SEED_MAX, Checked, ConfigError, Range, derived_note, field_takes, number,
                                   numbers, refused_field, takes, valid_names)
from initlab.config.training import EarlyStoppingConfig, OptimizerConfig

__all__ = ["DKS_NAMES", "INT_MAX", "LEAKY_RELU_SLOPE", "MODELS", "SCHEMAS", "SEED_MAX", "TOP_LEVEL_KEYS",
           "ActivationConfig", "ApplyTo", "BiasInit", "BranchInit", "Checked", "ConfigError", "ConvNorm",
           "DatasetConfig", "Device", "EarlyStoppingConfig", "ExperimentConfig", "InitConfig", "KeptCheckpoint",
           "Loss", "ModelConfig", "Norm", "Objective", "OptimizerConfig", "Range", "Transform", "check_transform",
           "derived_note", "dks_name", "field_takes", "number", "numbers", "refused_field", "register_configs",
           "reject_unknown_top_level_keys", "takes", "to_experiment", "valid_names"]
