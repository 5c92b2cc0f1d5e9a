"""Evaluation in memory-bounded chunks (initlab.train.loop.eval_rows): the widest activation of a
chunk stays within EVAL_BYTES, for one model and for K stacked members, and chunking changes no
value beyond float rounding.

The sizes are computed here by hand from the architectures (a CNN's first stage is 16 feature
maps of the input's size; an MLP's widest layer is its width), independently of the hooks
eval_rows uses. Found by profiling a depth-50 ensemble: 8 members' (8, 128, 8192) blocks were
32 MiB each, page-faulted in afresh every layer (benchmarks/README.md, "Evaluation chunks").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from initlab.config.experiment import to_experiment
from initlab.data import load_data
from initlab.ensemble.epoch import evaluate as evaluate_members
from initlab.ensemble.stack import Stacked
from initlab.models import build_model
from initlab.train.loop import EVAL_BYTES, EVAL_CHUNK, eval_rows, evaluate

MIB = 2**20


def _model_and_data(compose_cfg, *overrides: str, seed: int = 0):
    exp = to_experiment(compose_cfg(*overrides, f"seed={seed}"))
    data = load_data(exp.dataset)
    torch.manual_seed(seed)
    return build_model(exp, data), data


def test_cnn_chunk_holds_16_mib_of_its_widest_feature_maps(compose_cfg):
    model, data = _model_and_data(compose_cfg, "model=cnn", "dataset=shapes", "dataset.size=32",
                                  "dataset.channels=3", "dataset.n_test=300")
    widest = 16 * 32 * 32 * 4  # channels[0] maps of 32 x 32 float32: 64 KiB an example
    assert EVAL_BYTES["cpu"] == 16 * MIB
    assert eval_rows(model, data.x_test[:1]) == 16 * MIB // widest == 256
    assert eval_rows(model, data.x_test[:1], members=8) == 32


def test_mlp_keeps_the_largest_chunk_and_shares_it_among_members(compose_cfg):
    model, data = _model_and_data(compose_cfg, "model=mlp", "model.width=128", "depth=4", "dataset=digits")
    assert eval_rows(model, data.x_test[:1]) == EVAL_CHUNK == 8192  # 8192 x 128 x 4 B = 4 MiB
    assert eval_rows(model, data.x_test[:1], members=8) == 4096    # the 8 members' blocks: 16 MiB
    assert eval_rows(model, data.x_test[:1], members=10**9) == 1


def test_attention_scores_count_though_no_module_outputs_them(compose_cfg):
    """A transformer on 256-token sequences: heads x T x T float32 scores are 1 MiB an example
    (4 x 256 x 256 x 4 B), where its widest module output is 64 KiB (256 x 64 floats); chunks of
    128 held 128 MiB of scores a layer (the peak memory grew by 243 MiB)."""
    model, data = _model_and_data(compose_cfg, "model=transformer", "model.nhead=4", "model.d_model=64",
                                  "dataset=majority", "dataset.seq_len=256", "dataset.n_train=64",
                                  "dataset.n_test=32", "depth=1")
    assert eval_rows(model, data.x_test[:1]) == 16 * MIB // (4 * 256 * 256 * 4) == 16


def test_eval_rows_restores_the_mode_and_removes_its_hooks(compose_cfg):
    model, data = _model_and_data(compose_cfg, "model=cnn", "model.norm=batchnorm", "dataset=shapes",
                                  "dataset.n_test=50")
    model.train()
    running = model.state_dict()
    eval_rows(model, data.x_test[:1])
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())
    for key, value in model.state_dict().items():  # one example in eval mode: BatchNorm's stats untouched
        assert torch.equal(value, running[key]), key


def test_chunked_evaluation_equals_one_pass_over_the_whole_set(compose_cfg):
    model, data = _model_and_data(compose_cfg, "model=cnn", "dataset=shapes", "dataset.size=32",
                                  "dataset.channels=1", "dataset.n_test=700")
    rows = eval_rows(model, data.x_test[:1])
    assert rows < len(data.y_test)  # 700 examples are 3 chunks
    sizes: list[int] = []
    handles = [m.register_forward_hook(lambda m, i, out: sizes.append(out.numel() * out.element_size()))
               for m in model.modules()]
    loss, acc = evaluate(model, data.x_test, data.y_test)
    for handle in handles:
        handle.remove()
    assert max(sizes) == rows * 16 * 32 * 32 * 4 <= EVAL_BYTES["cpu"]
    with torch.no_grad():
        logits = model(data.x_test).double().numpy()
    y = data.y_test.numpy()
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-log_p[np.arange(len(y)), y].mean(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(axis=1) == y).mean(), abs=1e-12)


class _Recorded(Stacked):
    """Stacked, keeping the number of examples of every forward."""

    def __init__(self, models) -> None:
        super().__init__(models)
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return super().forward(x, shared)


def test_stacked_members_evaluate_as_each_alone_in_bounded_chunks(compose_cfg, monkeypatch):
    monkeypatch.setitem(EVAL_BYTES, "cpu", 64 * 2**10)  # digits' 360 test examples become 5 chunks
    models, data = [], None
    for seed in range(3):
        model, data = _model_and_data(compose_cfg, "model=mlp", "model.width=64", "depth=3",
                                      "dataset=digits", seed=seed)
        models.append(model)
    alone = [evaluate(m, data.x_test, data.y_test) for m in models]
    stacked = _Recorded(models)
    together = evaluate_members(stacked, data.x_test, data.y_test)
    per_chunk = 64 * 2**10 // (3 * 64 * 4)  # 3 members' 64 float32 features an example
    assert stacked.rows[0] == per_chunk == 85 and max(stacked.rows) <= per_chunk
    assert sum(stacked.rows) == len(data.y_test)
    for (loss_a, acc_a), (loss_t, acc_t) in zip(alone, together):
        assert loss_t == pytest.approx(loss_a, rel=1e-5)
        assert acc_t == acc_a
