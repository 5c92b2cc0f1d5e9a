"""Datasets: digits split and standardization, validation splits, synthetic sets, and the
torchvision datasets (MNIST, Fashion-MNIST, CIFAR-10) read offline from small files written here
in their real on-disk formats.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import pickle
import re
import struct
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from sklearn import datasets as skdata

from conftest import compose_config, read_csv, read_json, run_job, run_train
from initlab.config import ConfigError, to_experiment
from initlab.data import DatasetUnavailable, check_sizes, load_data


def dataset_cfg(*overrides: str):
    return to_experiment(compose_config(*overrides)).dataset


# --- digits -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_data(dataset_cfg("dataset=digits"))


def test_digits_split_sizes_and_classes(digits):
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.kind == "images" and digits.input_shape == (1, 8, 8) and digits.vocab_size is None
    assert digits.y_train.shape == (1437,) and digits.y_test.shape == (360,)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.long
    assert digits.n_features == 64 and digits.n_classes == 10
    assert digits.x_val is None and digits.y_val is None


def test_digits_split_is_stratified(digits):
    _, y = skdata.load_digits(return_X_y=True)
    overall = np.bincount(y, minlength=10) / len(y)
    for split in (digits.y_train, digits.y_test):
        counts = np.bincount(split.numpy(), minlength=10)
        np.testing.assert_allclose(counts, overall * len(split), atol=1.0)  # within one sample per class
    total = np.bincount(digits.y_train.numpy(), minlength=10) + np.bincount(digits.y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(total, np.bincount(y, minlength=10))


def test_digits_is_deterministic_and_split_seed_matters(digits):
    again = load_data(dataset_cfg("dataset=digits"))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(digits, name), getattr(again, name))
    other = load_data(dataset_cfg("dataset=digits", "dataset.split_seed=1"))
    assert not torch.equal(digits.y_train, other.y_train)


def test_digits_standardized_with_training_statistics(digits):
    xtr, xte = digits.x_train.flatten(1).double().numpy(), digits.x_test.flatten(1).double().numpy()
    np.testing.assert_allclose(xtr.mean(axis=0), 0.0, atol=1e-6)
    std_tr = xtr.std(axis=0)
    varying = std_tr > 0
    assert (~varying).sum() >= 1  # pixels that are always 0 stay 0 instead of becoming NaN
    assert np.all(xtr[:, ~varying] == 0) and np.isfinite(xte).all()
    np.testing.assert_allclose(std_tr[varying], 1.0, rtol=1e-5)
    # test is standardized with train's statistics, so its own mean is not exactly 0
    assert 1e-4 < np.abs(xte.mean(axis=0)[varying]).max() < 1.0


def test_digits_matches_an_independent_split_and_standardization(digits):
    """Bit for bit the 64 features of the MLP studies before images kept their shape: the pixels
    in row-major order, standardized in float64 with the training statistics, then cast."""
    from sklearn.model_selection import train_test_split

    x, y = skdata.load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    np.testing.assert_array_equal(digits.x_train.flatten(1).numpy(), ((x_tr - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(digits.x_test.flatten(1).numpy(), ((x_te - mean) / std).astype(np.float32))
    images = skdata.load_digits().images  # (1797, 8, 8): the same pixels as the rows of X
    assert np.array_equal(images.reshape(len(images), -1), x)
    np.testing.assert_array_equal(digits.y_train.numpy(), y_tr)
    np.testing.assert_array_equal(digits.y_test.numpy(), y_te)


# --- validation split -----------------------------------------------------------------------------
def test_val_size_carves_a_stratified_validation_split(digits):
    data = load_data(dataset_cfg("dataset=digits", "dataset.val_size=300"))
    assert len(data.y_val) == 300 and len(data.y_train) == 1437 - 300
    assert torch.equal(data.x_test, digits.x_test)
    # train + val is the original train split, without overlap
    rows = lambda t: {tuple(r) for r in t.flatten(1).numpy().round(5)}
    assert rows(data.x_train) | rows(data.x_val) == rows(digits.x_train)
    assert len(rows(data.x_train) & rows(data.x_val)) == 0
    counts = np.bincount(data.y_val.numpy(), minlength=10)
    overall = np.bincount(digits.y_train.numpy(), minlength=10) / 1437
    np.testing.assert_allclose(counts, overall * 300, atol=1.0)
    again = load_data(dataset_cfg("dataset=digits", "dataset.val_size=300"))
    assert torch.equal(again.y_val, data.y_val) and torch.equal(again.x_train, data.x_train)


# Split sizes against the data: scikit-learn's stratified split needs every class on both sides
# (at least as many samples as classes on each side, two samples of every class); the ranges are
# checked before splitting and named in one line. Bounds: 1797 digits, 1437 after the default
# test split, 10 classes.
@pytest.mark.parametrize("overrides,message", [
    (["dataset.val_size=1437"], r"^dataset.val_size must be in \[10, 1427\] \(a stratified split of 1437 "
                                r"training samples in 10 classes\), got 1437$"),
    (["dataset.val_size=5"], r"^dataset.val_size must be in \[10, 1427\] .*, got 5$"),
    (["dataset.test_size=5"], r"^dataset.test_size must be in \[10, 1787\] \(a stratified split of 1797 "
                              r"samples in 10 classes\), got 5$"),
    (["dataset.test_size=1797"], r"^dataset.test_size must be in \[10, 1787\] .*, got 1797$"),
    (["dataset=spiral", "dataset.n_train=5", "dataset.n_classes=3", "dataset.val_size=3"],
     r"^dataset.val_size=3 needs a stratified split, which needs 2 or more samples of every class; "
     r"the 5 training samples have a class with 1$"),
])
def test_split_sizes_are_checked_against_the_data(overrides, message):
    cfg = dataset_cfg(*overrides)  # valid on its own: the limits depend on the data
    with pytest.raises(ConfigError) as info:
        load_data(cfg)
    assert re.search(message, str(info.value)), str(info.value)


@pytest.mark.parametrize("overrides,sizes", [
    (["dataset.val_size=10"], (1427, 10, 360)),
    (["dataset.val_size=1427"], (10, 1427, 360)),
    (["dataset.test_size=10"], (1787, 0, 10)),
    (["dataset.test_size=1787"], (10, 0, 1787)),
])
def test_split_sizes_at_the_limits_are_accepted(overrides, sizes):
    data = load_data(dataset_cfg(*overrides))
    n_val = 0 if data.y_val is None else len(data.y_val)
    assert (len(data.y_train), n_val, len(data.y_test)) == sizes


def test_val_columns_appear_in_epochs_csv(tmp_path):
    cfg = compose_config("dataset.val_size=200", "depth=2", "model.width=16", "epochs=1", "threads=1")
    run_job(cfg, tmp_path)
    rows = read_csv(tmp_path / "epochs.csv")
    assert list(rows[0])[-4:] == ["val_loss", "val_acc", "grad_norm", "attempt"]
    for row in rows:
        assert math.isfinite(float(row["val_loss"])) and 0 <= float(row["val_acc"]) <= 1
        assert float(row["val_acc"]) * 200 == pytest.approx(round(float(row["val_acc"]) * 200), abs=1e-9)
    assert read_json(tmp_path / "result.json")["final"]["val_loss"] == float(rows[-1]["val_loss"])


# --- synthetic sets -------------------------------------------------------------------------------
SMALL = ["dataset.n_train=120", "dataset.n_test=60"]


@pytest.mark.parametrize("name,extra,features,classes", [
    ("blobs", ["dataset.n_features=7", "dataset.n_classes=5"], 7, 5),
    ("moons", [], 2, 2),
    ("circles", [], 2, 2),
    ("xor", [], 2, 2),
    ("spiral", [], 2, 3),
    ("spiral", ["dataset.n_classes=5"], 2, 5),
])
def test_synthetic_shapes_classes_and_standardization(name, extra, features, classes):
    cfg = dataset_cfg(f"dataset={name}", *SMALL, *extra)
    data = load_data(cfg)
    assert data.x_train.shape == (120, features) and data.x_test.shape == (60, features)
    assert data.n_classes == classes
    assert set(torch.cat([data.y_train, data.y_test]).tolist()) == set(range(classes))
    np.testing.assert_allclose(data.x_train.double().mean(0).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(data.x_train.double().std(0, correction=0).numpy(), 1, rtol=1e-5)
    again = load_data(cfg)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    other = load_data(dataset_cfg(f"dataset={name}", *SMALL, *extra, "dataset.seed=1"))
    assert not torch.equal(other.x_train, data.x_train)


def test_xor_labels_follow_the_quadrants():
    """Standardization shifts and scales each axis, so the quadrant boundaries move to some (t0, t1):
    one pair of thresholds must explain every label (noise 0), which shuffled labels cannot."""
    data = load_data(dataset_cfg("dataset=xor", *SMALL))
    z = torch.cat([data.x_train, data.x_test]).double().numpy()
    y = torch.cat([data.y_train, data.y_test]).numpy()

    def explained(labels):
        cuts = [np.concatenate([[-np.inf], np.sort(z[:, k])]) for k in (0, 1)]
        above0 = z[:, 0][None, :] > cuts[0][:, None]  # (cuts, samples)
        above1 = z[:, 1][None, :] > cuts[1][:, None]
        xor = above0[:, None, :] != above1[None, :, :]  # (cuts0, cuts1, samples)
        return bool(((xor == labels.astype(bool)).all(axis=2) | (xor != labels.astype(bool)).all(axis=2)).any())

    assert explained(y)
    assert not explained(np.random.default_rng(0).permutation(y))


def test_balanced_synthetic_classes():
    for name, extra, classes in [("blobs", ["dataset.n_features=3", "dataset.n_classes=4"], 4), ("moons", [], 2),
                                 ("circles", [], 2), ("spiral", ["dataset.n_classes=3"], 3)]:
        data = load_data(dataset_cfg(f"dataset={name}", "dataset.n_train=300", "dataset.n_test=60", *extra))
        counts = np.bincount(torch.cat([data.y_train, data.y_test]).numpy())
        assert counts.tolist() == [360 // classes] * classes, name


NOT_FINITE = ("dataset {}: {} gives training inputs that are not finite after standardization (the values or "
              "their spread overflow); valid: values of {} under which every input is finite")


@pytest.mark.parametrize("overrides,params,names", [
    # moons' spread overflowed float64's square: standardized to all 0, trained at loss log 2, "completed"
    (["dataset=moons", "dataset.noise=1e300"], "noise=1e+300", "noise"),
    (["dataset=blobs", "dataset.cluster_std=1e300", "dataset.n_features=3"], "cluster_std=1e+300", "cluster_std"),
    (["dataset=xor", "dataset.noise=1e308"], "noise=1e+308", "noise"),  # the generator's draws overflow
    (["dataset=circles", "dataset.noise=1e300"], "noise=1e+300, factor=0.5", "noise, factor"),
    (["dataset=shapes", "dataset.noise=1e300", "dataset.size=8"], "noise=1e+300", "noise"),  # per channel
])
def test_generator_values_that_overflow_are_refused_in_one_line(overrides, params, names):
    cfg = dataset_cfg(*overrides, *SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError) as refused:
            load_data(cfg)
        with pytest.raises(ConfigError):
            check_sizes(cfg)  # a sweep's pre-check: refused before its first job
    assert str(refused.value) == NOT_FINITE.format(cfg.name, params, names)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], "NumPy's overflow warning leaked"


def test_a_refused_generator_value_stops_train_py_before_training(tmp_path):
    """The reported command: one line on stderr, no NumPy warning, no run folder (it trained and
    recorded completed, preact_std 0.0 and frac_dead 1.0 in layers.csv)."""
    done = run_train("dataset=moons", "dataset.noise=1e300", "epochs=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: " + NOT_FINITE.format("moons", "noise=1e+300", "noise")
    assert "RuntimeWarning" not in done.stdout + done.stderr and not (tmp_path / "bad").exists()


def test_generator_values_just_below_overflow_load():
    data = load_data(dataset_cfg("dataset=moons", "dataset.noise=1e150", *SMALL))
    np.testing.assert_allclose(data.x_train.double().std(0, correction=0).numpy(), 1, rtol=1e-5)


def test_training_inputs_all_alike_are_refused():
    """moons with n_train=1 is refused by its class count, before loading; training inputs of a
    single sample (standardized to all 0) by the data check."""
    from initlab.data.tensors import Data, check_inputs

    with pytest.raises(ConfigError, match=r"^dataset.n_train must be >= 2 \(the 2 classes of moons"):
        dataset_cfg("dataset=moons", "dataset.n_train=1", "dataset.n_test=10")
    one = Data(torch.ones(1, 2), torch.zeros(1, dtype=torch.long), torch.ones(3, 2), torch.zeros(3, dtype=torch.long),
               kind="vectors", n_classes=2)
    with pytest.raises(ConfigError) as refused:
        check_inputs("moons", "noise=0.1", one)
    assert str(refused.value) == ("dataset moons (noise=0.1): every feature of the training inputs is constant after "
                                  "standardization (a single sample: nothing to learn); valid: training samples "
                                  "that differ")


# --- torchvision datasets, offline ---------------------------------------------------------------
def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def make_mnist_like(root: Path, folder: str, n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar_like(root: Path, monkeypatch, per_batch=12, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # rows are CHW: 1024 R, 1024 G, 1024 B
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        labels[:10] = list(range(10)) if n >= 10 else labels[:10]
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]}, f)
        batches[name] = (data, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    # torchvision checks md5 sums from class attributes: point them at these files (data, not behaviour)
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", md5(base / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5(base / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5(base / "batches.meta")})
    return batches


@pytest.mark.parametrize("name,folder,mean,std", [("mnist", "MNIST", 0.1307, 0.3081),
                                                  ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530)])
def test_mnist_like_loads_offline_normalized_as_images(tmp_path, name, folder, mean, std):
    written = make_mnist_like(tmp_path, folder)
    cfg = dataset_cfg(f"dataset={name}", f"dataset.root={tmp_path}", "dataset.download=false")
    assert list(cfg.mean) == [mean] and list(cfg.std) == [std]
    data = load_data(cfg)
    for split, (x, y) in (("train", (data.x_train, data.y_train)), ("t10k", (data.x_test, data.y_test))):
        images, labels = written[split]
        assert x.shape == (len(labels), 1, 28, 28) and x.dtype == torch.float32
        expected = (images[:, None] / 255.0 - mean) / std
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(y.numpy(), labels)
    assert data.n_features == 784 and data.n_classes == 10 and data.kind == "images"
    assert data.input_shape == cfg.input_shape() == (1, 28, 28)


def test_cifar10_loads_offline_channels_first(tmp_path, monkeypatch):
    batches = make_cifar_like(tmp_path, monkeypatch)
    cfg = dataset_cfg("dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false")
    data = load_data(cfg)
    train_raw = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test_raw, test_labels = batches["test_batch"]
    mean = np.repeat(np.array(cfg.mean), 1024)  # feature k belongs to channel k // 1024 (CHW order)
    std = np.repeat(np.array(cfg.std), 1024)
    assert data.x_train.shape == (60, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
    assert data.input_shape == cfg.input_shape() == (3, 32, 32) and data.kind == "images"
    np.testing.assert_allclose(data.x_train.flatten(1).numpy(), (train_raw / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.x_test.flatten(1).numpy(), (test_raw / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    # rows are (R, G, B) planes of 32 x 32 in row-major order: pixel (row 3, col 5) of image 0
    np.testing.assert_allclose(data.x_train[0, :, 3, 5].numpy(),
                               (train_raw[0, [3 * 32 + 5, 1024 + 3 * 32 + 5, 2048 + 3 * 32 + 5]] / 255.0 - cfg.mean)
                               / cfg.std, rtol=1e-5)
    assert data.y_train.tolist() == train_labels and data.y_test.tolist() == test_labels
    # the CIFAR-10 ResNet study's normalization
    assert list(cfg.mean) == [0.4914, 0.4822, 0.4465] and list(cfg.std) == [0.2023, 0.1994, 0.2010]
    augmented = load_data(dataset_cfg("dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false",
                                      "dataset.augment=true"))
    batch = augmented.augment(augmented.x_train[:16], torch.Generator().manual_seed(0))
    assert batch.shape == (16, 3, 32, 32) and not torch.equal(batch, augmented.x_train[:16])


def test_data_to_moves_tensors_and_keeps_the_rest():
    data = load_data(dataset_cfg("dataset=shapes", *SMALL, "dataset.augment=true", "dataset.val_size=20"))
    moved = data.to(torch.device("cpu"))
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(moved, name), getattr(data, name))
    assert (moved.kind, moved.n_classes, moved.vocab_size, moved.augment, moved.input_shape) == \
        (data.kind, data.n_classes, data.vocab_size, data.augment, data.input_shape)


def test_loaded_images_all_alike_or_not_finite_are_refused(tmp_path):
    """The check is on the data, whatever gives it: files of blank images, or a std too small for
    float32 (the division overflows to inf)."""
    make_mnist_like(tmp_path, "MNIST", n_train=40, n_test=20)
    write_idx_images(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((40, 28, 28)))
    base = ["dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false"]
    with pytest.raises(ConfigError) as refused:
        load_data(dataset_cfg(*base))
    assert str(refused.value) == ("dataset mnist (mean=[0.1307], std=[0.3081]): every feature of the training inputs "
                                  "is constant after standardization (all 40 samples alike: nothing to learn); "
                                  "valid: training samples that differ")
    make_mnist_like(tmp_path / "other", "MNIST")
    with pytest.raises(ConfigError) as refused:
        load_data(dataset_cfg(*base[:1], f"dataset.root={tmp_path / 'other'}", base[2], "dataset.std=[1e-45]"))
    assert str(refused.value) == NOT_FINITE.format("mnist", "mean=[0.1307], std=[1e-45]", "mean, std")


def test_mnist_job_runs_end_to_end_offline(tmp_path):
    make_mnist_like(tmp_path / "data", "MNIST", n_train=64, n_test=30)
    job = tmp_path / "job"
    job.mkdir()
    cfg = compose_config("dataset=mnist", f"dataset.root={tmp_path / 'data'}", "dataset.download=false",
                         "epochs=1", "depth=2", "model.width=16", "batch_size=16", "threads=1")
    result = run_job(cfg, job)
    assert result["status"] == "completed"
    rows = read_csv(job / "epochs.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert len(read_csv(job / "layers.csv")) == 2 * 3
    assert result["choices"]["dataset"]["name"] == "mnist"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_without_download_is_one_clear_line(tmp_path, name):
    root = tmp_path / "nowhere"
    cfg = dataset_cfg(f"dataset={name}", f"dataset.root={root}", "dataset.download=false")
    with pytest.raises(DatasetUnavailable) as info:
        load_data(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert str(root.resolve()) in message and "download=false" in message and name in message
    assert "dataset.root" in message  # the hint: where the files go, or how to point elsewhere
    assert len(message.replace(str(root.resolve()), "ROOT")) < 160  # one short line whatever the root
    assert not root.exists(), "a failed load must not leave folders behind"


def test_missing_files_with_download_offline_fails_fast(tmp_path, monkeypatch):
    """Offline made certain: every URL goes through a proxy on a closed local port."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setattr(urllib.request, "_opener", None)  # an opener built earlier would ignore the proxy
    kept = tmp_path / "kept"  # a folder the user made (with something in it) stays as it was
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for root in (tmp_path / "offline" / "data", kept):
        cfg = dataset_cfg("dataset=mnist", f"dataset.root={root}", "dataset.download=true")
        with pytest.raises(DatasetUnavailable) as info:
            load_data(cfg)
        message = str(info.value)
        assert "\n" not in message
        assert str(root.resolve()) in message and "download failed (Connection refused)" in message
        assert "MNIST/raw" in message and "dataset.root" in message
        assert len(message.replace(str(root.resolve()), "ROOT")) < 160, message  # no list of URLs
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["kept", "kept/notes.txt"]


def load_error(*overrides: str) -> str:
    """The one-line message load_data refuses with."""
    with pytest.raises(DatasetUnavailable) as info:
        load_data(dataset_cfg(*overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("download", ["false", "true"])
def test_files_that_are_there_but_damaged_are_named_not_called_missing(tmp_path, download):
    """A truncated idx file is not 'files not found' and no download is tried (torchvision does not
    replace files that are there): the message names the folder and why it could not be read."""
    make_mnist_like(tmp_path, "MNIST", n_train=300)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100_000])
    message = load_error("dataset=mnist", f"dataset.root={tmp_path}", f"dataset.download={download}")
    assert message == (f"dataset mnist: {images} is 100000 bytes, but its idx header (300 x 28 x 28 uint8) needs "
                       "235216 (truncated); replace it with its original from torchvision's MNIST files (or remove it "
                       "and set dataset.download=true)")  # was cut off: (shape '[300, 28, 28]' is invalid ...)


def test_an_idx_file_longer_than_its_header_says_is_named_too(tmp_path):
    make_mnist_like(tmp_path, "MNIST")
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes() + b"\0\0")
    message = load_error("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert message.startswith(f"dataset mnist: {labels} is 30 bytes, but its idx header (20 uint8) needs 28 "
                              "(longer than declared); replace it")



@pytest.mark.parametrize("name,folder,split,side", [("mnist", "MNIST", "train", 32), ("mnist", "MNIST", "t10k", 8),
                                                    ("fashion_mnist", "FashionMNIST", "t10k", 8)])
def test_idx_images_of_another_size_are_named_before_training(tmp_path, name, folder, split, side):
    """Valid idx files of 32 x 32 or 8 x 8 images were read as they are: a model built for the train
    images failed on the test ones mid-run ('mat1 and mat2 shapes cannot be multiplied', the run
    folder left), a CNN pooled 8 x 8 test images silently, a sweep's check passed and every job failed."""
    written = make_mnist_like(tmp_path, folder)
    images = tmp_path / folder / "raw" / f"{split}-images-idx3-ubyte"
    write_idx_images(images, np.zeros((len(written[split][1]), side, side)))
    message = load_error(f"dataset={name}", f"dataset.root={tmp_path}", "dataset.download=false")
    assert message == (f"dataset {name}: {images} holds {side} x {side} images; valid: 28 x 28; replace it with its "
                       f"original from torchvision's {folder} files (or remove it and set dataset.download=true)")


HTML = b"<html><body>404 Not Found</body></html>\n"


@pytest.mark.parametrize("file,content,why", [
    ("train-images-idx3-ubyte", b"", "is empty"),
    ("t10k-images-idx3-ubyte", HTML, "is not an idx images file: magic number 0x3c68746d, expected 0x00000803"),
    ("train-labels-idx1-ubyte", struct.pack(">II", 0x00000803, 40), "is not an idx labels file: magic number "
                                                                    "0x00000803, expected 0x00000801"),
    ("t10k-images-idx3-ubyte", b"\0\0", "is 2 bytes, shorter than its 16-byte idx header (truncated)"),
    ("t10k-images-idx3-ubyte", b"\0\0\x08\x03" + b"\0" * 12, "holds 0 images"),
    ("t10k-labels-idx1-ubyte", b"\0\0\x08\x01" + b"\0" * 4, "holds 0 labels"),
], ids=["empty", "html", "images_as_labels", "short_header", "no_images", "no_labels"])
def test_an_unreadable_idx_file_is_named_with_what_is_wrong(tmp_path, file, content, why):
    """torchvision's reader named no file: the folder was blamed with its bare reason ('invalid literal
    for int() with base 16: b\'\'', 'AssertionError', a numpy 'offset ... buffer length' message)."""
    make_mnist_like(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / file
    path.write_bytes(content)
    message = load_error("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert message == (f"dataset mnist: {path} {why}; replace it with its original from torchvision's MNIST files "
                       "(or remove it and set dataset.download=true)")

def gzip_all(raw: Path) -> list[Path]:
    """Leave only ``raw``'s files gzipped, as the official MNIST downloads (``*-ubyte.gz``) are."""
    packed = []
    for path in sorted(raw.iterdir()):
        packed.append(path.with_name(path.name + ".gz"))
        packed[-1].write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    return packed


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_official_gz_files_alone_are_unpacked_and_loaded(tmp_path, caplog, name, folder):
    """MNIST/raw holding only the .gz files was 'files not found ... and download=false': torchvision
    looks for the unpacked files. They are unpacked as its download would, said in one info line."""
    written = make_mnist_like(tmp_path, folder)
    raw = tmp_path / folder / "raw"
    packed = gzip_all(raw)
    cfg = dataset_cfg(f"dataset={name}", f"dataset.root={tmp_path}", "dataset.download=false")
    with caplog.at_level(logging.INFO, logger="initlab.data.images"):
        data = load_data(cfg)
    assert [r.getMessage() for r in caplog.records] == [f"dataset {name}: unpacked 4 .gz files in {raw}"]
    np.testing.assert_array_equal(data.y_train.numpy(), written["train"][1])
    np.testing.assert_array_equal(data.y_test.numpy(), written["t10k"][1])
    assert data.x_train.shape == (40, 1, 28, 28)
    assert sorted(p.name for p in raw.iterdir()) == sorted([p.name for p in packed] + [p.stem for p in packed])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="initlab.data.images"):
        load_data(cfg)
    assert caplog.records == [], "unpacked once"


@pytest.mark.parametrize("damage,reason", [
    (lambda b: b[:len(b) // 2], "Compressed file ended before the end-of-stream marker was reached"),
    (lambda b: b"not gzip", "Not a gzipped file (b'no')"),
])
def test_a_corrupt_gz_is_named_in_one_line(tmp_path, damage, reason):
    make_mnist_like(tmp_path, "MNIST")
    gz = gzip_all(tmp_path / "MNIST" / "raw")[1]
    gz.write_bytes(damage(gz.read_bytes()))
    message = load_error("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert message == (f"dataset mnist: {gz} could not be unpacked ({reason}); replace it with its original from "
                       "torchvision's MNIST files (or remove it and set dataset.download=true)")
    assert not gz.with_suffix("").exists(), "no half-unpacked file left to be read next time"


def test_an_empty_gz_is_named_and_a_good_one_put_there_later_is_read(tmp_path, caplog):
    """An empty .gz unpacked to an empty idx file that stayed: the next load said "is empty" of the
    unpacked file, and a good .gz put there later was never unpacked (the plain file existed). Now
    the .gz is named and its output removed; the good .gz is then unpacked and read."""
    written = make_mnist_like(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    packed = gzip_all(raw)
    good = packed[0].read_bytes()
    packed[0].write_bytes(gzip.compress(b""))
    args = ("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    for _ in range(2):
        with caplog.at_level(logging.INFO, logger="initlab.data.images"):
            message = load_error(*args)
        assert message == (f"dataset mnist: {packed[0]} unpacks to a file that is empty; replace it with its original "
                           "from torchvision's MNIST files (or remove it and set dataset.download=true)")
        assert not packed[0].with_suffix("").exists()
    assert "unpacked" not in caplog.text, "an unpacking that failed was logged as done"
    packed[0].write_bytes(good)
    data = load_data(dataset_cfg(*args))
    np.testing.assert_array_equal(data.y_test.numpy(), written["t10k"][1])


def test_a_gz_newer_than_its_unpacked_file_is_unpacked_again(tmp_path, caplog):
    """A .gz replaced after it was unpacked (another download of the set) is read, not the old copy."""
    make_mnist_like(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)
    args = ("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    load_data(dataset_cfg(*args))
    labels = np.arange(20)[::-1] % 10
    write_idx_labels(tmp_path / "new", labels)
    gz = raw / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress((tmp_path / "new").read_bytes()))
    os.utime(gz, ns=(gz.stat().st_atime_ns, gz.with_suffix("").stat().st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO, logger="initlab.data.images"):
        data = load_data(dataset_cfg(*args))
    np.testing.assert_array_equal(data.y_test.numpy(), labels)
    assert [r.getMessage() for r in caplog.records] == [
        f"dataset mnist: unpacked 1 .gz file in {raw} (1 over an older or unreadable unpacked file)"]


def test_a_replaced_gz_stamped_older_than_its_unpacked_file_is_unpacked_again(tmp_path):
    """cp -p, tar and wget keep a .gz's old timestamp: a 400-sample .gz put over a 300-sample one
    already unpacked was never read (n_train 300). Its trailer's size and CRC-32 tell it apart."""
    make_mnist_like(tmp_path / "old", "MNIST", n_train=300)
    make_mnist_like(tmp_path / "new", "MNIST", n_train=400)
    raw = tmp_path / "old" / "MNIST" / "raw"
    gzip_all(raw)
    args = ("dataset=mnist", f"dataset.root={tmp_path / 'old'}", "dataset.download=false")
    assert len(load_data(dataset_cfg(*args)).y_train) == 300
    for gz in gzip_all(tmp_path / "new" / "MNIST" / "raw"):
        (raw / gz.name).write_bytes(gz.read_bytes())
        os.utime(raw / gz.name, ns=(0, 0))  # stamped 1970: older than the unpacked files
    assert len(load_data(dataset_cfg(*args)).y_train) == 400


def test_an_altered_cifar_batch_is_named_by_the_md5_check(tmp_path, monkeypatch):
    make_cifar_like(tmp_path, monkeypatch)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes() + b"\0")
    message = load_error("dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false")
    assert message.startswith(f"dataset cifar10: {batch} fails torchvision's MD5 check: not the original file;")


def test_some_files_missing_names_them(tmp_path):
    make_mnist_like(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = load_error("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert f"files not found under {tmp_path} (t10k-labels-idx1-ubyte) and download=false" in message


@pytest.mark.parametrize("labels,match", [
    (np.arange(30) % 10, r"^dataset mnist: the train files hold 40 samples but 30 labels; valid: one label per "
                         r"sample$"),
    (np.arange(40) % 13, r"^dataset mnist: the train labels span 0\.\.12; valid: classes 0\.\.9$"),
])
def test_labels_that_do_not_fit_the_images_are_refused_before_training(tmp_path, labels, match):
    """A labels file from another copy of the set, or labels beyond the classes: one line at load
    time (was a shape error or 'Target 12 is out of bounds' in the first training step)."""
    make_mnist_like(tmp_path, "MNIST", n_train=40)
    write_idx_labels(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    assert re.match(match, load_error("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false"))


# --- shapes (synthetic images) and what each config declares ---------------------------------------
def classify_shape(mask: np.ndarray) -> int:
    """An independent reading of one noiseless mask (square 0, disk 1, triangle 2, cross 3) from its
    bounding box: a square fills all four corners, a triangle (apex up) only the bottom two; a disk
    covers the point a quarter of the way in from a corner along the diagonal, a cross does not."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    corners = [mask[top, left], mask[top, right], mask[bottom, left], mask[bottom, right]]
    if all(corners):
        return 0
    if corners == [False, False, True, True]:
        return 2
    assert not any(corners)
    quarter = mask[round(top + (bottom - top) / 4), round(left + (right - left) / 4)]
    return 1 if quarter else 3


def test_shapes_are_the_labelled_shapes_standardized_per_channel():
    cfg = dataset_cfg("dataset=shapes", "dataset.n_train=300", "dataset.n_test=100", "dataset.size=32",
                      "dataset.channels=3", "dataset.noise=0")
    data = load_data(cfg)
    assert data.kind == "images" and data.n_classes == 4 and data.vocab_size is None
    assert data.x_train.shape == (300, 3, 32, 32) and data.x_test.shape == (100, 3, 32, 32)
    assert data.input_shape == cfg.input_shape() == (3, 32, 32)
    x = data.x_train.double().numpy()
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    assert np.bincount(torch.cat([data.y_train, data.y_test]).numpy()).tolist() == [100] * 4
    for split_x, split_y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        background = data.x_train.amin(dim=(0, 2, 3))  # black is the lowest value of each channel
        masks = (split_x > background[:, None, None] + 1e-4).numpy()
        assert np.all(masks == masks[:, :1]), "every channel shows the same shape"
        assert [classify_shape(m[0]) for m in masks] == split_y.tolist()


def test_shapes_noise_and_seed():
    base = ["dataset=shapes", "dataset.n_train=50", "dataset.n_test=10"]
    clean, noisy = (load_data(dataset_cfg(*base, f"dataset.noise={v}")) for v in (0.0, 0.2))
    assert len(torch.unique(clean.x_train[:, 0, 0, 0])) < 50 < len(torch.unique(noisy.x_train))
    assert torch.equal(clean.y_train, noisy.y_train), "noise is drawn last: same shapes, same labels"
    other = load_data(dataset_cfg(*base, "dataset.seed=1"))
    assert not torch.equal(other.x_train, noisy.x_train)


def class_counts(y: torch.Tensor, k: int) -> list[int]:
    return np.bincount(y.numpy(), minlength=k).tolist()


@pytest.mark.parametrize("overrides,train,test", [
    # balanced over train + test, then shuffled and cut: test held [25, 28, 21, 26] and, with the
    # defaults, [126, 113, 139, 122], so a constant predictor scored 0.21 to 0.28 against chance 0.25
    (["dataset.n_train=200", "dataset.n_test=100", "dataset.size=8"], [50] * 4, [25] * 4),
    ([], [500] * 4, [125] * 4),
    (["dataset.n_train=202", "dataset.n_test=99", "dataset.size=8"], [51, 51, 50, 50], [25, 25, 25, 24]),
])
def test_shapes_classes_are_balanced_in_each_split(overrides, train, test):
    data = load_data(dataset_cfg("dataset=shapes", *overrides))
    assert class_counts(data.y_train, 4) == train and class_counts(data.y_test, 4) == test
    assert data.y_test.tolist() != [i % 4 for i in range(len(data.y_test))], "in a seeded random order"


@pytest.mark.parametrize("overrides", [["dataset=digits"], ["dataset=shapes", *SMALL], ["dataset=majority", *SMALL],
                                       ["dataset=moons", *SMALL], ["dataset=blobs", *SMALL, "dataset.n_features=7"],
                                       ["dataset=spiral", *SMALL], ["dataset=circles", *SMALL], ["dataset=xor", *SMALL]])
def test_config_declares_the_kind_and_shape_it_loads(overrides):
    """KIND and input_shape() let the CLI check a model against a dataset without loading it."""
    cfg = dataset_cfg(*overrides)
    data = load_data(cfg)
    assert type(cfg).KIND == data.kind and cfg.input_shape() == data.input_shape
    assert data.n_features == math.prod(data.input_shape)
    assert data.x_train.shape[1:] == data.x_test.shape[1:] == data.input_shape
