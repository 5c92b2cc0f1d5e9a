"""Padded sequences (IMDB's reviews, padded to seq_len with PAD = 0): the transformer masks padding
out of attention and of the mean it pools, and the probe statistics and distributions count only
the positions that hold tokens.

Found by a tester: the encoder ran without ``src_key_padding_mask`` and pooled the mean over every
position, so a 20-token review at seq_len 256 was pooled mostly from padding and results depended
on seq_len. The checks: a review's logits and every statistic are the same whatever padding
follows it (and equal the review run alone, unpadded); the embedding site's statistics equal a
NumPy computation over the token positions alone.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.data import load_data
from initlab.data.sequences import PAD
from initlab.measure.distributions import distribution_rows
from initlab.measure.probes import probe_statistics
from initlab.models import build_model
from initlab.models.transformer import Transformer
from initlab.records import PROBE_COLUMNS
from test_models import experiment
from test_sequences import dataset_cfg, make_imdb_like

VOCAB, T = 20, 32
LENGTHS = (5, 12, 1, 9)


def reviews(width: int, lengths=LENGTHS, seed: int = 0) -> torch.Tensor:
    """(len(lengths), width) token ids: review i is lengths[i] tokens in [2, VOCAB), then PAD."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), width), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(2, VOCAB, (n,), generator=g)
    return x


def model(pad_id=PAD, norm_first=False) -> Transformer:
    torch.manual_seed(0)
    return Transformer(VOCAB, T, 2, depth=2, activation=nn.ReLU, d_model=16, nhead=2, dim_feedforward=32,
                       norm_first=norm_first, pad_id=pad_id).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_logits_do_not_depend_on_the_padding(norm_first):
    net = model(norm_first=norm_first)
    short, long = reviews(16), reviews(T)
    with torch.no_grad():
        a, b = net(short), net(long)
        alone = torch.cat([net(long[i:i + 1, :n]) for i, n in enumerate(LENGTHS)])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b, alone, rtol=1e-5, atol=1e-6)
    unmasked = model(pad_id=None, norm_first=norm_first)  # what it did before: the padding counts
    with torch.no_grad():
        assert not torch.allclose(unmasked(short), unmasked(long), atol=1e-3)


def test_a_sequence_of_padding_alone_gives_finite_logits():
    x = reviews(T, lengths=(0, 4))
    with torch.no_grad():
        logits = model()(x)
    assert torch.isfinite(logits).all()


def test_probe_statistics_count_only_the_token_positions():
    net, y = model(), torch.tensor([0, 1, 1, 0])
    short = probe_statistics(net, "relu", reviews(16), y)
    long = probe_statistics(net, "relu", reviews(T), y)
    assert [r.site for r in short.rows] == [r.site for r in long.rows]
    torch.testing.assert_close(short.values, long.values, rtol=1e-6, atol=1e-9, equal_nan=True)
    # the embedding site by hand: token + position embeddings at the token positions only
    x = reviews(T)
    emb = (net.embed.weight[x] + net.position.weight[torch.arange(T)]).detach().double().numpy()
    tokens = emb[(x != PAD).numpy()]  # (sum(LENGTHS), d_model)
    row = next(i for i, r in enumerate(long.rows) if r.kind == "embedding")
    col = {c: j for j, c in enumerate(PROBE_COLUMNS)}
    assert long.values[row, col["act_mean"]].item() == pytest.approx(tokens.mean(), rel=1e-9, abs=1e-12)
    assert long.values[row, col["act_std"]].item() == pytest.approx(tokens.std(), rel=1e-9)
    delta = long.values[:, col["delta_rms"]]
    assert (delta[torch.isfinite(delta)] > 0).all()  # no site's delta diluted by exact zeros at padding


def test_distributions_count_only_the_token_positions():
    net = model()
    key = ("site", "tensor", "stat", "bin_lo")
    short = {tuple(r[k] for k in key): r["value"] for r in distribution_rows(net, reviews(16), 0)}
    long = {tuple(r[k] for k in key): r["value"] for r in distribution_rows(net, reviews(T), 0)}
    assert short.keys() == long.keys()
    for k, v in short.items():
        assert (v is None and long[k] is None) or long[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_imdb_pads_with_pad_and_its_transformer_masks_it(tmp_path):
    make_imdb_like(tmp_path)
    sizes = ("dataset.seq_len=64", "dataset.vocab_size=8")
    data = load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", *sizes))
    assert data.pad_id == PAD and (data.x_train == PAD).any()
    net = build_model(experiment("model=transformer", "dataset=imdb", f"dataset.root={tmp_path}", *sizes), data)
    assert net.pad_id == PAD
    majority = load_data(dataset_cfg("dataset=majority"))
    assert majority.pad_id is None  # its token 0 is class 0's vote, not padding
    assert build_model(experiment("model=transformer"), majority).content(majority.x_train[:4]) is None


def test_tensorboard_site_histograms_count_only_the_token_positions(tmp_path):
    """The third place site tensors are summarized (logger=tensorboard): its preact/act histograms
    counted padding too."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import compose_config, run_job
    from initlab.config import to_experiment

    make_imdb_like(tmp_path / "data")
    cfg = compose_config("model=transformer", "dataset=imdb", f"dataset.root={tmp_path / 'data'}",
                         "dataset.vocab_size=8", "dataset.seq_len=64", "logger=tensorboard", "epochs=1", "depth=1",
                         "model.d_model=8", "model.nhead=2", "model.dim_feedforward=16", "probe_size=12",
                         "threads=1", "device=cpu")
    run_job(cfg, tmp_path / "job")
    data = load_data(to_experiment(cfg).dataset)
    order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[:12]  # the probe batch
    x = data.x_train[order]
    tokens = (x != PAD) | (x == PAD).all(dim=1, keepdim=True)  # a review of padding alone: all its positions
    acc = EventAccumulator(str(tmp_path / "job" / "tb"), size_guidance={"histograms": 0})
    acc.Reload()
    events = acc.Histograms("preact/embed_site")
    assert events and all(e.histogram_value.num == int(tokens.sum()) * 8 for e in events)  # d_model = 8
    assert int(tokens.sum()) < x.numel() // 2  # the reviews are short: most positions are padding
