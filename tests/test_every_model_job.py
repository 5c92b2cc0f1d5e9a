"""Every model of the registry trains a tiny job offline through the real job (initlab.train.job.run).

Per model: the job completes; result.json's ``n_params`` is the registry-built model's parameter
count; layers.csv holds, for every probed epoch, one row per site (the sites a forward pass of
the registry-built model visits, in that order, by ``index``) and one ``weight`` row per
Linear/Conv/Embedding weight or attention q/k/v projection that no site names; ``layer``
numbers the hidden/output sites 1..n; the predicted columns are empty and ``theory_reason``
says why for every model but the plain MLP; epochs.csv's ``grad_norm`` is empty at epoch 0 and
positive after; the job's log starts with the model summary. ResNet-18's rows include every
ReLU's pre-activation.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from conftest import compose_config, read_csv, run_job
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.models import build_model
from initlab.models.sites import probing, sites

COMMON = ("epochs=1", "threads=1", "device=cpu", "probe_size=32", "seed=3")
CASES = {
    "mlp": ["model=mlp", "depth=2", "model.width=8"],
    "mlp-batchnorm": ["model=mlp", "depth=2", "model.width=8", "model.norm=batchnorm"],
    "mlp-layernorm": ["model=mlp", "depth=2", "model.width=8", "model.norm=layernorm"],
    "resmlp": ["model=resmlp", "depth=4", "model.width=8"],
    "cnn": ["model=cnn", "depth=3", "model.channels=[4,6]"],
    "cnn-residual": ["model=cnn", "depth=3", "model.channels=[4,6]", "model.residual=true"],
    "resnet18": ["model=resnet18", "dataset=shapes", "dataset.n_train=32", "dataset.n_test=16", "dataset.size=8",
                 "dataset.channels=3", "batch_size=16"],
    "transformer": ["model=transformer", "dataset=majority", "dataset.n_train=64", "dataset.n_test=32",
                    "dataset.vocab_size=8", "dataset.seq_len=6", "model.d_model=8", "model.nhead=2",
                    "model.dim_feedforward=16", "depth=1", "batch_size=32"],
}
WEIGHTED = (nn.Linear, nn.Conv2d, nn.Embedding)


def weights_of(name: str, module: nn.Module) -> list[str]:
    """The weight matrices ``module`` holds itself: a Linear/Conv/Embedding weight, or
    MultiheadAttention's stacked q/k/v projection (its out_proj is a Linear of its own)."""
    if isinstance(module, WEIGHTED):
        return [f"{name}.weight"]
    if isinstance(module, nn.MultiheadAttention):
        return [f"{name}.in_proj_weight"]
    return []
PREDICTED = ("q_pred", "delta_rms_pred")


def registry_model(cfg):
    """The model as the registry builds it for the job's data, and its sites in forward order."""
    exp = to_experiment(cfg)
    data = load_data(exp.dataset)
    model = build_model(exp, data)
    model.eval()
    with torch.no_grad(), probing(model, shifts=False) as probe:
        model(data.x_train[:2])
    return model, [(t.site, t.kind, t.weight) for t in probe.taps.values()]


@pytest.mark.parametrize("case", list(CASES))
def test_every_model_trains_a_tiny_job_with_a_row_per_site(case, tmp_path, caplog):
    cfg = compose_config(*CASES[case], *COMMON)
    model, forward_sites = registry_model(cfg)
    caplog.set_level(logging.INFO)
    result = run_job(cfg, tmp_path)

    assert result["status"] == "completed"
    n_params = sum(p.numel() for p in model.parameters())
    assert result["n_params"] == n_params

    # the log starts with the model summary: torchinfo's table and the parameter count
    job_records = [r.getMessage() for r in caplog.records if r.name.startswith("initlab")]
    assert job_records and "Layer (type (var_name))" in job_records[0], job_records[:1]
    assert f"Total params: {n_params:,}" in job_records[0] and f"{n_params} parameters" in job_records[0]

    # layers.csv: per probed epoch, the sites in forward order, then the unnamed weights
    assert set(dict(sites(model))) == {s for s, _, _ in forward_sites}, "every site runs in the forward pass"
    named = {w for _, _, w in forward_sites if w is not None}
    all_weights = [w for n, m in model.named_modules() for w in weights_of(n, m)]
    assert named <= set(all_weights), "a site names a weight the model does not have"
    unnamed = [w.removesuffix(".weight").removesuffix("_weight") for w in all_weights if w not in named]
    if case == "transformer":  # the stacked q/k/v projection had no row at all
        assert "encoder.layers.0.self_attn.in_proj" in unnamed
    hidden_output = [s for s, k, _ in forward_sites if k in ("hidden", "output")]
    layers = read_csv(tmp_path / "layers.csv")
    epochs = sorted({int(r["epoch"]) for r in layers})
    assert epochs == [0, 1]
    for epoch in epochs:
        rows = sorted((r for r in layers if int(r["epoch"]) == epoch), key=lambda r: int(r["index"]))
        assert [int(r["index"]) for r in rows] == list(range(len(forward_sites) + len(unnamed)))
        assert [(r["site"], r["kind"]) for r in rows] == \
            [(s, k) for s, k, _ in forward_sites] + [(w, "weight") for w in unnamed]
        numbered = [r for r in rows if r["layer"] != ""]
        assert [r["site"] for r in numbered] == hidden_output
        assert [int(r["layer"]) for r in numbered] == list(range(1, len(hidden_output) + 1))
        for r in rows[len(forward_sites):]:  # weight rows: only the weight columns
            assert r["weight_norm"] != "" and r["preact_mean"] == "" and r["delta_rms"] == ""

    # theory: predictions for the plain MLP only, a reason everywhere else
    if case == "mlp":
        assert result["theory_reason"] is None
        assert all(r["q_pred"] != "" for r in layers if r["epoch"] == "0" and r["kind"] == "hidden")
    else:
        assert isinstance(result["theory_reason"], str) and result["theory_reason"].strip()
        assert all(r[c] == "" for r in layers for c in PREDICTED), "predictions outside the theory"

    # epochs.csv: the total gradient norm per step, averaged over the epoch
    rows = read_csv(tmp_path / "epochs.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[0]["grad_norm"] == "" and float(rows[1]["grad_norm"]) > 0

    if case == "resnet18":
        resnet18_rows(layers, forward_sites)


def resnet18_rows(layers: list[dict], forward_sites: list[tuple]) -> None:
    """Every ReLU of ResNet-18 is a site whose pre-activation (the ReLU's input) is recorded."""
    names = [s for s, _, _ in forward_sites]
    assert "layer3.1.act2" in names and "layer4.1.residual" in names
    assert sum(k == "residual" for _, k, _ in forward_sites) == 8, "one residual site per BasicBlock"
    relu = [r for r in layers if r["kind"] == "hidden"]
    assert len(relu) == 2 * 17, "the stem's ReLU and two per block, at epochs 0 and 1"
    for r in relu:
        assert float(r["preact_std"]) > 0 and float(r["act_mean"]) >= 0 and float(r["frac_zero"]) > 0, r["site"]
        assert float(r["preact_mean"]) < float(r["act_mean"]), "the ReLU's input, not its output"
    assert any(float(r["preact_mean"]) < 0 for r in relu), "pre-activations are signed"


# --- P7's training extras on every model family ------------------------------------------------
EXTRAS = ("epochs=3", "dataset.val_size=16", "scheduler=cosine", "scheduler.warmup_epochs=1",
          "early_stopping.enabled=true", "early_stopping.monitor=val_acc", "early_stopping.patience=1",
          "checkpoint=both", "log_every_steps=1", "distributions_every=1", "logger=tensorboard",
          "logger.histograms=false", "loss=mse")


@pytest.mark.parametrize("case", ["mlp-batchnorm", "resmlp", "cnn-residual", "resnet18", "transformer"])
def test_every_model_trains_with_every_training_extra(case, tmp_path):
    """Schedule with warmup, early stopping with restored best weights, both kept checkpoints,
    steps.csv, distributions.csv, TensorBoard and the MSE loss, all at once, on each family: the
    job completes, the files are there with rows for the model's sites, the lr follows the schedule
    and the final metrics are the best epoch's row."""
    overrides = [o for o in CASES[case] if not o.startswith("epochs")]
    result = run_job(compose_config(*overrides, *COMMON[1:], *EXTRAS), tmp_path)
    assert result["status"] == "completed"
    for name in ("best.pt", "checkpoint.pt", "steps.csv", "distributions.csv", "tb"):
        assert (tmp_path / name).exists(), name
    epochs = read_csv(tmp_path / "epochs.csv")
    lrs = [float(r["lr"]) for r in epochs]
    assert lrs[1] == pytest.approx(lrs[0]) and lrs[0] > 0  # warmup epoch 1 of 1 trains at optimizer.lr
    best = max(epochs, key=lambda r: (float(r["val_acc"]), -int(r["epoch"])))
    assert result["restored_best"] and result["best_epoch"] == int(best["epoch"])
    assert result["final"]["val_acc"] == pytest.approx(float(best["val_acc"]))
    layer_sites = {r["site"] for r in read_csv(tmp_path / "layers.csv")}
    assert {r["site"] for r in read_csv(tmp_path / "steps.csv")} <= layer_sites
    assert {r["site"] for r in read_csv(tmp_path / "distributions.csv")} <= layer_sites
    assert result["rows"]["steps.csv"] == len(read_csv(tmp_path / "steps.csv")) > 0
