"""The command line refuses a model it cannot run, in one line and before any training.

``python train.py model=resnet18 dataset=cifar10`` offline (an empty dataset root; every URL
through a proxy on a closed local port, so no network is reached) and ``python train.py
model=cnn dataset=moons`` (a conv model on 2-D points): exit code 2, exactly one line on stderr,
naming the missing files or what fits, and no job folder left behind. One subprocess each, run
concurrently (conftest's ``train_pool``).
"""

from __future__ import annotations

import pytest

from conftest import Completed, train_env


def offline_env() -> dict[str, str]:
    env = train_env(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
                    http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")
def calls(train_pool, tmp_path_factory):
    """Both subprocesses submitted at once: name -> (future, run folder, dataset root)."""
    base = tmp_path_factory.mktemp("model_cli")
    root = base / "empty_root"
    root.mkdir()
    cifar = train_pool("model=resnet18", "dataset=cifar10", f"dataset.root={root}",
                       f"hydra.run.dir={base / 'cifar_run'}", env=offline_env())
    moons = train_pool("model=cnn", "dataset=moons", f"hydra.run.dir={base / 'moons_run'}")
    return {"cifar": (cifar, base / "cifar_run", root), "moons": (moons, base / "moons_run", None)}


def one_error_line(done: Completed) -> str:
    assert done.returncode == 2, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.describe()
    return lines[0]


def test_resnet18_on_cifar10_offline_names_the_missing_files(calls):
    future, run_dir, root = calls["cifar"]
    line = one_error_line(future.result())
    assert line.startswith(f"error: dataset cifar10: files not found under {root.resolve()}"), line
    assert "cifar-10-batches-py" in line and "dataset.root" in line, line
    assert "download failed" in line, "the download was tried and failed offline"
    assert not run_dir.exists(), "no job folder for a job that never started"
    assert list(root.iterdir()) == [], "nothing left in the empty dataset root"


def test_cnn_on_moons_names_what_fits_before_training(calls):
    future, run_dir, _ = calls["moons"]
    done = future.result()
    line = one_error_line(done)
    assert "model=cnn" in line and "dataset=moons" in line and "images" in line, line
    assert "models for vectors: mlp, resmlp" in line, line
    assert "epoch" not in done.stdout.lower(), "refused before any training"
    assert not run_dir.exists(), "no job folder records"
