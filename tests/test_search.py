"""The init-scale search: hydra/sweeper=optuna_search, +experiment=he_factor_search, what a job
returns to the study (initlab.objective), the checks before a search starts, and the search
figure (initlab.analysis.figures.search) with its best-trial line in the report.

The figure's content is checked on fabricated searches (tests/jobfactory.py write_search) whose
values are known; a tiny real search (3 trials, digits, depth 2, 1 epoch) goes through train.py
and analyze.py, its best trial checked against the jobs' own result.json.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import version

import numpy as np
import pytest
from omegaconf import OmegaConf

import analyze
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from conftest import CONF, compose_config, run_job, run_train, train_refused_in_process
from jobfactory import write_job, write_search
from initlab import objective
from initlab.cli import check_command_line
from initlab.config import register_configs
from initlab.analysis import search, tables as analysis
from initlab.analysis.figures import FAMILIES, Plotter
from initlab.analysis.search import trials as search_trials
from initlab.sweeps import grid_size, trial_count

TINY = ["+experiment=he_factor_search", "depth=2", "epochs=1", "model.width=16", "probe_size=100",
        "hydra.sweeper.n_trials=3"]
TRIALS = [{"factor": 0.5, "lr": 0.01, "final": 0.3},
          {"factor": 2.0, "lr": 0.1, "final": 0.9},
          {"factor": 8.0, "lr": 0.3, "final": 0.5, "status": "diverged"},
          {"factor": 1.0, "lr": 0.003, "final": 0.6}]


# --- what a job returns ----------------------------------------------------------------------------
@pytest.mark.parametrize("metric, direction, worst", [("val_acc", "maximize", 0.0), ("train_acc", "maximize", 0.0),
                                                      ("val_loss", "minimize", math.inf),
                                                      ("train_loss", "minimize", math.inf)])
def test_objective_is_the_final_metric_and_a_diverged_run_the_worst(metric, direction, worst):
    final = {"val_acc": 0.75, "train_acc": 0.8, "val_loss": 0.6, "train_loss": 0.5}
    assert objective.direction(metric) == direction and objective.worst(metric) == worst
    assert objective.value({"status": "completed", "final": final}, metric) == final[metric]
    assert objective.value({"status": "diverged", "final": final}, metric) == worst
    for bad in (None, float("nan"), float("inf") if direction == "maximize" else -float("inf")):
        assert objective.value({"status": "completed", "final": {**final, metric: bad}}, metric) == worst


def test_another_objective_reuses_a_finished_job(tmp_path):
    """``objective`` only picks what is returned: a finished job asked for with another one is
    skipped (its result.json reused), not refused as a run of other settings."""
    tiny = ["depth=2", "model.width=8", "epochs=1", "probe_size=50", "threads=1", "device=cpu", "dataset.val_size=100"]
    first = run_job(compose_config(*tiny, "objective=val_acc"), tmp_path)
    stamp = (tmp_path / "result.json").stat().st_mtime_ns
    again = run_job(compose_config(*tiny, "objective=train_loss"), tmp_path)
    assert again["final"] == first["final"] and (tmp_path / "result.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_searchs_repeated_trials_are_counted_as_skipped(tmp_path):
    """Four trials over two categorical choices repeat at least twice; each repeat finds its twin's
    result (written in this very sweep) and is skipped, which the summary says (it counted them
    completed: the skip test was result.json older than the sweep)."""
    done = run_train("-m", "hydra/sweeper=optuna_search", "hydra/launcher=batched", "objective=train_acc", "epochs=1",
                     "depth=2", "model.width=8", "probe_size=50", "threads=1", "activation=choice(relu,tanh)",
                     "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.describe()
    distinct = len(list(tmp_path.glob("*/result.json")))
    assert distinct in (1, 2)
    assert f"4 completed, 0 diverged, 0 failed ({4 - distinct} already finished, skipped)" in done.stdout + done.stderr
    found = search_trials(analysis.load([tmp_path]))
    trained = sorted(json.loads(p.read_text())["job_num"] for p in tmp_path.glob("*/result.json"))
    assert sorted(found["trial"]) == trained and trained[0] == 0  # a repeat rewrote .hydra/'s job.num
    assert found["latest_trial"].max() == 3


def test_a_repeated_trial_keeps_the_number_of_the_trial_that_trained_it(tmp_path):
    """Trial 2 repeated trial 0's values: its skipped run rewrote .hydra/ with job.num 2, and the
    report said "Best trial: 2" and "each of 2 trials" (Optuna ran 3). The number is result.json's."""
    root = write_search(tmp_path / "search", [{"factor": 1.0, "lr": 0.1, "final": 0.9},
                                              {"factor": 2.0, "lr": 0.1, "final": 0.5}])
    first = root / "init.factor=1.0,optimizer.lr=0.1"
    result = json.loads((first / "result.json").read_text())
    (first / "result.json").write_text(json.dumps({**result, "job_num": 0}))
    hydra = OmegaConf.load(first / ".hydra" / "hydra.yaml")
    hydra.hydra.job.num = 2
    OmegaConf.save(hydra, first / ".hydra" / "hydra.yaml")
    plotter = Plotter(analysis.load([root]), tmp_path / "out", strict=True)
    plotter.kept, plotter.dpi = {}, 40
    (figure,) = plotter.search()
    assert "each of 2 trials (1 more trial(s) of the 3 asked repeated earlier values" in figure.caption
    assert "Best trial: 0 (init.factor=1" in figure.caption


# the user's search: 5 trials, none repeated, the best trial 3 (val_acc 0.5); trial 4 reached 0.23
FIVE = [{"factor": 0.5, "lr": 0.01, "final": 0.3}, {"factor": 2.0, "lr": 0.1, "final": 0.4},
        {"factor": 4.0, "lr": 0.03, "final": 0.1}, {"factor": 1.0, "lr": 0.003, "final": 0.5},
        {"factor": 6.0, "lr": 0.2, "final": 0.23}]


def _ledger(root, sweep_id, jobs):
    """The latest sweep's records as initlab's callback writes them: sweep.json's id and one ledger
    entry per job number, ``jobs`` listing each number's job folder in order."""
    (root / "sweep.json").write_text(json.dumps({"id": sweep_id, "total": len(jobs), "start": 0.0}))
    ledger = root / ".progress" / sweep_id
    ledger.mkdir(parents=True)
    for num, job in enumerate(jobs):
        (ledger / f"{num}.json").write_text(json.dumps({"job": job, "status": "completed", "skipped": False}))


def _caption(root, tmp_path, filters=None):
    plotter = Plotter(analysis.load([root], filters), tmp_path / "out", strict=True)
    plotter.kept, plotter.dpi = {}, 40
    (figure,) = plotter.search()
    return figure.caption, plotter


@pytest.mark.parametrize("with_ledger", [False, True])
def test_a_filter_keeps_the_search_figure_whole_and_its_best_trial_true(tmp_path, with_ledger):
    """``analyze.py SWEEP init.factor=<trial 4's>`` (the README's way to draw another trial) said
    "each of 1 trials (4 more trial(s) of the 5 asked repeated earlier values ...)" and "Best
    trial: 4, val_acc 0.23": the search was read from the filtered runs. It is read whole."""
    root = write_search(tmp_path / "search", FIVE)
    if with_ledger:
        _ledger(root, "a", [f"init.factor={t['factor']},optimizer.lr={t['lr']}" for t in FIVE])
    caption, plotter = _caption(root, tmp_path, {"init.factor": ["6.0"]})
    assert "each of 5 trials against init.factor and optimizer.lr" in caption and "repeated" not in caption
    assert "Best trial: 3 (init.factor=1, optimizer.lr=0.003), val_acc 0.5," in caption
    assert "the filters kept 1 of its 5 trials (trial(s) 4): the other figures show trial 4, the best of those" \
        in caption
    assert search.shown_jobs(plotter.tables.runs, plotter.trials) == {"init.factor=6.0,optimizer.lr=0.2"}
    star = _axes(plotter.kept["search_search"])["val_acc per trial and best so far (maximize)"].collections[-1]
    assert np.asarray(star.get_offsets()).tolist() == [[3.0, 0.5]]
    caption, _ = _caption(root, tmp_path, {"optimizer.lr": ["0.1", "0.2"]})  # another key, two kept
    assert "each of 5 trials" in caption and "Best trial: 3 " in caption
    assert "the filters kept 2 of its 5 trials (trial(s) 1, 4): the other figures show trial 1" in caption
    caption, _ = _caption(root, tmp_path)
    assert "Best trial: 3 " in caption and "the other figures show this trial (analyze.py" in caption


def test_two_searches_into_one_folder_draw_the_latest_one(tmp_path):
    """A 5-trial search (epochs=2), then a 2-trial one (epochs=3) into the same folder were drawn
    as one search of 7 trials "against epochs and init.factor and optimizer.lr", trials 0 and 1
    twice. The latest sweep's ledger names its trials; the earlier ones are counted, not drawn."""
    root = write_search(tmp_path / "search", FIVE, epochs=2)
    later = [{"factor": 1.5, "lr": 0.05, "final": 0.7}, {"factor": 3.0, "lr": 0.02, "final": 0.6}]
    latest = tmp_path / "later"
    write_search(latest, later, epochs=3)
    for job in latest.iterdir():
        if job.is_dir():  # the job folders as the second sweep left them, its hydra.sweep.dir the same folder
            hydra = OmegaConf.load(job / ".hydra" / "hydra.yaml")
            hydra.hydra.sweep.dir = str(root)
            OmegaConf.save(hydra, job / ".hydra" / "hydra.yaml")
            job.rename(root / f"epochs=3,{job.name}")
    _ledger(root, "b", [f"epochs=3,init.factor={t['factor']},optimizer.lr={t['lr']}" for t in later])
    caption, plotter = _caption(root, tmp_path)
    assert "each of 2 trials against init.factor and optimizer.lr (colour" in caption, caption
    assert "; 5 job folder(s) here are trials of earlier searches into this folder" in caption
    assert "Best trial: 0 (init.factor=1.5, optimizer.lr=0.05), val_acc 0.7, job epochs=3,init.factor=1.5" in caption
    step = _axes(plotter.kept["search_search"])["val_acc per trial and best so far (maximize)"].get_lines()[0]
    assert step.get_xdata().tolist() == [0, 1] and step.get_ydata().tolist() == [0.7, 0.7]
    assert "job init.factor=1.0,optimizer.lr=0.003" in caption  # the earlier trials' best, drawn by the others
    assert search.shown_jobs(plotter.tables.runs, plotter.trials) == {"epochs=3,init.factor=1.5,optimizer.lr=0.05",
                                                                      "init.factor=1.0,optimizer.lr=0.003"}


def test_a_resumed_search_and_a_repeated_trial_are_numbered_by_the_ledger(tmp_path):
    """A search rerun to 5 trials (its first 3 finished earlier, skipped) is one search of 5; a
    trial that repeated trial 0's values counts once, at 0 (its folder's .hydra/ says 5)."""
    root = write_search(tmp_path / "search", FIVE)
    jobs = [f"init.factor={t['factor']},optimizer.lr={t['lr']}" for t in FIVE]
    _ledger(root, "c", jobs + [jobs[0]])
    hydra = OmegaConf.load(root / jobs[0] / ".hydra" / "hydra.yaml")
    hydra.hydra.job.num = 5
    OmegaConf.save(hydra, root / jobs[0] / ".hydra" / "hydra.yaml")
    caption, plotter = _caption(root, tmp_path)
    assert "each of 5 trials (1 more trial(s) of the 6 asked repeated earlier values" in caption
    assert "Best trial: 3 " in caption and "earlier searches" not in caption
    assert plotter.trials.set_index("job").loc[jobs[0], ["trial", "latest_trial"]].tolist() == [0, 5]


def test_a_plain_sweep_into_a_searchs_folder_leaves_the_search_whole(tmp_path):
    """A grid run into the search's folder afterwards: its ledger names none of the trials, which
    are then read from their folders (all 5); the grid's job is drawn as any run."""
    root = write_search(tmp_path / "search", FIVE)
    write_job(root / "depth=2", depth=2)
    _ledger(root, "d", ["depth=2"])
    caption, plotter = _caption(root, tmp_path)
    assert "each of 5 trials against" in caption and "Best trial: 3 " in caption and "earlier" not in caption
    assert search.shown_jobs(plotter.tables.runs, plotter.trials) == {"depth=2", "init.factor=1.0,optimizer.lr=0.003"}


# --- fabricated searches: the figure's content -----------------------------------------------------
def _search_figure(tmp_path, trials, metric="val_acc"):
    root = write_search(tmp_path / "search", trials, objective=metric)
    plotter = Plotter(analysis.load([root]), tmp_path / "out", strict=True)
    plotter.kept, plotter.dpi = {}, 40
    figures = plotter.search()
    assert len(figures) == 1 and figures[0].path == "figures/search_search.png"
    return figures[0], plotter.kept["search_search"]


def _axes(fig) -> dict:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def test_search_figure_draws_each_trial_against_each_parameter_and_the_best_so_far(tmp_path):
    figure, fig = _search_figure(tmp_path, TRIALS)
    axes = _axes(fig)
    assert set(axes) == {"val_acc against init.factor", "val_acc against optimizer.lr",
                         "val_acc per trial and best so far (maximize)"}
    completed = [t for t in TRIALS if "status" not in t]
    for param, key in (("init.factor", "factor"), ("optimizer.lr", "lr")):
        ax = axes[f"val_acc against {param}"]
        assert ax.get_xscale() == "log"  # 0.5..8 and 0.003..0.3 span more than 10x
        points, diverged = (c.get_offsets() for c in ax.collections)
        assert sorted(map(tuple, np.asarray(points))) == sorted((t[key], t["final"]) for t in completed)
        assert np.asarray(diverged).tolist() == [[8.0 if key == "factor" else 0.3, 0.0]]  # the worst accuracy
    best = axes["val_acc per trial and best so far (maximize)"]
    step = best.get_lines()[0]
    assert step.get_xdata().tolist() == [0, 1, 2, 3]
    assert step.get_ydata().tolist() == [0.3, 0.9, 0.9, 0.9]  # the diverged trial 2 counts as 0
    star = best.collections[-1].get_offsets()
    assert np.asarray(star).tolist() == [[1.0, 0.9]]
    assert "Best trial: 1 (init.factor=2, optimizer.lr=0.1), val_acc 0.9, job init.factor=2.0,optimizer.lr=0.1" \
        in figure.caption
    assert "1 diverged trial(s) count as the worst value (accuracy 0)" in figure.caption
    from test_figures import _check_readable

    _check_readable({"search_search": fig})  # no overlapping labels, labelled log ticks, at most 9.5 in wide


def test_a_minimized_loss_draws_a_diverged_trial_at_the_top_and_the_best_is_the_lowest(tmp_path):
    figure, fig = _search_figure(tmp_path, TRIALS, metric="val_loss")
    axes = _axes(fig)
    best = axes["val_loss per trial and best so far (minimize)"]
    step = best.get_lines()[0]
    assert step.get_ydata().tolist() == pytest.approx([0.7, 0.1, 0.1, 0.1])  # loss = 1 - accuracy
    ax = axes["val_loss against init.factor"]
    diverged = ax.collections[1]
    assert np.asarray(diverged.get_offsets()).tolist() == [[8.0, 1.0]]  # y in axes units: the top edge
    assert diverged.get_offset_transform() is ax.get_xaxis_transform()
    assert ax.get_xlim()[0] < 0.5 and ax.get_xlim()[1] > 8.0  # the x axis reaches the diverged trial too
    assert "Best trial: 1 (init.factor=2, optimizer.lr=0.1), val_loss 0.1," in figure.caption
    assert "(loss +inf, drawn at the top edge)" in figure.caption
    from test_figures import _check_readable

    _check_readable({"search_search": fig})


def test_the_search_is_drawn_once_over_the_whole_sweep_the_others_for_its_best_trial(tmp_path):
    """The search figure is drawn once, over every trial; the other families draw the best trial
    (and every run that is no trial: here a plain job analyzed with the search). A basic sweep
    alone has no search figure."""
    root = write_search(tmp_path / "runs" / "search", TRIALS[:2])
    write_job(tmp_path / "runs" / "plain" / "depth=3", depth=3)
    families = tuple(f for f in FAMILIES if f.method in ("search", "curves_by_init"))
    plotter = type("Two", (Plotter,), {"families": families})(analysis.load([root.parent]), tmp_path / "out",
                                                               strict=True)
    plotter.dpi = 40
    figures = [f.path for f in plotter.all()]
    assert figures[0] == "figures/search_search.png" and sum("search_" in p for p in figures) == 1
    curves = sorted(p for p in figures if p.startswith("figures/curves_init"))
    assert len(curves) == 2 and sum("factor=2_optimizer.lr=0.1" in p for p in curves) == 1, curves  # trial 1
    assert not any("factor=0.5" in p for p in curves), curves  # trial 0 (0.3) is not the best
    plain = write_job(tmp_path / "plain" / "depth=3", depth=3)
    assert Plotter(analysis.load([plain.parent]), tmp_path / "out2", strict=True).search() == []


SEARCH_LR = ("The trials of an Optuna search also vary optimizer.lr: the search figure shows every trial; the other "
             "figures show each search's best trial only (its value named in their titles and file names); draw "
             "another trial with `python analyze.py PATH optimizer.lr=VALUE`.")


def test_the_report_says_a_searchs_other_figures_show_its_best_trial_not_each_value(tmp_path):
    """The report said "These runs also vary optimizer.lr: every figure is drawn once per value",
    though of a search only the best trial is drawn (its lr, 0.1); a run that is no trial and
    differs in lr from that trial is still drawn once per value."""
    from initlab.analysis.report import _extra_blocks

    root = write_search(tmp_path / "runs" / "search", TRIALS[:2])
    assert _extra_blocks(analysis.load([root.parent])) == [("p", SEARCH_LR)]
    write_job(tmp_path / "runs" / "plain" / "optimizer.lr=0.5", optimizer_params={"lr": 0.5})
    assert _extra_blocks(analysis.load([tmp_path / "runs"])) == [
        ("p", "These runs also vary optimizer.lr: every figure is drawn once per value (named in its title and file "
              "name), so that only seeds are pooled; narrow with e.g. `optimizer.lr=0.1`."), ("p", SEARCH_LR)]


# --- the checks before a search ------------------------------------------------------------------
@pytest.mark.parametrize("args, line", [
    (["hydra/sweeper=optuna_search", "init.factor=interval(0.5,2)"],
     "error: hydra/sweeper=optuna_search optimizes what each job returns: set objective=val_acc | val_loss | "
     "train_acc | train_loss (e.g. +experiment=he_factor_search)"),  # the sweeper as chosen (read "=optuna")
    # the plugin drops a searched key that also has a fixed value: every trial ran width 8, "Best parameters: {}"
    (["+experiment=he_factor_search", "model.width=8", "model.width=range(4,64)"],
     "error: model.width=8 fixes the key that the later model.width=range(4,64) searches, and the Optuna sweeper "
     "keeps a fixed value and drops the search over it; valid: one override per searched key"),
    (["+experiment=he_factor_search", "hydra.sweeper.sampler.seed=1e30"],  # the TPE sampler's own field
     "error: hydra.sweeper.sampler.seed=1e30: Value '1e+30' of type 'float' could not be converted to Integer; "
     "valid: an integer or null"),
    (["+experiment=he_factor_search", "hydra.sweeper.direction=minimize"],
     "error: objective=val_acc is to be maximized, but hydra.sweeper.direction=minimize; "
     "set hydra.sweeper.direction=maximize"),
    (["hydra/sweeper=optuna", "objective=train_loss", "init.factor=interval(0.5,2)", "hydra.sweeper.direction=maximize"],
     "error: objective=train_loss is to be minimized, but hydra.sweeper.direction=maximize; "
     "set hydra.sweeper.direction=minimize"),
    # the plugin takes its numbers unchecked: tracebacks after the sweep folder was made
    (["+experiment=he_factor_search", "hydra.sweeper.n_trials=0"],
     "error: hydra.sweeper.n_trials=0; valid: an integer >= 1 (trials to run)"),
    (["+experiment=he_factor_search", "hydra.sweeper.n_jobs=0"],
     "error: hydra.sweeper.n_jobs=0; valid: an integer >= 1 (trials asked at once)"),
    (["+experiment=he_factor_search", "hydra.sweeper.sampler.seed=-1"],
     "error: hydra.sweeper.sampler.seed=-1; valid: null or an integer in [0, 2**32 - 1] (numpy's seeds)"),
    (["+experiment=he_factor_search", "hydra.sweeper.max_failure_rate=2"],
     "error: hydra.sweeper.max_failure_rate=2.0; valid: a number in [0, 1] (the fraction of failed trials "
     "tolerated)"),
])
def test_a_search_that_would_optimize_nothing_or_the_wrong_way_is_refused(args, line):
    done = train_refused_in_process("-m", *args)
    assert done.returncode == 2 and done.stderr.strip() == line, done.describe()


def test_a_database_storage_optuna_cannot_write_is_refused_in_one_line(tmp_path):
    """optuna 2.10.1 under SQLAlchemy 2.1.9: an AssertionError traceback from optuna's storage after
    the sweep folder was made. Where the installed versions work together the check lets it be."""
    installed = {name: version(name) for name in ("optuna", "sqlalchemy")}
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    line = check_command_line(["-m", "+experiment=he_factor_search", f"hydra.sweeper.storage={storage}",
                               f"hydra.sweep.dir={tmp_path / 'sweep'}"], CONF)
    if installed["optuna"].startswith("2.") and int(installed["sqlalchemy"].split(".")[0]) >= 2:
        assert line == (f"hydra.sweeper.storage={storage}: optuna {installed['optuna']}'s database storage needs "
                        f"SQLAlchemy < 2, installed: {installed['sqlalchemy']} (its first write fails); valid: null "
                        "(the study in memory; analyze.py reads a search from its job folders)")
        import optuna

        with pytest.raises(Exception):  # what the check stands in for: optuna itself cannot use it
            optuna.create_study(storage=storage).optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    else:
        assert line is None


@pytest.mark.parametrize("choice, target, seed", [
    (None, "optuna.samplers.TPESampler", 0), ("seeded_random", "optuna.samplers.RandomSampler", 0),
    ("seeded_cmaes", "optuna.samplers.CmaEsSampler", 0), ("grid", "optuna.samplers.GridSampler", None),
    ("random", "optuna.samplers.RandomSampler", None)])
def test_every_sampler_composes_and_the_presets_are_seeded(choice, target, seed):
    """The preset set sampler.seed itself, so hydra/sweeper/sampler=grid (no seed field) failed to
    compose ("Key 'seed' not in 'SamplerConfig'"); the seeds now live in the seeded choices."""
    fixed = ["hydra/sweeper=optuna_search", "objective=val_acc", "dataset.val_size=300"]
    fixed += [f"hydra/sweeper/sampler={choice}"] if choice else []
    assert check_command_line(["-m", *fixed, "init.factor=choice(1,2)"], CONF) is None
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # compose takes no sweep override
        sampler = compose("config", overrides=fixed, return_hydra_config=True).hydra.sweeper.sampler
    assert sampler._target_ == target and sampler.get("seed") == seed


def _search_config(*overrides: str):
    """The sweep's base config as the launch composes it (task overrides kept, sweeps unexpanded)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN,
                                                           with_log_configuration=False)


GRID = ["hydra/sweeper=optuna_search", "hydra/sweeper/sampler=grid", "objective=train_acc"]


@pytest.mark.parametrize("overrides, trials, grid", [
    (GRID + ["activation=choice(relu,tanh)", "init.factor=choice(1,2,4)"], 2 * 3, 6),
    (GRID + ["activation=choice(relu,tanh)", "depth=range(2,5)", "hydra.sweeper.n_trials=100"], 2 * 3, 6),
    (GRID + ["activation=choice(relu,tanh)", "init.factor=choice(1,2,4)", "hydra.sweeper.n_trials=4"], 4, 6),
    (GRID[:1] + GRID[2:] + ["init.factor=interval(1,4)", "hydra.sweeper.n_trials=5"], 5, None),
])
def test_the_sweep_counts_the_trials_the_plugin_will_run(overrides, trials, grid):
    """The grid sampler's progress read "search of ? trials": the plugin cuts n_trials to the
    grid's size (every combination of the listed values: 2 activations x depths 2, 3, 4)."""
    config = _search_config(*overrides)
    assert trial_count(config) == trials and grid_size(config) == grid


def test_a_grid_search_checks_every_point_of_its_grid_before_the_first_trial():
    """hydra/sweeper/sampler=grid over batch_size=range(5,12) with a BatchNorm MLP on digits' 1337
    training samples (val_size=100): only the corners 5 and 11 were checked, and the trial of
    batch_size 8 (1337 = 167 * 8 + 1) failed with a traceback. A grid's trials are known before
    it starts: each point is now checked (corners, as before, for the other samplers)."""
    from initlab.config import ConfigError
    from initlab.sweeps import search_jobs, validate_jobs

    fixed = ["dataset.val_size=100", "model.norm=batchnorm", "epochs=1", "depth=2", "model.width=8"]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def compose_sweep(*overrides: str):
            return GlobalHydra.instance().hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN,
                                                               with_log_configuration=False)

        grid = compose_sweep(*GRID, *fixed, "batch_size=range(5,12)")
        jobs = search_jobs(grid)
        assert [job[-1] for job in jobs] == [f"batch_size={b}" for b in range(5, 12)]
        with pytest.raises(ConfigError, match=r"^job .* batch_size=8: batch_size=8 leaves a last batch of 1 of the "
                                              r"1337 training samples, .* e\.g\. 7 or 9$"):
            validate_jobs(grid, jobs)
        tpe = compose_sweep(*GRID[:1], *GRID[2:], *fixed, "batch_size=range(5,12)")
        # the plugin reads range(5,12) as IntUniformDistribution(5, 12), both ends drawn, for the other samplers
        assert [job[-1] for job in search_jobs(tpe)] == ["batch_size=5", "batch_size=12"]


@pytest.mark.slow
def test_a_grid_cut_short_says_its_points_are_drawn_at_random(tmp_path):
    """n_trials=2 of a 4-point grid: three reruns trained three different pairs, nothing said so."""
    done = run_train("-m", *GRID, "dataset=moons", "epochs=1", "depth=2,3", "optimizer.lr=0.01,0.1",
                     "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 0, done.describe()
    assert ("the grid sampler runs 2 of its 4 points, chosen at random and unseeded (optuna's GridSampler): a rerun "
            "may train others; n_trials >= 4 runs the whole grid") in done.stdout + done.stderr


def test_a_grid_over_an_interval_is_refused_in_one_line():
    """Was the plugin's 'GridSampler only supports discrete distributions.' traceback."""
    line = check_command_line(["-m", *GRID, "optimizer.lr=interval(0.01,0.1)"], CONF)
    assert line == ("hydra/sweeper/sampler=grid lists every value, but optimizer.lr is searched over an interval "
                    "(UniformDistribution); valid: optimizer.lr=choice(a,b,...) or optimizer.lr=range(start,stop,step)")


@pytest.mark.slow
def test_a_search_space_corner_out_of_range_or_a_missing_split_is_refused_before_any_trial(tmp_path):
    """Checked by the sweep callback on the search space's corners: no folder, exit 2, one line."""
    for args, line in ((["+experiment=he_factor_search", "optimizer.lr=interval(-1,0.1)"],
                        "optimizer.lr must be finite and > 0, got -1.0"),
                       (["+experiment=he_factor_search", "optimizer.lr=tag(log,interval(-1,0.1))"],
                        "The `low` value must be larger than 0 for a log distribution (low=-1.0, high=0.1)"),
                       (["+experiment=he_factor_search", "dataset.val_size=0"],
                        "objective=val_acc needs a validation split: set dataset.val_size > 0")):
        done = run_train("-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}")
        errors = [l for l in done.stderr.splitlines() if l.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and errors[0].endswith(line), done.describe()
        assert not (tmp_path / "sweep").exists()


# --- a real search through train.py and analyze.py --------------------------------------------
@pytest.mark.slow
def test_a_tiny_optuna_search_returns_each_jobs_objective_and_the_report_names_the_best_trial(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_train("-m", *TINY, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.describe()
    log = done.stdout + done.stderr
    assert "[sweep] 3/3 jobs done" in log and "[sweep] finished in" in log and "3 completed, 0 diverged" in log
    assert "search of 3 trials" in log and "alembic" not in log  # Optuna's database library's setup lines
    jobs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert len(jobs) == 3
    values = {}
    for job in jobs:  # the study got each job's final validation accuracy, read here from its own records
        result = json.loads((job / "result.json").read_text())
        assert result["status"] == "completed" and result["data"]["n_val"] == 300
        values[job.name] = result["final"]["val_acc"]
    best_job = max(values, key=values.get)  # ties: the first trial wins in Optuna, checked below
    found = OmegaConf.load(sweep / "optimization_results.yaml")
    assert found.best_value == pytest.approx(values[best_job])
    assert (sweep / "multirun.yaml").is_file()
    assert analyze.main([str(sweep)]) == 0
    out = sweep / "analysis"
    assert (out / "figures" / "search_sweep.png").is_file()
    report = (out / "report.md").read_text()
    line = next(l for l in report.splitlines() if "Best trial:" in l)
    nums = {job.name: OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.job.num for job in jobs}
    best_num = min(nums[j] for j in values if values[j] == values[best_job])
    best_job = next(j for j in values if nums[j] == best_num)
    assert f"Best trial: {best_num} (init.factor=" in line and f"job {best_job};" in line
    assert all(f"{k}={found.best_params[k]:.4g}" in line for k in ("init.factor", "optimizer.lr"))
    assert SEARCH_LR in report and "every figure is drawn once per value" not in report
    other = next(j for j in jobs if j.name != best_job)  # the README's way to draw another trial
    factor = OmegaConf.load(other / ".hydra" / "config.yaml").init.factor
    assert analyze.main([str(sweep), f"init.factor={factor}"]) == 0
    report = next(sweep.glob("analysis_*")).joinpath("report.md").read_text()
    line = next(l for l in report.splitlines() if "Best trial:" in l)
    assert "each of 3 trials against" in line and "repeated" not in line and f"job {best_job};" in line
    assert f"Best trial: {best_num} (init.factor=" in line
    assert f"the filters kept 1 of its 3 trials (trial(s) {nums[other.name]}): the other figures show trial " \
           f"{nums[other.name]}" in line


@pytest.mark.slow
def test_diverged_trials_are_complete_trials_with_the_worst_value(tmp_path):
    """SGD at lr 1e6 diverges: the study records 0 accuracy instead of failing, and the summary
    counts the jobs as diverged (read from their result.json, not from what they returned)."""
    sweep = tmp_path / "sweep"
    done = run_train("-m", *TINY, "hydra.sweeper.n_trials=2", "optimizer.lr=interval(1e6,1e7)",
                     f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.describe()
    assert "0 completed, 2 diverged, 0 failed" in done.stdout + done.stderr
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == 0.0


@pytest.mark.slow
def test_an_optuna_search_on_the_batched_launcher_trains_a_batch_of_trials_as_one_ensemble(tmp_path):
    """Optuna asks n_jobs trials at a time; they differ only in init.factor and lr, so the batched
    launcher trains them as one group and still hands each trial its own objective."""
    sweep = tmp_path / "sweep"
    done = run_train("-m", *TINY, "hydra/launcher=batched", "hydra.sweeper.n_jobs=3", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.describe()
    assert "[batched] group 1: 3 jobs" in done.stdout + done.stderr
    values = [json.loads(p.read_text())["final"]["val_acc"] for p in sweep.glob("*/result.json")]
    assert len(values) == 3
    found = OmegaConf.load(sweep / "optimization_results.yaml")
    assert found.best_value == pytest.approx(max(values))
