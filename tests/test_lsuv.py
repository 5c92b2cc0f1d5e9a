"""init=lsuv (initlab.lsuv over the ``lsuv`` package) against what Mishkin & Matas 2016 promise:
after the init, every rescaled layer's output has variance within ``tol`` of 1 on the data batch,
each layer took at most ``max_iters`` rescalings, and the result is a function of the seed. The
variances are recomputed here with independent forward hooks and NumPy, the rescaling with a
plain-torch transcription of Algorithm 1.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from lsuv import lsuv_with_singlebatch
from torch import nn

from conftest import compose_config
from initlab import models
from initlab.choices.inits import INITS, LSUV_THEORY
from initlab.config import ConfigError, to_experiment
from initlab.data import load_data
from initlab.inits import initialize
from initlab.lsuv import rescale
from initlab.models import build_model
from initlab.train.predictions import mean_field, no_predictions

DATASET = {"mlp": "digits", "resmlp": "digits", "cnn": "digits", "resnet18": "digits", "transformer": "majority"}
FAMILIES = [pytest.param("resnet18", marks=pytest.mark.slow) if m == "resnet18" else m for m in DATASET]
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def setup(model: str, *overrides: str, probe: int = 64, seed: int = 0):
    """(experiment, model built by build_model under ``seed``, probe batch) for ``init=lsuv``."""
    exp = to_experiment(compose_config("init=lsuv", f"model={model}", f"dataset={DATASET[model]}", "depth=3",
                                       f"seed={seed}", *overrides))
    data = load_data(exp.dataset)
    torch.manual_seed(exp.seed)
    return exp, build_model(exp, data), data.x_train[:probe]


def layer_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every Linear/Conv/attention output on ``x`` in eval mode, by module name (own hooks); the
    attention block's out_proj is applied inside nn.MultiheadAttention, never called as a module."""
    outs, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, LAYERS) and not name.endswith("self_attn.out_proj"):
            handles.append(m.register_forward_hook(
                lambda mod, i, o, name=name: outs.__setitem__(name, (o[0] if isinstance(o, tuple) else o).detach().numpy())))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return outs


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layer_output_has_unit_variance_within_tol(family):
    """The paper's promise, on the probe batch: |Var(layer output) - 1| <= tol at every layer the
    method rescales, reached within max_iters rescalings, and still so once every later layer is
    done (so no layer was rescaled before one feeding it); the report says the same numbers."""
    exp, model, x = setup(family)
    report = initialize(model, exp.init, exp.model, x)
    outs = layer_outputs(model, x)
    assert sorted(r["layer"] for r in report["layers"]) == sorted(outs), "every Linear/Conv/attention layer"
    for r in report["layers"]:
        var = outs[r["layer"]].astype(np.float64).var(ddof=1)
        assert abs(var - 1.0) <= exp.init.tol, r
        assert r["variance"] == pytest.approx(var, rel=1e-6)
        assert r["converged"] and 0 <= r["iterations"] <= exp.init.max_iters
    assert any(r["iterations"] > 0 for r in report["layers"]), "orthonormal weights alone are not unit-variance"
    assert (report["target_var"], report["tol"], report["max_iters"], report["batch_size"]) == (1.0, 0.1, 10, len(x))


def reference_lsuv(model: nn.Module, x: torch.Tensor, target_var: float, tol: float, max_iters: int) -> list[int]:
    """Algorithm 1 in plain torch for an MLP's Linears: per layer, while |Var(h) - target| > tol
    and fewer than max_iters tries, W *= sqrt(target / Var(h)); returns the tries per layer."""
    iterations = []
    with torch.no_grad():
        for layer in model.linears:
            seen = {}
            handle = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("var", o.double().var().item()))
            n = 0
            model.eval()(x)
            while abs(seen["var"] - target_var) > tol and n < max_iters:
                layer.weight.mul_(math.sqrt(target_var / seen["var"]))
                n += 1
                model(x)
            handle.remove()
            iterations.append(n)
    return iterations


@pytest.mark.parametrize("max_iters", [1, 2, 10])
def test_rescaling_and_iterations_match_algorithm_1(max_iters):
    """With large biases one rescaling cannot reach the target (Var = s^2 Var(Wx) + Var(b)): the
    weights and the per-layer iteration counts equal a plain transcription of Algorithm 1, and
    max_iters caps the count; a layer left outside tol is reported and logged."""
    overrides = ("model.bias_init=normal", "model.bias_std=0.8", f"init.max_iters={max_iters}", "init.tol=0.01")
    exp, model, x = setup("mlp", *overrides)
    _, reference, _ = setup("mlp", *overrides)
    torch.manual_seed(0)
    initialize(reference, to_experiment(compose_config("init=orthogonal")).init, exp.model)
    expected = reference_lsuv(reference, x, 1.0, 0.01, max_iters)
    torch.manual_seed(0)
    report = initialize(model, exp.init, exp.model, x)
    assert [r["iterations"] for r in report["layers"]] == expected
    assert max(expected) == max_iters if max_iters < 10 else max(expected) > 1
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    outs = layer_outputs(model, x)
    for r in report["layers"]:
        assert r["converged"] == (abs(outs[r["layer"]].astype(np.float64).var(ddof=1) - 1) <= 0.01)


def test_a_layer_that_does_not_converge_is_logged(caplog):
    exp, model, x = setup("mlp", "model.bias_init=normal", "model.bias_std=0.8", "init.max_iters=1", "init.tol=0.01")
    with caplog.at_level(logging.WARNING, logger="initlab.lsuv"):
        report = initialize(model, exp.init, exp.model, x)
    missed = [r["layer"] for r in report["layers"] if not r["converged"]]
    assert missed and all(name in caplog.text for name in missed)


def test_target_variance_other_than_one():
    exp, model, x = setup("cnn", "init.target_var=2.5", "init.tol=0.05")
    report = initialize(model, exp.init, exp.model, x)
    for name, out in layer_outputs(model, x).items():
        assert abs(out.astype(np.float64).var(ddof=1) - 2.5) <= 0.05, name
    assert all(r["converged"] for r in report["layers"])


def test_pre_init_and_rescaling_agree_with_the_package_where_it_is_right():
    """Under one seed, init=lsuv gives the weights the package itself gives with its own
    orthonormal pre-init (the same draws in the same order, biases 0), where one rescaling per
    layer suffices (no biases: a layer's output is linear in its weight) and so the package's
    misdirected later rescalings (see initlab.lsuv) never run."""
    exp, ours, x = setup("transformer", "init.tol=1e-4")
    _, theirs, _ = setup("transformer")
    torch.manual_seed(5)
    report = initialize(ours, exp.init, exp.model, x)
    assert [r["iterations"] for r in report["layers"]] == [1] * len(report["layers"])
    torch.manual_seed(5)
    lsuv_with_singlebatch(theirs, x, std_tol=5e-5, do_orthonorm=True, verbose=False)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_the_packages_own_loop_rescales_the_wrong_layer():
    """Why initlab.lsuv does not call the package's loop. Every layer converged except the head
    (scaled by 3), with biases so that one rescaling cannot reach the target: the package's second
    rescaling of the head lands on the first layer, Algorithm 1 leaves the first layer alone."""
    exp, model, x = setup("mlp", "model.bias_init=normal", "model.bias_std=0.8", "init.tol=1e-4", "init.max_iters=200")
    assert all(r["converged"] for r in initialize(model, exp.init, exp.model, x)["layers"])
    with torch.no_grad():
        model.linears[-1].weight.mul_(3.0)
    ours = {k: v.clone() for k, v in model.state_dict().items()}
    first = model.linears[0].weight.clone()
    lsuv_with_singlebatch(model, x, std_tol=1e-3, max_attempts=20, do_orthonorm=False, verbose=False)
    assert not torch.equal(model.linears[0].weight, first)
    model.load_state_dict(ours)
    report = rescale(model, x, 1.0, 2e-3, 200)
    assert torch.equal(model.linears[0].weight, first)
    assert [r["iterations"] for r in report["layers"]][:-1] == [0] * (len(report["layers"]) - 1)
    assert report["layers"][-1]["iterations"] > 1 and report["layers"][-1]["converged"]


def test_deterministic_under_the_seed():
    runs = []
    for seed in (3, 3, 4):
        exp, model, x = setup("resmlp", seed=seed)
        torch.manual_seed(seed)
        report = initialize(model, exp.init, exp.model, x)
        runs.append((report, model.state_dict()))
    (r0, s0), (r1, s1), (_, s2) = runs
    assert r0 == r1 and all(torch.equal(s0[k], s1[k]) for k in s0)
    assert json.loads(json.dumps(r0)) == r0, "the report goes into result.json as it is"
    assert not all(torch.equal(s0[k], s2[k]) for k in s0)


def test_no_mean_field_prediction():
    """LSUV's scales come from the data: the run has no sigma_w^2 and says why."""
    exp, model, x = setup("mlp")
    assert models.theory_reason(exp) == LSUV_THEORY
    initialize(model, exp.init, exp.model, x)
    assert mean_field(exp, model, x, 1.0) == no_predictions()
    with pytest.raises(ValueError, match="data batch"):
        INITS["lsuv"].sigma_w2(exp.init, 10, 10)


def test_bad_input_is_one_line():
    exp, model, _ = setup("mlp")
    with pytest.raises(ValueError, match="^init=lsuv rescales the model on a data batch: pass x"):
        initialize(model, exp.init, exp.model)
    with pytest.raises(ConfigError, match="^init.apply_to=head does not apply to init=lsuv"):
        to_experiment(compose_config("init=lsuv", "init.apply_to=head"))
    with pytest.raises(ConfigError, match=r"^init.tol must be < init.target_var \(1.0\), got 1.0$"):
        to_experiment(compose_config("init=lsuv", "init.tol=1.0"))
    with pytest.raises(ConfigError, match="^init.max_iters must be"):
        to_experiment(compose_config("init=lsuv", "init.max_iters=0"))


@pytest.mark.parametrize("model", [["model=resmlp"], ["model=cnn", "model.residual=true"]])
@pytest.mark.parametrize("branch", ["fixup", "zero_last"])
def test_a_branch_init_that_zeroes_or_rescales_lsuvs_layers_is_refused(model, branch):
    """Fixup and zero_last act after LSUV: init_report said 'variance 1.0, converged' for layers then
    zeroed (weight_norm 0, output std 0)."""
    with pytest.raises(ConfigError, match=rf"^init=lsuv with model.branch_init={branch}: the branch init zeroes or "
                                          r"rescales the layers after LSUV .*; valid: model.branch_init=default, "
                                          r"rezero or skipinit with lsuv$"):
        to_experiment(compose_config("init=lsuv", *model, f"model.branch_init={branch}"))


@pytest.mark.parametrize("branch", ["rezero", "skipinit"])
def test_lsuv_under_a_gated_branch_init_keeps_its_report_true(branch):
    """rezero and skipinit gate the branches with a scalar 0 and leave the weights LSUV set: the
    report's variances are those of the final network's layers."""
    exp, model, x = setup("resmlp", f"model.branch_init={branch}")
    report = initialize(model, exp.init, exp.model, x)
    outs = layer_outputs(model, x)
    for r in report["layers"]:
        var = outs[r["layer"]].astype(np.float64).var(ddof=1)
        assert abs(var - 1.0) <= exp.init.tol and r["variance"] == pytest.approx(var, rel=1e-6), r


def test_a_job_records_the_lsuv_report_and_starts_from_unit_variance_layers(tmp_path):
    """train.py-equivalent job (initlab.train.job.run): result.json's init_report is LSUV's report
    on the job's own probe batch, and layers.csv's epoch-0 pre-activations agree with it."""
    from initlab.train.job import run

    cfg = compose_config("init=lsuv", "depth=3", "model.width=32", "epochs=1", "probe_size=200", "threads=1")
    result = run(cfg, tmp_path)
    report = result["init_report"]
    assert result["status"] == "completed" and result["theory_reason"] == LSUV_THEORY
    assert report["batch_size"] == 200 and report["tol"] == 0.1 and report["max_iters"] == 10
    assert len(report["layers"]) == 4  # three hidden Linear layers and the output layer
    assert all(abs(layer["variance"] - 1.0) <= 0.1 and 0 <= layer["iterations"] <= 10 for layer in report["layers"])
    assert json.loads((tmp_path / "result.json").read_text())["init_report"] == report
