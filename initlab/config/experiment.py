"""One run's whole config: ``ExperimentConfig`` (every group plus the top-level keys), the
``SCHEMAS`` registry Hydra's ConfigStore gets, and ``to_experiment``, which checks a composed config."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from initlab.config.activation import ActivationConfig, ELUConfig, GELUConfig, LeakyReLUConfig, check_transform
from initlab.config.dataset import (BlobsConfig, CirclesConfig, DatasetConfig, DigitsConfig, ImdbConfig,
                                    MajorityConfig, NoisyConfig, ShapesConfig, SpiralConfig, TorchvisionConfig)
from initlab.config.enums import BranchInit, Device, KeptCheckpoint, Loss, Objective
from initlab.config.init import (GainConfig, InitConfig, LSUVConfig, NormalConfig, TruncNormalConfig,
                                 VarianceScalingConfig)
from initlab.config.model import CNNConfig, MLPConfig, ModelConfig, ResMLPConfig, ResNet18Config, TransformerConfig
from initlab.config.ranges import (INT_MAX, SEED_MAX, Checked, _require, check_fields, derived_note, number,
                                   valid_names)
from initlab.config.training import (AdamConfig, CosineSchedulerConfig, EarlyStoppingConfig, LoggerConfig,
                                     OptimizerConfig, PlateauSchedulerConfig, RMSpropConfig, SchedulerConfig,
                                     SGDConfig, StepSchedulerConfig, TensorBoardConfig)


@dataclass
class ExperimentConfig(Checked):
    activation: ActivationConfig = MISSING
    init: InitConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    model: ModelConfig = MISSING
    logger: LoggerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    depth: int = number(gt=0, integer=True)
    epochs: int = number(ge=0, integer=True)
    batch_size: int = number(gt=0, integer=True)
    seed: int = number(ge=0, le=SEED_MAX, integer=True)
    device: Device = MISSING
    probe_size: int = number(gt=0, integer=True)  # capped at the training-set size
    threads: Optional[int] = number(None, gt=0, le=INT_MAX, integer=True, optional=True)
    resume: bool = True
    checkpoint: KeptCheckpoint = KeptCheckpoint.none
    checkpoint_every_s: float = number(0.0, ge=0.0, le=1e9)  # seconds of a run between checkpoints; 0: every epoch
    jacobian_every: int = number(0, ge=0, integer=True)
    loss: Loss = Loss.cross_entropy
    log_every_steps: int = number(0, ge=0, le=INT_MAX, integer=True)  # steps.csv every k optimizer steps; 0: off
    distributions_every: int = number(0, ge=0, le=INT_MAX, integer=True)  # distributions.csv at 0 and every k epochs
    objective: Optional[Objective] = None  # returned to an optimizing sweeper (initlab.objective); null: nothing

    def __post_init__(self) -> None:
        check_fields(self, self.PREFIX)  # depth > 0 for every model, resnet18's (which is 18 whatever it says) too
        if self.model.FIXED_DEPTH is not None:  # resnet18: records and labels said the unused depth (5)
            self.depth = self.model.FIXED_DEPTH
        self.check()

    def check(self) -> None:
        self.model.check_depth(self.depth)
        check_transform(self.activation, self.model)
        warmup = self.scheduler.warmup_epochs
        _require(self.scheduler.name == "none" or self.epochs == 0 or warmup < self.epochs,
                 f"scheduler={self.scheduler.name} never starts: scheduler.warmup_epochs={warmup} fills all "
                 f"epochs={self.epochs}, so its fields change nothing; valid: warmup_epochs < epochs, or "
                 f"scheduler=none")
        floor = {"cosine": ("eta_min", "cosine anneals from optimizer.lr down to eta_min: above the lr it would "
                                       "climb, at it stay constant"),
                 "reduce_on_plateau": ("min_lr", "reduce_on_plateau cuts optimizer.lr, never below min_lr: at or "
                                                 "above the lr it would never cut")}
        if self.scheduler.name in floor:  # scheduler.eta_min=1 climbed 0.01 -> 0.855, README said down to eta_min
            key, why = floor[self.scheduler.name]
            _require(getattr(self.scheduler, key) < self.optimizer.lr,
                     f"scheduler.{key} must be < optimizer.lr ({self.optimizer.lr}: {why}, as with "
                     f"scheduler=none), got {getattr(self.scheduler, key)}")
        needs_val = []
        if self.early_stopping.enabled:
            needs_val.append(f"early_stopping.enabled=true (monitor {self.early_stopping.monitor.value})")
        if self.checkpoint in (KeptCheckpoint.best, KeptCheckpoint.both):
            needs_val.append(f"checkpoint={self.checkpoint.value} (best by {self.early_stopping.monitor.value})")
        plateau = getattr(self.scheduler, "monitor", None)
        if plateau is not None and plateau.value.startswith("val_"):
            needs_val.append(f"scheduler.monitor={plateau.value}")
        if self.objective is not None and self.objective.value.startswith("val_"):
            needs_val.append(f"objective={self.objective.value}")
        _require(not needs_val or self.dataset.val_size > 0,
                 f"{', '.join(needs_val)} needs a validation split: set dataset.val_size > 0")
        branch = getattr(self.model, "branch_init", None)
        _require(self.init.name != "lsuv" or branch not in (BranchInit.fixup, BranchInit.zero_last),
                 f"init=lsuv with model.branch_init={getattr(branch, 'value', branch)}: the branch init zeroes or "
                 f"rescales the layers after LSUV set each one's output variance, so neither the network nor "
                 f"its init_report would be LSUV's; valid: model.branch_init=default, rezero or skipinit with lsuv")
        with_embeddings = [name for name, schema in SCHEMAS["model"].items() if schema.EMBEDDINGS]
        _require(not self.init.embedding or self.model.EMBEDDINGS,
                 f"init.embedding=true changes nothing with model={self.model.name} (no embedding layers); "
                 f"models with embeddings: {', '.join(with_embeddings)}")


SCHEMAS: dict[str, dict[str, type]] = {
    "activation": {"base": ActivationConfig, "leaky_relu": LeakyReLUConfig, "elu": ELUConfig,
                   "gelu": GELUConfig},
    "init": {"base": InitConfig, "variance_scaling": VarianceScalingConfig, "gain": GainConfig,
             "normal": NormalConfig, "trunc_normal": TruncNormalConfig, "lsuv": LSUVConfig},
    "dataset": {"digits": DigitsConfig, "torchvision": TorchvisionConfig, "noisy": NoisyConfig,
                "blobs": BlobsConfig, "circles": CirclesConfig, "spiral": SpiralConfig, "shapes": ShapesConfig,
                "majority": MajorityConfig, "imdb": ImdbConfig},
    "optimizer": {"sgd": SGDConfig, "rmsprop": RMSpropConfig, "adam": AdamConfig},
    "scheduler": {"base": SchedulerConfig, "step": StepSchedulerConfig, "cosine": CosineSchedulerConfig,
                  "reduce_on_plateau": PlateauSchedulerConfig},
    "model": {"mlp": MLPConfig, "resmlp": ResMLPConfig, "cnn": CNNConfig, "resnet18": ResNet18Config,
              "transformer": TransformerConfig},
    "logger": {"none": LoggerConfig, "tensorboard": TensorBoardConfig},
}


def register_configs() -> None:
    """Store every schema under ``schema/<group>/<name>``; the YAML files extend them."""
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=ExperimentConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


TOP_LEVEL_KEYS = tuple(f.name for f in fields(ExperimentConfig))
HYDRA_KEY = "hydra"  # Hydra's own node (``hydra.sweeper.params`` from experiment files, ...)


def reject_unknown_top_level_keys(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming keys of ``cfg`` that ``ExperimentConfig`` lacks (``hydra`` passes)."""
    unknown = sorted(set(cfg.keys()) - set(TOP_LEVEL_KEYS) - {HYDRA_KEY})
    _require(not unknown, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid top-level keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")


def _reject_unknown_keys(cfg: DictConfig) -> None:
    """Hydra refuses ``epoch=3`` and ``init.factr=2`` itself, but ``+epoch=3`` and ``+init.factr=2``
    add keys that ``OmegaConf.to_object`` would drop silently: a typo would train the defaults."""
    reject_unknown_top_level_keys(cfg)
    for group in (*SCHEMAS, "early_stopping"):
        node = cfg[group]
        schema = OmegaConf.get_type(node)
        allowed = {f.name for f in fields(schema)}
        unknown = sorted(set(node.keys()) - allowed)
        owner = f"{group}={node.name}" if group in SCHEMAS else group
        where = f"for {owner}" if group in SCHEMAS else f"in {group}"
        valid = valid_names(sorted(allowed - {"name"}), f"{owner} takes no parameters")
        _require(not unknown, f"unknown {group} parameter(s) {', '.join(unknown)} {where}; "
                              f"{valid}{derived_note(schema, unknown)}")


def to_experiment(cfg: DictConfig) -> ExperimentConfig:
    """Instantiate the typed config; any value out of its range raises a one-line ``ConfigError``."""
    _reject_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)
