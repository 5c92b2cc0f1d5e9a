"""Sizes that do not fit in memory are refused in one line naming them, before any training, and
leave no job folder (the user test's model.width=10000000000, cnn channels [4, 1e11] and shapes of
100000 x 100000 pixels raised 40-line tracebacks from torch's and NumPy's allocators; a second
test's sizes too large to count in bytes, and activations too large, did too)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose_config, run_job, run_train
from initlab.config import ConfigError
from initlab.memory import refused_if_too_large


def refusal(block) -> str:
    with pytest.raises(ConfigError) as err:
        with refused_if_too_large("model=mlp (width=1)"):
            block()
    return str(err.value)


def test_failed_allocations_become_one_line_naming_what_asked():
    assert refusal(lambda: torch.empty(2 ** 50)) == (
        "model=mlp (width=1) does not fit in memory (it asked for 4,194,304 GiB for one tensor); valid: smaller sizes")
    assert refusal(lambda: np.empty((2 ** 25, 2 ** 25))) == (
        "model=mlp (width=1) does not fit in memory (it asked for 8.00 PiB for an array of shape (33554432, 33554432)); "
        "valid: smaller sizes")
    with pytest.raises(RuntimeError, match="mat1 and mat2"):  # any other error passes unchanged
        with refused_if_too_large("x"):
            torch.ones(2, 3) @ torch.ones(2, 3)


@pytest.mark.parametrize("overrides, message", [
    (["model.width=10000000000"], "model=mlp (depth=5, width=10000000000) for dataset=digits's images (1x8x8) does "
                                  "not fit in memory (it asked for 2,384 GiB for one tensor)"),
    (["model=cnn", "dataset=shapes", "model.channels=[4,100000000000]", "depth=2"],
     "model=cnn (depth=2, channels=[4, 100000000000]) for dataset=shapes's images (1x16x16) does not fit in memory "
     "(it asked for 13,411 GiB for one tensor)"),
    # sizes too large to count in bytes: torch's "Storage size calculation overflowed", NumPy's "array is too big"
    (["model.width=100000000000000000"],
     "model=mlp (depth=5, width=100000000000000000) for dataset=digits's images (1x8x8) does not fit in memory (it "
     "asked for more bytes than a size can count)"),
    (["model=transformer", "dataset=majority", "dataset.vocab_size=1000000000000000000"],
     "model=transformer (depth=5, d_model=64, nhead=4, dim_feedforward=128) for dataset=majority's sequences "
     "(length 32, vocab_size=1000000000000000000) does not fit in memory (it asked for more bytes than a size can "
     "count)"),
    (["dataset=shapes", "dataset.n_train=4000000000000000000"],
     "dataset=shapes (val_size=0, n_train=4000000000000000000, n_test=500, size=16, channels=1) does not fit in "
     "memory (it asked for more bytes than a size can count)"),
    # parameters that fit, activations that do not (torchinfo's "Failed to run torchinfo" raised from it)
    (["model=cnn", "dataset=shapes", "dataset.size=64", "model.channels=[10000000]", "depth=1"],
     "model=cnn (depth=1, channels=[10000000]) on cpu with probe_size=1000, batch_size=128 does not fit in memory "
     "(it asked for 305 GiB for one tensor)"),
    (["dataset=shapes", "dataset.size=100000", "dataset.n_train=4", "dataset.n_test=4"],
     "dataset=shapes (val_size=0, n_train=4, n_test=4, size=100000, channels=1) does not fit in memory (it asked "
     "for 596 GiB for an array of shape (8, 100000, 100000))"),
])
def test_a_job_too_large_for_memory_is_refused_before_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        run_job(compose_config(*overrides, "epochs=1", "threads=1", "device=cpu"), tmp_path / "job")
    assert str(err.value) == f"{message}; valid: smaller sizes"


def test_train_py_too_large_for_memory_leaves_no_folder(tmp_path):
    proc = run_train("model.width=10000000000", "epochs=1", "threads=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: model=mlp (depth=5, width=10000000000) for dataset=digits's images (1x8x8) does not fit in memory "
        "(it asked for 2,384 GiB for one tensor); valid: smaller sizes"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sweep, message", [
    (["model.width=8,10000000", "depth=2"],
     # 4 bytes x (64 x 1e7 + 1e7 + 1e7 x 1e7 + 1e7 + 1e7 x 10 + 10) parameters = 372,532.3 GiB
     "job model.width=10000000 depth=2 epochs=1 threads=1: model=mlp (depth=2, width=10000000) for dataset=digits's "
     "images (1x8x8) does not fit in memory (its parameters take 372,532 GiB, this machine has {total} of memory and "
     "swap)"),
    (["model=cnn", "dataset=shapes", "dataset.size=64", "model.channels=[4],[10000000]", "depth=1"],
     # 4 bytes x 1000 probe samples x 1e7 channels x 64 x 64 = 152,587.9 GiB
     "job model=cnn dataset=shapes dataset.size=64 model.channels=[10000000] depth=1 epochs=1 threads=1: model=cnn "
     "(depth=1, channels=[10000000]) for dataset=shapes's images (1x64x64) does not fit in memory (one layer's output "
     "for a batch of 1000 takes 152,588 GiB, this machine has {total} of memory and swap)"),
])
def test_a_sweep_with_a_job_too_large_for_memory_is_refused_before_its_first_job(tmp_path, sweep, message):
    """The break-it test's `-m model.width=8,10000000000`: the width-8 job trained, then the other
    failed in its folder. Now the sweep's check builds each model on the meta device and refuses a
    job whose parameters together, or one layer's output for its largest batch (the 1000-sample
    probe here), take more than the machine's memory and swap, before any job runs."""
    from initlab.memory import in_gib, machine_bytes

    proc = run_train("-m", *sweep, "epochs=1", "threads=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    total = in_gib(machine_bytes())
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {message.format(total=total)}; valid: smaller sizes"]
    assert not (tmp_path / "sweep").exists()
