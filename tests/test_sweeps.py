"""A sweep as a whole: checked before any job runs, folder names that fit the file system, and
progress counts of the sweep's own jobs (initlab/sweeps.py, initlab/callbacks.py).

The CLI tests are real ``python train.py -m`` runs of tiny jobs, submitted up front to the
two-process pool (``train_pool``), but for command lines train.py's pre-check refuses (run as
``__main__`` in this process); the rest compose conf/ in this process.
"""

from __future__ import annotations

import hashlib
import logging
import re
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF, Completed, group_choices, read_json, run_train, TOP_KEYS, train_env, train_refused_in_process
from initlab.analysis.tables import read_job
from initlab.config import ConfigError, register_configs
from initlab.config.enums import NO_GPU
from initlab.queue_check import device_refusal
from initlab.sweeps import (NAME_MAX, check_distinct_jobs, check_job_folders, job_folders, job_subdir, sweep_jobs,
                            validate_jobs)

TINY = ["dataset=moons", "depth=1", "epochs=0", "threads=1"]
# The example: about twenty overrides (an activation slope, four trunc_normal fields, four
# optimizer fields, bias init, six dataset fields); Hydra's folder name for it is ~330 bytes.
LONG = ["activation=leaky_relu", "activation.negative_slope=0.1,0.2", "init=trunc_normal", "init.mean=0.0",
        "init.std=0.05", "init.a=-0.1", "init.b=0.1", "optimizer=adam", "optimizer.lr=0.001",
        "optimizer.betas=[0.9,0.99]", "optimizer.eps=1e-07", "optimizer.weight_decay=0.0001",
        "model.bias_init=normal", "model.bias_std=0.01", "dataset=blobs", "dataset.n_train=300",
        "dataset.n_test=100", "dataset.n_features=16", "dataset.n_classes=3", "dataset.cluster_std=1.5",
        "dataset.seed=3", "depth=2", "epochs=1", "threads=1"]
SWEEPS = {
    "bad_basic": ["depth=2,0", "epochs=0"],
    "bad_parallel": ["hydra/launcher=parallel", "depth=2,0", "epochs=0"],
    "bad_local": ["hydra/launcher=local", "depth=2,0", "epochs=0"],
    "bad_group": ["activation=relu,nonesuch", "epochs=0"],
    "unknown_key": ["foo=1", "epochs=1"],
    "added_key": ["+foo=1", "epochs=1"],
    "swept_unknown_param": ["init=he_normal,orthogonal", "init.factr=1", "epochs=0"],
    # threads is a runtime key, left out of folder names: two jobs, one folder
    "twins_parallel": ["hydra/launcher=parallel", "threads=1,2", "depth=2", "epochs=0"],
    "spelt_twice": ["depth=2,02", "epochs=0"],
    "val_split_too_big": ["dataset.val_size=100,1430", "epochs=0"],  # digits: 1437 training samples
    "glob": ["init=glob(he_*)", *TINY],
    "range_parallel": ["hydra/launcher=parallel", "seed=range(0,3)", *TINY],
    "long": LONG,
    # device=cuda where the jobs see no GPU: each job failed with a traceback, the sweep "ended"
    "cuda_basic": ["device=cuda", "depth=1,2", "epochs=0"],
    "cuda_parallel": ["hydra/launcher=parallel", "device=cuda", "depth=1,2", "epochs=0"],
    "cuda_batched": ["hydra/launcher=batched", "device=cuda", "seed=0,1", "epochs=0"],
    "cuda_local_no_gpu_asked": ["hydra/launcher=local", "device=cuda", "depth=1,2", "epochs=0"],
}
BAD = {
    "bad_basic": "error: job depth=0 epochs=0: depth must be > 0, got 0",
    "bad_parallel": "error: job depth=0 epochs=0: depth must be > 0, got 0",
    "bad_local": "error: job depth=0 epochs=0: depth must be > 0, got 0",
    "bad_group": "error: job activation=nonesuch epochs=0: unknown activation 'nonesuch'; valid: "
                 + ", ".join(group_choices("activation")),
    "unknown_key": f"error: unknown key foo; valid top-level keys: {TOP_KEYS}",
    "added_key": f"error: unknown key foo; valid top-level keys: {TOP_KEYS}",
    "swept_unknown_param": "error: unknown init parameter(s) factr for init=he_normal; valid: apply_to, embedding, factor, mode",
    "twins_parallel": "error: jobs #0 (threads=1 depth=2 epochs=0) and #1 (threads=2 depth=2 epochs=0) would write one "
                      "folder, depth=2,epochs=0: they differ only in threads, which the folder name leaves out "
                      "(hydra.job.config.override_dirname.exclude_keys): sweep one value",
    "spelt_twice": "error: jobs #0 (depth=2 epochs=0) and #1 (depth=02 epochs=0) are the same run (equal configs): "
                   "sweep each value once",
    # found only by loading the data: was found by the second job, after the first had run
    "val_split_too_big": "error: job dataset.val_size=1430 epochs=0: dataset.val_size must be in [10, 1427] (a "
                         "stratified split of 1437 training samples in 10 classes), got 1430",
    "cuda_basic": f"error: job device=cuda depth=1 epochs=0: {NO_GPU}",
    "cuda_parallel": f"error: job device=cuda depth=1 epochs=0: {NO_GPU}",
    "cuda_batched": f"error: job device=cuda seed=0 epochs=0: {NO_GPU}",
    "cuda_local_no_gpu_asked": "error: job device=cuda depth=1 epochs=0: device=cuda but "
                               "hydra.launcher.gpus_per_node=0 asks for no GPU (submitit's local executor hides every "
                               "GPU); valid: hydra.launcher.gpus_per_node=1 (or more), or device=auto or cpu",
}
NEED_NO_GPU = {"cuda_basic", "cuda_parallel", "cuda_batched"}  # refused only on a machine without one

# refused by train.py's pre-check of the sweep's base config, before Hydra starts: run as __main__ in
# this process (tests/test_train_cli.py runs that refusal in a real process); the others are found
# by the sweep callback, inside Hydra, under each launcher
PRE_CHECKED = {"unknown_key", "added_key", "swept_unknown_param"}


@pytest.fixture(scope="module")
def sweeps(request, tmp_path_factory, train_pool) -> dict[str, tuple[Path, Future]]:
    """Submits the sweeps that the selected tests of this module use (their ``name`` parameter)."""
    wanted = {item.callspec.params.get("name") for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")}
    root = tmp_path_factory.mktemp("sweeps")
    env = train_env()
    env.pop("INITLAB_N_JOBS", None)
    return {name: (root / name, train_pool("-m", *args, f"hydra.sweep.dir={root / name}", env=env, timeout=240))
            for name, args in SWEEPS.items() if name in wanted and name not in PRE_CHECKED}


def finished(sweeps, name: str, returncode: int = 0) -> tuple[Path, Completed]:
    sweep, future = sweeps[name]
    done = future.result()
    assert done.returncode == returncode, done.describe()
    return sweep, done


def progress(output: str) -> list[tuple[int, int]]:
    return [(int(d), int(t)) for d, t in re.findall(r"\[sweep\] (\d+)/(\d+) jobs done", output)]


# --- the whole sweep is validated before any job runs -----------------------------------------
@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_job_stops_the_sweep_before_any_job_runs(sweeps, name, tmp_path):
    if name in NEED_NO_GPU and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if name in PRE_CHECKED:
        sweep = tmp_path / "sweep"
        done = train_refused_in_process("-m", *SWEEPS[name], f"hydra.sweep.dir={sweep}")
        assert done.returncode == 2, done.describe()
    else:
        sweep, done = finished(sweeps, name, returncode=2)
    assert done.stderr.strip().splitlines() == [BAD[name]], done.describe()
    assert not sweep.exists() or not list(sweep.glob("*/.hydra")), "a job ran"


SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


@pytest.mark.parametrize("launcher, needs", [
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node": 0},
     "SLURM allocates none"),
    ({"_target_": "hydra_plugins.initlab_batched_launcher.batched_launcher.BatchedSlurmLauncher",
      "gpus_per_node": None}, "SLURM allocates none"),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node": 1}, None),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node": 0,
      "gres": "gpu:a100:1"}, None),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node": 0,
      "gpus_per_task": 2}, None),
    ({"_target_": SLURM, "gpus_per_node": 0, "gres": "gpu:0"}, "SLURM allocates none"),
    ({"_target_": SLURM, "gpus_per_node": 0, "gres": "mps:100,gpu:0(S:0)"}, "SLURM allocates none"),
    ({"_target_": SLURM, "gpus_per_node": 0, "gres": "mps:100,GPU"}, None),
    ({"_target_": SLURM, "gpus_per_node": 0, "gres": "gpu:a100:2(S:0-1)"}, None),
    ({"_target_": SLURM, "gpus_per_node": 0, "additional_parameters": {"constraint": "gpu"}}, "SLURM allocates none"),
    ({"_target_": SLURM, "gpus_per_node": 0, "additional_parameters": {"gres": "gpu:2"}}, None),
    ({"_target_": SLURM, "gpus_per_node": 0, "additional_parameters": {"gpus": "a100:1"}}, None),
    ({"_target_": SLURM, "gpus_per_node": 0, "additional_parameters": {"gpus-per-node": 0}}, "SLURM allocates none"),
    ({"_target_": LOCAL, "gpus_per_node": 0, "gpus_per_task": 2}, "submitit's local executor hides every GPU"),
])
def test_cuda_on_slurm_needs_a_gpu_asked_for(launcher, needs):
    """On SLURM only the request can be checked (the nodes' GPUs are not this machine's): a GRES
    entry of count 0 or a constraint asks for none; submitit's local executor reads gpus_per_node
    alone."""
    refusal = device_refusal("cuda", OmegaConf.create(launcher))
    if needs is None:
        assert refusal is None
    else:
        assert refusal == (f"device=cuda but hydra.launcher.gpus_per_node={launcher['gpus_per_node']} asks for no GPU "
                           f"({needs}); valid: hydra.launcher.gpus_per_node=1 (or more), or device=auto or cpu")
    assert device_refusal("auto", OmegaConf.create(launcher)) is None
    assert device_refusal("cpu", OmegaConf.create(launcher)) is None


def _compose_multirun(*overrides: str):
    register_configs()
    return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.slow
def test_expansion_and_validation_match_the_experiment_file():
    grid = yaml.safe_load((CONF / "experiment" / "grid_quick.yaml").read_text())["hydra"]["sweeper"]["params"]
    values = {key: str(v).split(",") for key, v in grid.items()}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("+experiment=grid_quick")
        jobs = sweep_jobs(cfg)
        expected = len(values["activation"]) * len(values["init"]) * len(values["depth"]) * len(values["seed"])
        assert len(jobs) == expected == 288
        assert {tuple(sorted(j)) for j in jobs} == {
            tuple(sorted([f"activation={a}", f"init={i}", f"depth={d}", f"seed={s}", "+experiment=grid_quick"]))
            for a in values["activation"] for i in values["init"] for d in values["depth"] for s in values["seed"]}
        validate_jobs(cfg, jobs)  # every job of the shipped grid is valid
        with pytest.raises(ConfigError, match=r"^job activation=tanh init=normal depth=0 "
                                              r"\+experiment=grid_quick: depth must be > 0, got 0$"):
            validate_jobs(cfg, [*jobs[:3], ["activation=tanh", "init=normal", "depth=0", "+experiment=grid_quick"]])
        with pytest.raises(ConfigError, match=r"^job init=he_normal init.std=0.1: Could not override 'init.std'"):
            validate_jobs(cfg, [["init=normal", "init.std=0.1"], ["init=he_normal", "init.std=0.1"]])
        with pytest.raises(ConfigError, match=r"^job epochs=null: .*field 'epochs' is not Optional; "
                                              r"valid: an integer >= 0$"):
            validate_jobs(cfg, [["epochs=1"], ["epochs=null"]])


def test_a_job_giving_a_group_no_choice_is_refused_in_one_line():
    """-m activation=null,tanh: the job's null (was a traceback from composing it)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        with pytest.raises(ConfigError, match=r"^job activation=null epochs=0: activation=null: the activation group "
                                              r"takes one choice; valid: elu, gelu, "):
            validate_jobs(cfg, [["activation=tanh", "epochs=0"], ["activation=null", "epochs=0"]])
        with pytest.raises(ConfigError, match=r"^job activation=foo: unknown activation 'foo'; valid: elu, "):
            validate_jobs(cfg, [["activation=foo"]])
        with pytest.raises(ConfigError, match=r"^job deep_plain=relu_he: deep_plain=relu_he: deep_plain is not in the "
                                              r"config's defaults: add it with \+deep_plain=relu_he; valid: dks_tanh, "):
            validate_jobs(cfg, [["deep_plain=relu_he"]])


def test_a_batch_of_one_sample_for_a_batchnorm_is_refused_before_the_first_job():
    """The break-it test's sweep: `-m model.norm=batchnorm dataset=digits dataset.val_size=300
    batch_size=32,16` ran the batch_size=32 job, then the other failed in its folder (1137 = 71 * 16
    + 1 training samples, and a BatchNorm1d cannot normalize a batch of one). Now the sweep is
    refused before it starts; models whose BatchNorms see a map per channel (a CNN on 8 x 8 digits)
    or that have none pass, as in the job's own check (test_site_statistics)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        digits = ["dataset=digits", "dataset.val_size=300", "model.norm=batchnorm"]
        with pytest.raises(ConfigError, match=r"^job dataset=digits dataset.val_size=300 model.norm=batchnorm "
                                              r"batch_size=16: batch_size=16 leaves a last batch of 1 of the 1137 "
                                              r"training samples, .*; valid: a batch_size that leaves 0 or at least 2, "
                                              r"e\.g\. 15 or 17$"):
            validate_jobs(cfg, [[*digits, "batch_size=32"], [*digits, "batch_size=16"]])
        with pytest.raises(ConfigError, match=r"^job model=resnet18 probe_size=1: probe_size=1: model.norm=batchnorm "
                                              r"normalizes each batch"):
            validate_jobs(cfg, [["model=resnet18", "probe_size=1"]])  # 1 x 1 maps in its last stage on digits
        validate_jobs(cfg, [[*digits[:2], "model.norm=layernorm", "batch_size=16"],
                            [*digits[:2], "model=cnn", "model.norm=batchnorm", "batch_size=1"]])


@pytest.mark.parametrize("launcher", ["slurm", "batched_slurm"])
def test_a_slurm_sweep_is_not_held_to_this_machines_memory(launcher):
    """The break-it test's `-m hydra/launcher=slurm model.width=8,100000 depth=2`: refused for the 24
    GiB of the machine that submits it, though each job runs on a node with its own memory (which
    the job checks when it allocates). A batch of one against a BatchNorm is refused anywhere."""
    big = ["model.width=10000000", "depth=2"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigError, match=r"^job model.width=10000000 depth=2: .* does not fit in memory"):
            validate_jobs(_compose_multirun("epochs=0"), [big])
        cluster = _compose_multirun("epochs=0", f"hydra/launcher={launcher}")
        assert len(validate_jobs(cluster, [big])) == 1
        with pytest.raises(ConfigError, match=r"batch_size=1 with 1437 training samples: model.norm=batchnorm"):
            validate_jobs(cluster, [["model.norm=batchnorm", "batch_size=1"]])


def test_jobs_that_would_share_a_folder_are_refused_naming_both_and_why():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("depth=2")
        jobs = [["threads=1", "depth=2"], ["threads=2", "depth=2"]]
        assert job_folders(cfg, jobs) == ["depth=2", "depth=2"]
        with pytest.raises(ConfigError, match=r"^jobs #0 \(threads=1 depth=2\) and #1 \(threads=2 depth=2\) would "
                                              r"write one folder, depth=2: they differ only in threads, which the "
                                              r"folder name leaves out \(hydra.job.config.override_dirname"):
            check_job_folders(cfg, jobs)
        with pytest.raises(ConfigError, match=r"#0 \(depth=2\) and #1 \(depth=2\) .*: they are the same job$"):
            check_job_folders(cfg, [["depth=2"], ["depth=2"]])
        named = _compose_multirun("depth=2", "hydra.sweep.subdir=run_${oc.env:NO_SUCH_VARIABLE,x}")
        with pytest.raises(ConfigError, match=r"they differ only in depth, which hydra.sweep.subdir="
                                              r"run_\$\{oc.env:NO_SUCH_VARIABLE,x\} leaves out: name the folders"):
            check_job_folders(named, [["depth=2"], ["depth=3"]])
        unknown = _compose_multirun("depth=2", "hydra.sweep.subdir=${nope}")  # was a traceback after launch
        with pytest.raises(ConfigError, match=r"^hydra\.sweep\.subdir=\$\{nope\}: Interpolation key 'nope' not found$"):
            check_job_folders(unknown, [["depth=2"], ["depth=3"]])
        numbered = _compose_multirun("depth=2", "hydra.sweep.subdir=${hydra.job.num}")
        assert job_folders(numbered, jobs) == ["0", "1"]
        check_job_folders(numbered, jobs)
        by_enum = _compose_multirun("depth=2", "hydra.sweep.subdir=${device}_${model.norm}")
        assert job_folders(by_enum, [["device=cpu", "model.norm=layernorm"]]) == ["cpu_layernorm"]
        check_job_folders(cfg, [["depth=2", "seed=0"], ["depth=2", "seed=1"]])


def test_a_folder_named_by_an_enum_setting_has_its_yaml_spelling(tmp_path):
    """Hydra resolves hydra.sweep.subdir against the job's typed config, where an enum field's text
    was its Python name (folder Device.cpu_layernorm, not the cpu_layernorm the pre-launch check
    expected)."""
    done = run_train("-m", "hydra.sweep.subdir=${device}_${model.norm}", "device=cpu", "model.norm=layernorm", *TINY,
                     f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.describe()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [".progress", "cpu_layernorm"]


def test_one_run_spelt_two_ways_is_refused_naming_both_jobs():
    """-m depth=2,02: two folders, one run, trained twice and counted as two seeds by analyze.py."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        jobs = [["depth=2", "epochs=0"], ["depth=3", "epochs=0"], ["depth=02", "epochs=0"]]
        with pytest.raises(ConfigError, match=r"^jobs #0 \(depth=2 epochs=0\) and #2 \(depth=02 epochs=0\) are the "
                                              r"same run \(equal configs\): sweep each value once$"):
            check_distinct_jobs(jobs, validate_jobs(cfg, jobs))
        check_distinct_jobs(jobs[:2], validate_jobs(cfg, jobs[:2]))
        with pytest.raises(ConfigError, match=r"^job seed=1 resume=2: resume=2: not a bool; valid: true or false$"):
            validate_jobs(cfg, [["seed=0", "resume=true"], ["seed=1", "resume=2"]])
        resnets = [["model=resnet18", "dataset=shapes", f"depth={d}", "epochs=0"] for d in (3, 5)]
        with pytest.raises(ConfigError, match=r"^jobs #0 \(.* depth=3 epochs=0\) and #1 \(.* depth=5 epochs=0\) "
                                              r"are the same run \(equal configs\): model=resnet18 is 18 layers deep whatever "
                                              r"depth says: sweep it without depth$"):
            check_distinct_jobs(resnets, validate_jobs(cfg, resnets))


def test_a_sweep_over_a_users_config_folder_checks_its_files_bools(tmp_path):
    """``hydra.searchpath`` adds a user's folder: its choices are valid jobs (they were refused as
    unknown), and a file's ``nesterov: 2``, which composing turns into true, stops the sweep."""
    (tmp_path / "optimizer").mkdir()
    for name, value in (("fine", "true"), ("two", "2")):
        text = f"defaults:\n  - momentum\n  - _self_\nnesterov: {value}\n"
        (tmp_path / "optimizer" / f"{name}.yaml").write_text(text)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0", f"hydra.searchpath=[file://{tmp_path}]")
        (fine,) = validate_jobs(cfg, [["optimizer=fine"]])
        assert fine.optimizer.nesterov is True and fine.optimizer.momentum == 0.9
        with pytest.raises(ConfigError, match=rf"^job optimizer=two: {tmp_path}/optimizer/two\.yaml: nesterov: 2: "
                                              r"not a bool; valid: true or false$"):
            validate_jobs(cfg, [["optimizer=fine"], ["optimizer=two"]])


@pytest.mark.parametrize("launcher, checked", [("basic", True), ("parallel", True), ("batched", True),
                                               ("slurm", False), ("batched_slurm", False)])
def test_a_local_sweep_over_missing_dataset_files_stops_before_its_first_job(tmp_path, launcher, checked):
    """Every job of the sweep failed on its own (a FAILED folder each, the error 4 times, then a
    traceback); the files are now loaded once before launch wherever the jobs run on this machine.
    A SLURM login node may not see the files its jobs read: those are left to the job."""
    from test_data import make_mnist_like

    jobs = [["dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false", f"depth={d}"] for d in (2, 3)]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0", f"hydra/launcher={launcher}")
        if checked:
            with pytest.raises(ConfigError, match=rf"^job .* depth=2: dataset mnist: files not found under "
                                                  rf"{tmp_path} and download=false; put torchvision's MNIST files"):
                validate_jobs(cfg, jobs)
        else:
            assert len(validate_jobs(cfg, jobs)) == 2
        make_mnist_like(tmp_path, "MNIST")
        assert len(validate_jobs(cfg, jobs)) == 2


def test_a_job_whose_kernel_shaping_targets_are_out_of_reach_stops_the_sweep():
    """TAT's eta = 0.9 needs 13 leaky ReLU layers: the depth-4 job is refused before launch (it
    failed at build time, after 'all configs valid'); the depth-20 one passes."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        shaped = ["activation=leaky_relu", "activation.transform=tat", "init=scaled_orthogonal"]
        validate_jobs(cfg, [[*shaped, "depth=20"]])
        with pytest.raises(ConfigError, match=r"^job .* depth=4: activation\.transform=tat found no leaky_relu for "
                                              r"depth 4 with c_val_0_target=0\.9: .*valid: c_val_0_target < "
                                              r"0\.6810, or depth >= 13$"):
            validate_jobs(cfg, [[*shaped, "depth=20"], [*shaped, "depth=4"]])


def test_a_subdir_reading_the_jobs_config_is_resolved_per_job(caplog):
    """hydra.sweep.subdir=${seed} or ${hydra.runtime.choices.activation}: each job's own value (a
    sweep over seeds or activations writes separate folders; one over depths alone collides); a
    subdir no one knows before launch (${hydra.job.id}) is left to the folder lock, and logged."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        by_seed = _compose_multirun("hydra.sweep.subdir=s${seed}")
        assert job_folders(by_seed, [["seed=3"], ["seed=4", "depth=5"]]) == ["s3", "s4"]
        with pytest.raises(ConfigError, match=r"they differ only in depth, which hydra.sweep.subdir=s\$\{seed\}"):
            check_job_folders(by_seed, [["depth=2"], ["depth=3"]])
        # an integer given for a float key: Hydra's job config holds 2.0 (the schema's type), so its
        # folder is f2.0; resolved without the schema it was f2, and a rerun's checks looked there
        by_float = _compose_multirun("hydra.sweep.subdir=f${init.factor}_lr${optimizer.lr}")
        assert job_folders(by_float, [["init.factor=2", "optimizer.lr=1"], ["init.factor=3"]]) == ["f2.0_lr1.0",
                                                                                                  "f3.0_lr0.01"]
        by_choice = _compose_multirun("hydra.sweep.subdir=${hydra.runtime.choices.activation}")
        assert job_folders(by_choice, [["activation=relu"], ["activation=tanh"]]) == ["relu", "tanh"]
        # each optimizer choice has its own lr (sgd 0.01, adam 0.001): the base config's sgd was read for
        # both, and the sweep was refused as two jobs writing lr0.01; such a folder is left to the lock
        by_group = _compose_multirun("hydra.sweep.subdir=lr${optimizer.lr}")
        with pytest.raises(ValueError, match="it reads parameters of optimizer, which the job's choice optimizer=adam"):
            job_folders(by_group, [["optimizer=sgd"], ["optimizer=adam"]])
        assert check_job_folders(by_group, [["optimizer=sgd"], ["optimizer=adam"]]) is None
        # one folder spelt two ways (a path in a value): the same folder
        by_root = _compose_multirun("hydra.sweep.subdir=r${dataset.root}", "dataset=mnist")
        with pytest.raises(ConfigError, match=r"would write one folder, r/data/x/\.\./ok: they differ only in "
                                              r"dataset.root"):
            check_job_folders(by_root, [["dataset=mnist", "dataset.root=/data/ok"],
                                        ["dataset=mnist", "dataset.root=/data/x/../ok"]])
        by_id = _compose_multirun("hydra.sweep.subdir=${hydra.job.id}")
        with pytest.raises(ValueError, match="hydra.job.id"):
            job_folders(by_id, [["depth=2"], ["depth=3"]])
        with caplog.at_level(logging.INFO, logger="initlab.sweep"):
            check_job_folders(by_id, [["depth=2"], ["depth=3"]])
        assert "job folders not checked before launch" in caplog.text


# --- job folder names ---------------------------------------------------------------------------
def test_short_folder_names_are_unchanged():
    for name in ["depth=3", "activation=relu,depth=5,init=he_normal", "x" * NAME_MAX]:
        assert job_subdir(name) == name


def test_a_path_in_a_value_stays_in_one_folder_name():
    """dataset.root=/tmp/x made each job four folders deep; / is written %2F, and % as %25 so that
    two different override strings never share a name."""
    assert job_subdir("dataset.root=/data/mnist,depth=2") == "dataset.root=%2Fdata%2Fmnist,depth=2"
    assert job_subdir("dataset.root=a%2Fb") == "dataset.root=a%252Fb" != job_subdir("dataset.root=a/b")


def test_a_sweep_over_a_dataset_path_writes_one_folder_per_job(tmp_path):
    from test_data import make_mnist_like

    make_mnist_like(tmp_path / "data", "MNIST")
    sweep = tmp_path / "sweep"
    args = ["-m", "dataset=mnist", f"dataset.root={tmp_path / 'data'}", "dataset.download=false", "depth=2,3",
            "epochs=0", "probe_size=20", "threads=1", f"hydra.sweep.dir={sweep}"]
    done = run_train(*args)
    assert done.returncode == 0, done.describe()
    jobs = sorted(p.parent for p in sweep.rglob("result.json"))
    assert [j.parent for j in jobs] == [sweep, sweep] and all("%2F" in j.name for j in jobs)
    again = run_train(*args)
    assert again.returncode == 0 and "(2 already finished, skipped)" in again.stdout, again.describe()


@pytest.mark.parametrize("name", [
    ",".join(f"key{i}=value{i}" for i in range(40)),   # many overrides
    "dataset.root=" + "d" * 400,                          # one override alone too long
    "activation=" + "σ²" * 200,                           # multi-byte characters
])
def test_long_folder_names_are_shortened_to_a_prefix_and_a_hash(name):
    short = job_subdir(name)
    assert len(short.encode()) <= NAME_MAX
    assert short.endswith("_" + hashlib.sha256(name.encode()).hexdigest()[:12])
    prefix = short.rsplit("_", 1)[0]
    assert prefix and name.startswith(prefix)
    assert job_subdir(name) == short, "deterministic"
    assert job_subdir(name + "0") != short


@pytest.mark.parametrize("name", [pytest.param("long", marks=pytest.mark.slow)])
def test_a_sweep_with_twenty_overrides_runs_every_job(sweeps, name):
    sweep, done = finished(sweeps, name)
    jobs = sorted(p.parent for p in sweep.glob("*/.hydra"))
    assert len(jobs) == 2
    for job in jobs:
        assert len(job.name.encode()) <= NAME_MAX
        assert read_json(job / "result.json")["status"] == "completed"
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        slope = [o for o in overrides if o.startswith("activation.negative_slope=")]
        assert overrides == [o if not o.startswith("activation.negative_slope=") else slope[0] for o in LONG]
    # The analysis reads each job's choices from its .hydra files, not from the shortened name.
    choices = [read_job(job).choices for job in jobs]
    assert sorted(c["activation.negative_slope"] for c in choices) == [0.1, 0.2]
    assert all(c["init"] == "trunc_normal" and c["dataset.n_features"] == 16 and c["optimizer.eps"] == 1e-07
               for c in choices)


# --- progress counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["glob", "range_parallel"])
def test_progress_counts_what_the_sweeper_launches(sweeps, name):
    sweep, done = finished(sweeps, name)
    output = done.stdout + done.stderr
    total = len([c for c in group_choices("init") if c.startswith("he_")]) if name == "glob" else 3
    assert len(list(sweep.glob("*/result.json"))) == total
    assert read_json(sweep / "sweep.json")["total"] == total
    counts = progress(output)
    assert counts and counts[-1] == (total, total) and all(t == total for _, t in counts), output[-3000:]
    assert [d for d, _ in counts] == sorted(set(d for d, _ in counts)), "counts only go up, once each"
    assert output.count("[sweep] finished in") == 1
    assert f"{total} completed, 0 diverged, 0 failed" in output


@pytest.mark.slow
def test_two_sweeps_into_one_folder_count_their_own_jobs(tmp_path):
    folder = f"hydra.sweep.dir={tmp_path}"
    first = run_train("-m", "seed=0,1", *TINY, folder)
    second = run_train("-m", "seed=5,6,7", *TINY, folder)
    again = run_train("-m", "seed=5,6,7", *TINY, folder)
    for done in (first, second, again):
        assert done.returncode == 0, done.describe()
    assert progress(first.stdout + first.stderr) == [(1, 2), (2, 2)]
    for done in (second, again):
        output = done.stdout + done.stderr
        assert progress(output) == [(1, 3), (2, 3), (3, 3)], output[-3000:]
        assert output.count("[sweep] finished in") == 1
        assert "3 completed, 0 diverged, 0 failed" in output
    assert "(3 already finished, skipped)" in again.stdout + again.stderr
    assert len(list(tmp_path.glob("*/result.json"))) == 5


# A stand-in for sweepers that choose their jobs while running (Nevergrad, Ax; Optuna's total is its
# n_trials, tests/test_search.py): any sweeper other than Hydra's basic one, whose job list the
# callback therefore cannot know upfront.
OTHER_SWEEPER = '''
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class AdaptiveSweeper(BasicSweeper):
    """Runs like the basic sweeper, but is not it."""
'''


def test_a_sweeper_with_no_upfront_total_gets_counts_without_one(tmp_path):
    plugin = tmp_path / "hydra_plugins" / "adaptive_sweeper"  # Hydra takes sweepers from hydra_plugins
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(OTHER_SWEEPER)
    env = train_env(PYTHONPATH=str(tmp_path))
    sweep = tmp_path / "sweep"
    done = run_train("-m", "seed=0,1", *TINY, "hydra.sweeper._target_=hydra_plugins.adaptive_sweeper.AdaptiveSweeper",
                     f"hydra.sweep.dir={sweep}", env=env)
    assert done.returncode == 0, done.describe()
    output = done.stdout + done.stderr
    assert re.findall(r"\[sweep\] (\d+) jobs done", output) == ["1", "2"], output[-3000:]
    assert progress(output) == []
    assert read_json(sweep / "sweep.json")["total"] is None
    assert output.count("[sweep] finished in") == 1 and "2 completed, 0 diverged, 0 failed" in output


def test_hydra_full_error_still_shows_hydras_own_report(tmp_path):
    done = run_train("-m", "foo=1", "epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     env=train_env(HYDRA_FULL_ERROR="1"), timeout=120)
    assert done.returncode == 1, done.describe()
    assert "ConfigCompositionException: Could not override 'foo'" in done.stderr, done.describe()
    assert "Traceback" in done.stderr and not (tmp_path / "sweep").exists()
