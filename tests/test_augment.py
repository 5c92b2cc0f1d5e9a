"""Batched crop-and-flip augmentation: against a per-sample NumPy reference with the same draws,
as a crop of the zero-padded image found by search (no draws known), and its draw frequencies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_config
from initlab.cli import check_single_run
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.data.augment import PADDING, random_crop_flip

CONF = Path(__file__).resolve().parents[1] / "conf"


def reference(x: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad: int) -> np.ndarray:
    """One image at a time: np.pad with zeros, slice, mirror."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        padded = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)))
        dy, dx = offsets[i]
        crop = padded[:, dy:dy + h, dx:dx + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


@pytest.mark.parametrize("shape,pad", [((50, 3, 5, 7), PADDING), ((20, 1, 8, 8), 2), ((9, 2, 3, 11), 4)])
def test_matches_a_per_sample_reference_with_the_same_draws(shape, pad):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    out = random_crop_flip(x, torch.Generator().manual_seed(7), padding=pad)
    g = torch.Generator().manual_seed(7)  # the documented draws, in their order
    offsets = torch.randint(0, 2 * pad + 1, (shape[0], 2), generator=g).numpy()
    flips = (torch.rand(shape[0], generator=g) < 0.5).numpy()
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    np.testing.assert_array_equal(out.numpy(), reference(x.numpy(), offsets, flips, pad))
    assert torch.equal(x, before), "the input batch is left as it was"
    assert flips.any() and not flips.all() and len(set(map(tuple, offsets))) > 1  # the case tests both branches


def candidates(image: np.ndarray, pad: int) -> np.ndarray:
    """Every crop of the zero-padded image and its mirror: (2 * (2 pad + 1)^2, C, H, W)."""
    c, h, w = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    crops = [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    return np.stack(crops + [crop[:, :, ::-1] for crop in crops])


def test_every_output_is_a_crop_of_the_padded_image_and_draws_are_uniform():
    """Continuous random pixels (and images larger than the padding, so no crop is all zeros) make
    every candidate crop distinct: the search names the one taken."""
    n, pad = 4000, PADDING
    side = 2 * pad + 1
    x = torch.rand(n, 1, 9, 10, generator=torch.Generator().manual_seed(3)) + 0.5  # no pixel is 0, H, W > 2 pad
    out = random_crop_flip(x, torch.Generator().manual_seed(11)).numpy()
    found = np.empty(n, dtype=int)
    for i in range(n):
        hits = np.flatnonzero((candidates(x[i].numpy(), pad) == out[i]).all(axis=(1, 2, 3)))
        assert len(hits) == 1, f"sample {i}: {len(hits)} matching crops"
        found[i] = hits[0]
    flipped, offset = found // side ** 2, found % side ** 2
    dy, dx = offset // side, offset % side
    sigma = np.sqrt(0.25 / n)
    assert abs(flipped.mean() - 0.5) < 4 * sigma
    for d in (dy, dx):  # each of the 9 offsets with probability 1/9
        freq = np.bincount(d, minlength=side) / n
        assert np.all(np.abs(freq - 1 / side) < 4 * np.sqrt((1 / side) * (1 - 1 / side) / n)), freq
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 4 / np.sqrt(n) and abs(np.corrcoef(dy, flipped)[0, 1]) < 4 / np.sqrt(n)


def test_same_generator_state_same_batch_and_draws_advance():
    x = torch.randn(16, 3, 8, 8)
    g = torch.Generator().manual_seed(5)
    first, second = random_crop_flip(x, g), random_crop_flip(x, g)
    assert not torch.equal(first, second)
    assert torch.equal(first, random_crop_flip(x, torch.Generator().manual_seed(5)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_device_with_a_device_generator():
    x = torch.randn(32, 3, 8, 8)
    out = random_crop_flip(x.cuda(), torch.Generator(device="cuda").manual_seed(0))
    g = torch.Generator(device="cuda").manual_seed(0)
    offsets = torch.randint(0, 2 * PADDING + 1, (32, 2), generator=g, device="cuda").cpu().numpy()
    flips = (torch.rand(32, generator=g, device="cuda") < 0.5).cpu().numpy()
    assert out.is_cuda
    np.testing.assert_array_equal(out.cpu().numpy(), reference(x.numpy(), offsets, flips, PADDING))


@pytest.mark.parametrize("dataset", ["digits", "shapes"])
def test_augment_true_sets_the_datas_augmentation(dataset):
    plain = load_data(to_experiment(compose_config(f"dataset={dataset}")).dataset)
    data = load_data(to_experiment(compose_config(f"dataset={dataset}", "dataset.augment=true")).dataset)
    assert plain.augment is None and data.augment is random_crop_flip
    assert torch.equal(plain.x_train, data.x_train), "augmentation happens per batch, not at loading"
    batch = data.augment(data.x_train[:8], torch.Generator().manual_seed(0))
    assert batch.shape == (8, *data.input_shape)


@pytest.mark.parametrize("dataset", ["moons", "blobs", "majority", "imdb"])
def test_augment_on_a_dataset_that_is_not_images_is_one_line(dataset):
    message = check_single_run([f"dataset={dataset}", "dataset.augment=true"], CONF)
    assert message is not None and "\n" not in message
    assert message.startswith(f"unknown dataset parameter(s) augment for dataset={dataset}; valid: "), message
