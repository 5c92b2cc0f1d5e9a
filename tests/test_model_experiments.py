"""The P6 experiment files: every job of each sweep composes, validates and fits its dataset.

tests/test_config.py composes each experiment's base; here every point of its
``hydra.sweeper.params`` grid is composed with it, validated (``to_experiment``) and fit-checked
(``check_config_fits``, what the job checks before loading data), and the settings the studies
name (from the issue) are the ones the files give.
"""

from __future__ import annotations

import itertools

from omegaconf import OmegaConf

from conftest import CONF, compose_config
from initlab.config import to_experiment
from initlab.models import check_config_fits

STUDY_INITS = ["xavier_uniform", "he_normal", "torch_default", "small_normal"]


def sweep_points(name: str) -> list[list[str]]:
    """Every job's overrides of ``conf/experiment/<name>.yaml``'s sweep grid."""
    params = OmegaConf.load(CONF / "experiment" / f"{name}.yaml").hydra.sweeper.params
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(point) for point in itertools.product(*axes)]


def jobs(name: str, *extra: str):
    return [to_experiment(compose_config(f"+experiment={name}", *extra, *point)) for point in sweep_points(name)]


def test_residual_depth_grid_is_plain_vs_residual_at_the_study_depths():
    exps = jobs("residual_depth")
    assert sorted((e.model.name, e.depth) for e in exps) == sorted(
        itertools.product(["mlp", "resmlp"], [5, 10, 20, 30, 50, 100]))
    offline = [to_experiment(compose_config("+experiment=residual_depth", "dataset=digits", "dataset.val_size=300",
                                            f"model={m}", "depth=100")) for m in ("mlp", "resmlp")]
    assert {e.dataset.name for e in offline} == {"digits"}
    for exp in exps + offline:
        check_config_fits(exp)
        assert exp.model.norm.value == "batchnorm" and exp.init.name == "torch_default"
        assert exp.model.bias_init.value == "torch_default"
        assert (exp.optimizer.name, exp.optimizer.lr, exp.optimizer.weight_decay) == ("adam", 1e-3, 1e-4)
        assert (exp.batch_size, exp.epochs) == (128, 20)
        plateau = exp.scheduler  # the study's ReduceLROnPlateau(mode="min", factor=0.5, patience=3, min_lr=1e-6) on val_loss
        assert (plateau.name, plateau.monitor.value, plateau.mode) == ("reduce_on_plateau", "val_loss", "min")
        assert (plateau.factor, plateau.patience, plateau.min_lr, plateau.warmup_epochs) == (0.5, 3, 1e-6, 0)
        stop = exp.early_stopping  # its early stopping: val_acc must rise, patience 5
        assert (stop.enabled, stop.monitor.value, stop.patience, stop.min_delta, stop.restarts) == (True, "val_acc", 5, 0, 0)
    assert {e.dataset.name for e in exps} == {"mnist"}
    assert {e.dataset.val_size for e in exps} == {5000}  # 55k/5k/10k
    assert (list(exps[0].dataset.mean), list(exps[0].dataset.std)) == ([0.1307], [0.3081])


def test_resnet_init_grid_is_the_cnn_studys_setting():
    exps = jobs("resnet_init")
    assert [e.init.name for e in exps] == STUDY_INITS
    for exp in exps:
        check_config_fits(exp)
        assert exp.model.name == "resnet18" and exp.model.cifar_stem
        assert exp.dataset.name == "cifar10" and exp.dataset.augment
        assert list(exp.dataset.mean) == [0.4914, 0.4822, 0.4465] and list(exp.dataset.std) == [0.2023, 0.1994, 0.2010]
        assert (exp.optimizer.name, exp.optimizer.lr, exp.optimizer.weight_decay) == ("adam", 1e-3, 1e-4)
        assert (exp.batch_size, exp.epochs) == (64, 10)
    he, small = exps[1].init, exps[3].init
    assert (he.mode.value, he.factor) == ("fan_in", 2.0) and small.std == 0.01


def test_transformer_init_grid_is_offline_and_inits_embeddings():
    exps = jobs("transformer_init")
    assert sorted((e.init.name, e.seed) for e in exps) == sorted(itertools.product(STUDY_INITS, [0, 1, 2]))
    for exp in exps:
        check_config_fits(exp)
        assert exp.model.name == "transformer" and exp.dataset.name == "majority" and exp.init.embedding


def test_deep_plain_grid_is_the_five_arms_at_four_depths():
    """P9: plain MLPs without normalization (relu + He, tanh + orthogonal at the critical sigma_w^2,
    TAT leaky ReLU, DKS tanh, both with scaled_orthogonal) against resmlp + BatchNorm, depths 20-200;
    every shaped arm builds (its transform solves) at every depth."""
    from initlab import theory
    from initlab.models import Inputs, build

    exps = jobs("deep_plain")
    arms = {(e.model.name, e.model.norm.value, e.activation.name, e.activation.transform.value, e.init.name)
            for e in exps}
    assert arms == {("mlp", "none", "relu", "none", "he_normal"), ("mlp", "none", "tanh", "none", "orthogonal"),
                    ("mlp", "none", "leaky_relu", "tat", "scaled_orthogonal"),
                    ("mlp", "none", "tanh", "dks", "scaled_orthogonal"),
                    ("resmlp", "batchnorm", "relu", "none", "he_normal")}
    assert sorted({e.depth for e in exps}) == [20, 50, 100, 200]
    for exp in exps:
        check_config_fits(exp)
        assert exp.model.bias_init.value == "zeros" and exp.model.width == 128
        assert (exp.optimizer.name, exp.optimizer.lr, exp.epochs, exp.batch_size) == ("adam", 1e-4, 20, 128)
        assert (exp.dataset.name, exp.dataset.val_size) == ("mnist", 5000)
        if exp.init.name == "orthogonal":  # critical: chi_1 = 1 for tanh without bias
            assert exp.init.gain**2 == theory.critical_sigma_w2("tanh", 0.0)
        if exp.activation.transform.value != "none" and exp.depth in (20, 200):
            build(exp, Inputs("images", (1, 28, 28), 10))
