"""Every config field changes the run, or it does not exist.

For every field of every choice of the activation, init, dataset, optimizer, model and logger groups
(found by walking the schemas, so a new field without an entry in CHANGES fails), a second value
is shown to change what the field feeds: the data tensors, the initial weights, the optimizer's
param_groups as torch sees them and the update it makes, the activation's outputs, the model, or
the tags the logger writes (read back with TensorBoard's reader); the scheduler's lr per epoch; early_stopping's fields change what the tracker does with a fixed
sequence of validation rows.
Fields that only act together with another one (``nesterov`` with momentum, ``split_seed`` of
torchvision sets with a validation split, ``bias_std`` with ``bias_init=normal``) are changed with
that companion set in both configs.
"""

from __future__ import annotations

import functools
import math
import tempfile
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import GROUPS, compose_config, group_choices, read_csv, run_job
from initlab import records
from initlab.choices import build_activation
from initlab.config import DKS_NAMES, ConfigError, EarlyStoppingConfig, ExperimentConfig, to_experiment
from initlab.data import load_data
from initlab.inits import initialize
from initlab.train.early_stopping import EarlyStopping
from initlab.train.loop import build_optimizer
from initlab.train.schedule import Schedule
from initlab.models import MODELS, build
from initlab.measure.probes import probe_statistics
from initlab.models.mlp import MLP
from initlab.models.transformer import Transformer
from initlab.train.callbacks import EpochEnd
from initlab.train.state import TrainState
from initlab.train.tensorboard import TB_DIR, build_logger
from test_config import INPUTS, schema_of
from test_data import make_cifar_like, make_mnist_like
from test_sequences import make_imdb_like

TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": None}
SMALL = ["dataset.n_train=120", "dataset.n_test=60"]
BASE = {"blobs": [*SMALL, "dataset.n_features=6"], "moons": SMALL, "circles": SMALL, "xor": SMALL, "spiral": SMALL,
        "shapes": SMALL, "majority": SMALL, "reduce_on_plateau": ["dataset.val_size=20"]}

# key -> (overrides set in both configs, overrides that make the second config); ROOT and OTHER are
# replaced by two folders holding different fake files of the dataset.
CHANGES: dict[str, tuple[list[str], list[str]]] = {
    "activation.negative_slope": ([], ["activation.negative_slope=0.2"]),
    "activation.alpha": ([], ["activation.alpha=0.5"]),
    "activation.approximate": ([], ["activation.approximate=tanh"]),
    "activation.transform": ([], ["activation.transform=dks"]),
    "activation.c_slope_1_target": (["activation.transform=dks"], ["activation.c_slope_1_target=2.0"]),
    "activation.c_val_0_target": (["activation.transform=tat", "depth=20"], ["activation.c_val_0_target=0.5"]),
    "activation.c_curve_target": (["activation.transform=tat"], ["activation.c_curve_target=0.5"]),
    "init.factor": ([], ["init.factor=1.0"]),
    "init.mode": ([], ["init.mode=fan_out"]),
    "init.gain": ([], ["init.gain=2.0"]),
    "init.std": ([], ["init.std=0.5"]),
    "init.mean": ([], ["init.mean=0.05"]),
    "init.a": ([], ["init.a=-0.05"]),
    "init.b": ([], ["init.b=0.05"]),
    "init.target_var": ([], ["init.target_var=2.0"]),
    "init.tol": (["init.tol=0.001"], ["init.tol=0.9"]),
    "init.max_iters": (["model.bias_init=normal", "model.bias_std=0.5", "init.tol=0.001"], ["init.max_iters=1"]),
    "dataset.val_size": ([], ["dataset.val_size=20"]),
    "dataset.test_size": ([], ["dataset.test_size=100"]),
    "dataset.split_seed": (["dataset.val_size=20"], ["dataset.split_seed=1"]),
    "dataset.root": ([], ["dataset.root=OTHER"]),
    "dataset.download": (["dataset.root=EMPTY"], ["dataset.download=true"]),
    "dataset.mean": ([], ["dataset.mean=MEAN"]),
    "dataset.std": ([], ["dataset.std=STD"]),
    "dataset.n_train": ([], ["dataset.n_train=100"]),
    "dataset.n_test": ([], ["dataset.n_test=50"]),
    "dataset.seed": ([], ["dataset.seed=1"]),
    "dataset.noise": ([], ["dataset.noise=0.3"]),
    "dataset.n_features": ([], ["dataset.n_features=4"]),
    "dataset.n_classes": ([], ["dataset.n_classes=5"]),
    "dataset.cluster_std": ([], ["dataset.cluster_std=3.0"]),
    "dataset.factor": ([], ["dataset.factor=0.8"]),
    "dataset.augment": ([], ["dataset.augment=true"]),
    "dataset.size": ([], ["dataset.size=12"]),
    "dataset.channels": ([], ["dataset.channels=3"]),
    "dataset.vocab_size": ([], ["dataset.vocab_size=10"]),
    "dataset.seq_len": ([], ["dataset.seq_len=8"]),
    "optimizer.lr": ([], ["optimizer.lr=0.2"]),
    "optimizer.weight_decay": ([], ["optimizer.weight_decay=0.1"]),
    "optimizer.momentum": ([], ["optimizer.momentum=0.5"]),
    "optimizer.nesterov": (["optimizer.momentum=0.9"], ["optimizer.nesterov=true"]),
    "optimizer.alpha": ([], ["optimizer.alpha=0.5"]),
    "optimizer.eps": ([], ["optimizer.eps=0.1"]),
    "optimizer.betas": ([], ["optimizer.betas=[0.5,0.6]"]),
    "init.apply_to": ([], ["init.apply_to=head"]),
    "init.embedding": ([], ["init.embedding=true"]),
    "model.width": ([], ["model.width=16"]),
    "model.norm": ([], ["model.norm=batchnorm"]),
    "model.preact": ([], ["model.preact=true"]),
    "model.channels": ([], ["model.channels=[8,16]"]),
    "model.residual": ([], ["model.residual=true"]),
    "model.cifar_stem": ([], ["model.cifar_stem=false"]),
    "model.branch_init": ([], ["model.branch_init=zero_last"]),
    "model.d_model": ([], ["model.d_model=32"]),
    "model.nhead": ([], ["model.nhead=2"]),
    "model.dim_feedforward": ([], ["model.dim_feedforward=64"]),
    "model.norm_first": ([], ["model.norm_first=true"]),
    "model.dropout": ([], ["model.dropout=0.5"]),
    "model.bias_init": ([], ["model.bias_init=normal", "model.bias_std=0.1"]),
    "model.bias_std": (["model.bias_init=normal", "model.bias_std=0.1"], ["model.bias_std=0.3"]),
    "logger.histograms": ([], ["logger.histograms=false"]),
    "scheduler.warmup_epochs": ([], ["scheduler.warmup_epochs=2"]),
    "scheduler.step_size": ([], ["scheduler.step_size=2"]),
    "scheduler.gamma": ([], ["scheduler.gamma=0.5"]),
    "scheduler.T_max": ([], ["scheduler.T_max=3"]),
    "scheduler.eta_min": ([], ["scheduler.eta_min=0.001"]),
    "scheduler.monitor": ([], ["scheduler.monitor=val_loss"]),
    "scheduler.factor": ([], ["scheduler.factor=0.5"]),
    "scheduler.patience": ([], ["scheduler.patience=1"]),
    "scheduler.min_lr": (["scheduler.patience=0"], ["scheduler.min_lr=0.005"]),
}

# (choice, key) -> the CHANGES entry of a field that acts there only with another field set, or
# whose default there is CHANGES' second value
CHOICE_CHANGES: dict[tuple[str, str], tuple[list[str], list[str]]] = {
    ("cnn", "model.branch_init"): (["model.residual=true"], ["model.branch_init=zero_last"]),
    ("resnet18", "model.norm"): ([], ["model.norm=none"]),
}

# early_stopping fields -> (overrides in both, overrides of the second); the effect is what the
# tracker makes of one fixed sequence of epochs.csv rows (initlab.train.early_stopping)
STOPPING = ["dataset.val_size=20", "early_stopping.enabled=true"]
RESTARTS = [*STOPPING, "early_stopping.monitor=val_acc", "early_stopping.restarts=1", "early_stopping.restart_below=0.9"]
STOPPING_CHANGES: dict[str, tuple[list[str], list[str]]] = {
    "early_stopping.enabled": (["dataset.val_size=20", "early_stopping.patience=2"], ["early_stopping.enabled=true"]),
    "early_stopping.monitor": (STOPPING, ["early_stopping.monitor=val_acc"]),
    "early_stopping.patience": (STOPPING, ["early_stopping.patience=2"]),
    "early_stopping.min_delta": (STOPPING, ["early_stopping.min_delta=0.05"]),
    "early_stopping.restarts": (RESTARTS, ["early_stopping.restarts=2"]),
    "early_stopping.restart_below": (RESTARTS, ["early_stopping.restart_below=0.5"]),
}
# val_loss and val_acc of epochs 0..13: the loss falls by 0.1 until epoch 4, by 0.01 until epoch 6,
# then rises; the accuracy peaks at 0.8 in epoch 5; each attempt of a restart sees the same rows
VAL_ROWS = [{"val_loss": loss, "val_acc": acc} for loss, acc in zip(
    [2.0, 1.0, 0.6, 0.5, 0.4, 0.39, 0.38, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    [0.1, 0.5, 0.6, 0.7, 0.75, 0.8, 0.76, 0.7, 0.7, 0.6, 0.6, 0.5, 0.5, 0.5])]

FIELDS = [(group, choice, f"{group}.{f.name}") for group in GROUPS for choice in group_choices(group)
          for f in fields(schema_of(group, choice)) if f.name != "name"]

# kernel-shaping fields by the activations they act on; elsewhere the value is refused in one line
# (a changed value there is the ConfigError); solving TAT for a smooth phi takes seconds: slow
SHAPED = {"activation.transform": set(DKS_NAMES), "activation.c_slope_1_target": set(DKS_NAMES),
          "activation.c_val_0_target": {"leaky_relu"},
          "activation.c_curve_target": set(DKS_NAMES) - {"relu", "leaky_relu"}}
FIELD_PARAMS = [pytest.param(*f, marks=pytest.mark.slow) if f[2] == "activation.c_curve_target" and f[1] in
                SHAPED[f[2]] else f for f in FIELDS]


@functools.lru_cache(maxsize=None)
def composed(group: str, choice: str) -> DictConfig:
    """``group=choice`` on the defaults; inits with model=transformer, which has every kind of weight."""
    model = ["model=transformer"] if group == "init" else []
    return compose_config(f"{group}={choice}", *model, *BASE.get(choice, []))


def configure(group: str, choice: str, overrides: list[str]):
    """The typed config of ``group=choice`` with ``overrides`` applied as Hydra applies them."""
    cfg = composed(group, choice).copy()
    parser = OverridesParser.create()
    for override in overrides:
        parsed = parser.parse_override(override)
        OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=True)
    return to_experiment(cfg)


def logged(exp) -> dict:
    """The tags a logger writes for epoch 0 of a small MLP, read back with TensorBoard's reader."""
    model = MLP(5, 3, 4, 2, nn.Tanh())
    x, y = torch.randn(16, 5, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3
    end = EpochEnd(0, {"train_loss": 1.0}, probe_statistics(model, "tanh", x, y), None)
    with tempfile.TemporaryDirectory() as folder:
        state = TrainState(model, build_optimizer(model.parameters(), exp.optimizer), torch.Generator(),
                           records.JobRecords(Path(folder)), seed=0)
        logger = build_logger(exp, Path(folder), x, y, fresh=True)
        logger.on_epoch_end(state, end)
        logger.close(state, {"final": {"train_loss": 1.0}, "choices": {"depth": 2}})
        acc = EventAccumulator(str(Path(folder) / TB_DIR))
        acc.Reload()
        return {kind: sorted(acc.Tags()[kind]) for kind in ("scalars", "histograms")}


def effect(group: str, exp) -> dict:
    """What ``group``'s config feeds into a run, as tensors and plain values."""
    node = getattr(exp, group)
    if group == "logger":
        return logged(exp)
    if group == "activation":  # and its kernel-shaped form in an MLP of the run's depth
        torch.manual_seed(0)
        model = build(exp, INPUTS["vectors"])
        return {"out": build_activation(node)(torch.linspace(-4, 4, 81)),
                "model": model(torch.linspace(-4, 4, 4 * math.prod(INPUTS["vectors"].shape)).reshape(4, -1)).detach()}
    if group == "init":  # a transformer has every kind of weight an init fills (Embedding too)
        model = Transformer(11, 6, 3, 1, nn.ReLU, d_model=8, nhead=2, dim_feedforward=12)
        torch.manual_seed(0)
        initialize(model, node, exp.model, x=torch.randint(0, 11, (8, 6), generator=torch.Generator().manual_seed(0)))
        return {name: p.detach().clone() for name, p in model.named_parameters()}
    if group == "dataset":
        try:
            data = load_data(node)
        except ConfigError as err:  # e.g. missing files: the outcome is the message
            return {"error": str(err)}
        return {k: v for k, v in vars(data).items() if v is not None}
    if group == "optimizer":
        param = nn.Parameter(torch.linspace(-1.0, 1.0, 5))
        optimizer = build_optimizer([param], node)
        for step in range(3):  # a fixed gradient sequence: the update shows every hyperparameter
            optimizer.zero_grad()
            param.grad = torch.linspace(0.5, -0.3, 5) * (step + 1)
            optimizer.step()
        seen = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        return {"param_groups": seen, "param": param.detach().clone()}
    if group == "scheduler":  # the lr of 24 epochs, ReduceLROnPlateau fed a loss that stalls, accuracy that falls
        optimizer = build_optimizer([nn.Parameter(torch.zeros(2))], exp.optimizer)
        schedule, lrs = Schedule(optimizer, exp), []
        for epoch in range(25):
            lrs.append(optimizer.param_groups[0]["lr"])
            loss, acc = max(1.0, 3.0 - epoch), 0.5 - 0.01 * epoch
            schedule.step(epoch, {"train_loss": max(0.5, 3.0 - epoch), "val_loss": loss, "train_acc": 0.5, "val_acc": acc})
        return {"lr": lrs}
    inputs = INPUTS[MODELS[node.name].accepts[0]]  # the model, its init and its output in training mode
    torch.manual_seed(0)
    model = build(exp, inputs)
    initialize(model, exp.init, node)
    x = torch.randint(0, 11, (4, *inputs.shape)) if inputs.kind == "sequences" else torch.randn(4, *inputs.shape)
    torch.manual_seed(1)
    return {**{name: p.detach().clone() for name, p in model.named_parameters()}, "out": model.train()(x).detach()}


def differs(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape != b.shape or not torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() != b.keys() or any(differs(a[k], b[k]) for k in a)
    return a != b


@pytest.fixture
def dataset_files(tmp_path, monkeypatch):
    """Two roots with different fake files of each torchvision set, an empty root, offline downloads."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a download that starts fails at once, locally
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)
    roots = {"ROOT": tmp_path / "root", "OTHER": tmp_path / "other"}

    def prepare(choice: str) -> dict[str, str]:
        if choice == "imdb":
            for seed, root in ((1, roots["OTHER"]), (0, roots["ROOT"])):
                words = ["good", "bad", "plot", "cast", "long", "fun"][seed:]
                make_imdb_like(root, {(split, label): [f"{label} {' '.join(words[:i % (5 - seed) + 1])} review" for i in range(30)]
                                      for split in ("train", "test") for label in ("pos", "neg")})
            return {"ROOT": str(roots["ROOT"]), "OTHER": str(roots["OTHER"])}
        folder = TORCHVISION[choice]
        for seed, root in ((1, roots["OTHER"]), (0, roots["ROOT"])):  # CIFAR's checksums end up ROOT's
            if folder:
                make_mnist_like(root, folder, n_train=60, n_test=20, seed=seed)
            else:
                make_cifar_like(root, monkeypatch, per_batch=12, n_test=10, seed=seed)
        channels = 1 if folder else 3
        return {"ROOT": str(roots["ROOT"]), "OTHER": str(roots["OTHER"]), "EMPTY": str(tmp_path / "empty"),
                "MEAN": "[" + ",".join(["0.5"] * channels) + "]", "STD": "[" + ",".join(["0.2"] * channels) + "]"}

    return prepare


def test_every_field_has_a_change():
    assert {key for _, _, key in FIELDS} == set(CHANGES), "a field without a test that it changes the run"


def stopping_effect(exp) -> dict:
    """Best epoch, stop and restarts of the tracker over VAL_ROWS (a model of one weight)."""
    tracker, model, outcome = EarlyStopping(exp.early_stopping), nn.Linear(1, 1), []
    for attempt in range(exp.early_stopping.restarts + 1):
        tracker.reset()
        for epoch, row in enumerate(VAL_ROWS):
            tracker.update(epoch, row, model)
            if tracker.should_stop():
                break
        outcome.append((tracker.best_epoch, epoch, tracker.failed()))
        if not tracker.failed():
            break
    return {"outcome": outcome}


@pytest.mark.parametrize("key", sorted(STOPPING_CHANGES))
def test_every_early_stopping_field_changes_the_run(key):
    both, changed = STOPPING_CHANGES[key]
    first = stopping_effect(to_experiment(compose_config(*both)))
    second = stopping_effect(to_experiment(compose_config(*both, *changed)))
    assert first != second, f"{' '.join(changed)} changed nothing"


def test_every_early_stopping_field_has_a_change():
    assert {f"early_stopping.{f.name}" for f in fields(EarlyStoppingConfig)} == set(STOPPING_CHANGES)


def test_blobs_has_no_noise_field():
    """The dead field of the issue: make_blobs' spread is cluster_std; there is no noise to set."""
    assert "noise" not in {f.name for f in fields(schema_of("dataset", "blobs"))}
    assert "noise" in {f.name for f in fields(schema_of("dataset", "moons"))}


@pytest.mark.parametrize("group,choice,key", FIELD_PARAMS, ids=[f"{c}:{k}" for _, c, k in FIELDS])
def test_every_field_changes_the_run(group, choice, key, dataset_files):
    both, changed = CHOICE_CHANGES.get((choice, key), CHANGES[key])
    if key in SHAPED and choice not in SHAPED[key]:
        with pytest.raises(ConfigError, match=r"^activation\.[^\n]*$"):
            configure(group, choice, [*both, *changed])
        return
    if choice in TORCHVISION or choice == "imdb":
        names = dataset_files(choice)
        # imdb: ROOT's reviews give 10 token ids (8 words + PAD + UNK), the most vocab_size may be
        both = ["dataset.root=ROOT", *(["dataset.vocab_size=8"] if choice == "imdb" else ["dataset.download=false"]),
                *both]

        def fill(overrides):
            out = []
            for o in overrides:
                k, v = o.split("=", 1)
                out.append(f"{k}={names.get(v, v)}")
            return out

        both, changed = fill(both), fill(changed)
    if (choice, key) == ("lsuv", "init.apply_to"):  # LSUV rescales every layer: head is refused
        with pytest.raises(ConfigError, match="^init.apply_to=head does not apply to init=lsuv"):
            configure(group, choice, [*both, *changed])
        return
    first = effect(group, configure(group, choice, both))
    second = effect(group, configure(group, choice, [*both, *changed]))
    assert differs(first, second), f"{group}={choice}: {' '.join(changed)} changed nothing"
    if "error" in first:  # the base config must do real work, not fail (only download differs by outcome)
        assert key == "dataset.download", first


OPTIMIZER_KEYS = {"lr": "lr", "weight_decay": "weight_decay", "momentum": "momentum", "nesterov": "nesterov",
                  "alpha": "alpha", "eps": "eps", "betas": "betas"}


UNUSUAL = {"lr": "0.123", "weight_decay": "0.0123", "momentum": "0.456", "nesterov": "true", "alpha": "0.789",
           "eps": "0.0321", "betas": "[0.61,0.72]"}  # none is a torch default, so a dropped argument shows


@pytest.mark.parametrize("choice", group_choices("optimizer"))
def test_every_optimizer_field_reaches_torch(choice):
    """Each field equals torch's param_groups entry of the same name (nesterov, alpha, eps, betas too)."""
    names = [f.name for f in fields(schema_of("optimizer", choice)) if f.name != "name"]
    node = configure("optimizer", choice, [f"optimizer.{n}={UNUSUAL[n]}" for n in names]).optimizer
    group0 = build_optimizer([nn.Parameter(torch.zeros(2))], node).param_groups[0]
    for name in names:
        value = getattr(node, name)
        assert value == (True if name == "nesterov" else [0.61, 0.72] if name == "betas" else float(UNUSUAL[name]))
        seen = group0[name]
        assert (tuple(seen) == tuple(value)) if name == "betas" else seen == value, (name, seen, value)


# top-level keys of what a job records and optimizes: a second value changes the job's files
TOP_LEVEL_CHANGES: dict[str, list[str]] = {
    "loss": ["loss=mse"],
    "log_every_steps": ["log_every_steps=2"],
    "distributions_every": ["distributions_every=1"],
}


def job_effect(job_dir, overrides: list[str]) -> dict:
    """The files a one-epoch digits job writes and its losses (epoch_time left out: wall clock)."""
    run_job(compose_config("depth=2", "model.width=8", "epochs=1", "probe_size=50", "threads=1", "device=cpu",
                           *overrides), job_dir)
    rows = read_csv(job_dir / "epochs.csv")
    return {"files": sorted(p.name for p in job_dir.glob("*.csv")),
            "losses": [(r["train_loss"], r["test_loss"]) for r in rows]}


@pytest.mark.parametrize("key", sorted(TOP_LEVEL_CHANGES))
def test_top_level_fields_change_the_run(tmp_path, key):
    assert key in {f.name for f in fields(ExperimentConfig)}
    first = job_effect(tmp_path / "a", [])
    assert first != job_effect(tmp_path / "b", TOP_LEVEL_CHANGES[key]), f"{key} changed nothing"


def test_objective_changes_what_a_job_returns_to_a_sweeper(tmp_path):
    """``objective`` changes no file (like ``threads``): it picks the number train.py returns to an
    optimizing sweeper (tests/test_search.py runs one), each metric's own final value."""
    from initlab import objective
    from initlab.config import Objective

    result = run_job(compose_config("depth=2", "model.width=8", "epochs=1", "probe_size=50", "threads=1",
                                    "device=cpu", "dataset.val_size=100", "objective=val_loss"), tmp_path)
    returned = {m.value: objective.value(result, m) for m in Objective}
    assert returned == {m: result["final"][m] for m in ("val_acc", "val_loss", "train_acc", "train_loss")}
    assert len(set(returned.values())) == 4
