"""Mutation check: plant plausible bugs one at a time and make sure the tests notice.

Each mutation replaces one short snippet (which must occur exactly once in its file) in a
temporary copy of the repository, runs the tests that should catch it there, and restores the
file. A mutation is *killed* when those tests fail, *survived* when they pass (a test gap), and
*not applicable* when its snippet no longer matches the code (refit it after a refactor). The
exit status is 0 only when every mutation is killed.

Not part of the normal suite (pytest collects only test_*.py): run ``make mutate``, or

    python tests/mutations.py               # all mutations (CPU heavy: run it with nice)
    python tests/mutations.py --list        # names, files and test selections
    python tests/mutations.py --only NAME   # one mutation (repeat --only for several)
    python tests/mutations.py --baseline    # first check the selected tests pass unmutated
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", ".pytest_cache", "__pycache__", "*.pyc")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments, relative to the repository root
    why: str


TRAINING = "tests/test_training_values.py"
JACOBIAN = "tests/test_jacobian_values.py"
ANALYSIS = "tests/test_analysis_values.py"
STATS0 = ("tests/test_statistics.py", "-k", "epoch0")

MUTATIONS = [
    # the four from issue 13
    Mutation("epoch_loss_per_sample", "initlab/train/job.py",
             "sums.loss.item() / sums.steps", "sums.loss.item() / sums.samples",
             (TRAINING, "-k", "means_over_the_steps"), "epoch train loss divided by samples, not steps"),
    Mutation("grad_norm_train_summed", "initlab/train/job.py",
             "(sums.grad_norms / sums.steps).tolist()", "sums.grad_norms.tolist()",
             (TRAINING, "-k", "means_over_the_steps"), "grad_norm_train summed over steps"),
    Mutation("jacobian_pred_wrong_layer", "initlab/train/predictions.py",
             '["jac_msv_pred"][exp.depth - 1]', '["jac_msv_pred"][exp.depth - 2]',
             (JACOBIAN, "-k", "prediction"), "mean_sq_sv_pred from the layer below"),
    Mutation("epochs_to_95_test_from_train", "initlab/analysis/tables.py",
             '"test_acc", 0.95 * out["final_test_acc"]', '"train_acc", 0.95 * out["final_train_acc"]',
             (ANALYSIS, "-k", "convergence or follows_the_test_curve"), "epochs_to_95_final_test from train accuracy"),
    # training loop and records
    Mutation("train_acc_full_batches", "initlab/train/job.py",
             "sums.correct.item() / sums.samples", "sums.correct.item() / (sums.steps * exp.batch_size)",
             (TRAINING, "-k", "means_over_the_steps"), "train accuracy assumes every batch is full"),
    Mutation("grad_norm_of_biases", "initlab/measure/probes.py",
             'named = [t.weight for t in probe.taps.values() if t.weight is not None]',
             'named = [t.weight[:-len("weight")] + "bias" for t in probe.taps.values() if t.weight is not None]',
             (TRAINING, "-k", "means_over_the_steps"), "grad_norm_train of the bias gradients"),
    Mutation("total_grad_norm_summed_squares", "initlab/train/loop.py",
             "total += torch.linalg.vector_norm(norms)",
             "total += norms.sum()",
             (TRAINING, "-k", "means_over_the_steps"), "total gradient norm as the sum of per-parameter norms"),
    Mutation("resume_keeps_half_rows", "initlab/records.py",
             "            os.truncate(self.path, size)\n", "            pass\n",
             ("tests/test_records_append.py", "-k", "half_written"), "a resume keeps a killed epoch's half row"),
    Mutation("post_var_of_the_next_layer", "initlab/theory.py",
             "post_var = second.mean(axis=1) - post_mean**2",
             "post_var = np.roll(second, -1, 0).mean(axis=1) - post_mean**2",
             ("tests/test_theory.py", "-k", "per_layer_maps"), "post_var_pred from the next layer's moments"),
    Mutation("delta_gains_shifted", "initlab/theory.py",
             "delta_sq = _products_to_output(gains) * out_sq",
             "delta_sq = _products_to_output(np.roll(gains, 1, 0)) * out_sq",
             ("tests/test_theory.py", "-k", "per_layer_maps"), "delta_rms_pred from the neighbouring layers' gains"),
    Mutation("killed_writes_temporary_kept", "initlab/train/job.py",
             "for name in records.remove_temporaries(job_dir):", "for name in []:",
             ("tests/test_resume.py", "-k", "interrupted_write"), "a resumed job keeps a killed write's temporary"),
    Mutation("unkept_checkpoint_left", "initlab/train/job.py",
             'if finished.get("checkpoint") in UNKEPT and self.checkpoint_path.is_file():', "if False:",
             ("tests/test_resume.py", "-k", "checkpoint_left"),
             "a finished job keeps a checkpoint its run did not keep"),
    Mutation("nesterov_dropped", "initlab/train/loop.py",
             "momentum=cfg.momentum, nesterov=cfg.nesterov,", "momentum=cfg.momentum,",
             (TRAINING, "-k", "nesterov"), "optimizer.nesterov never reaches torch"),
    Mutation("rmsprop_alpha_dropped", "initlab/train/loop.py",
             "alpha=cfg.alpha, eps=cfg.eps,", "eps=cfg.eps,",
             (TRAINING, "-k", "rmsprop"), "RMSprop alpha never reaches torch"),
    Mutation("adam_eps_dropped", "initlab/train/loop.py",
             "betas=tuple(cfg.betas), eps=cfg.eps,", "betas=tuple(cfg.betas),",
             (TRAINING, "-k", "adam"), "Adam eps never reaches torch"),
    Mutation("adamw_is_adam", "initlab/train/loop.py",
             '"adamw": torch.optim.AdamW', '"adamw": torch.optim.Adam',
             (TRAINING, "-k", "adamw"), "adamw's decay coupled to the gradient"),
    Mutation("sgd_weight_decay_dropped", "initlab/train/loop.py",
             'weight_decay=cfg.weight_decay)\n    if cfg.name == "rmsprop":', ')\n    if cfg.name == "rmsprop":',
             (TRAINING, "-k", "sgd-decay or nesterov"), "SGD weight decay never reaches torch"),
    Mutation("adam_betas_dropped", "initlab/train/loop.py",
             "lr=cfg.lr, betas=tuple(cfg.betas), ", "lr=cfg.lr, ",
             (TRAINING, "-k", "adam"), "Adam betas never reach torch"),
    Mutation("eval_loss_mean_then_divided", "initlab/train/loop.py",
             'loss_fn(loss, logits, yb, reduction="sum")', "loss_fn(loss, logits, yb)",
             (TRAINING, "-k", "means_over_the_steps"), "test loss averaged twice"),
    Mutation("csv_floats_rounded", "initlab/records.py",
             "repr(v) if isinstance(v, float)", 'f"{v:.6g}" if isinstance(v, float)',
             (TRAINING, "-k", "round_trip"), "records floats to 6 significant digits"),
    Mutation("probe_columns_swapped", "initlab/records.py",
             '("preact_mean", "preact_std", "preact_sq",', '("preact_std", "preact_mean", "preact_sq",',
             STATS0, "column names out of the statistics' order"),
    # probe statistics
    Mutation("preact_std_sample", "initlab/measure/probes.py",
             "h.mean(), h.std(correction=0)", "h.mean(), h.std()",
             STATS0, "sample instead of population std"),
    Mutation("delta_rms_without_sqrt", "initlab/measure/probes.py",
             "d.pow(2).mean().sqrt()", "d.pow(2).mean()",
             STATS0, "delta_rms is the mean square"),
    Mutation("frac_zero_nonpositive", "initlab/measure/probes.py",
             "return _share(a.numel() - torch.count_nonzero(a), a.numel())",
             "return _share(torch.count_nonzero(a <= 0), a.numel())",
             STATS0, "frac_zero counts negative activations"),
    Mutation("saturation_threshold", "initlab/choices/activations.py",
             "abs(post) > 0.99", "abs(post) > 0.95",
             ("tests/test_physics.py", "-k", "saturates"), "tanh saturation at 0.95"),
    # inits
    Mutation("fan_in_is_fan_out", "initlab/choices/inits.py",
             'return fan_in if mode == "fan_in" else fan_out', 'return fan_out if mode == "fan_in" else fan_in',
             ("tests/test_inits.py",), "fan modes swapped"),
    Mutation("uniform_bound_factor", "initlab/choices/inits.py",
             "math.sqrt(3.0 * factor / fan(weight, mode))", "math.sqrt(factor / fan(weight, mode))",
             ("tests/test_inits.py",), "uniform bound without the 3 (variance factor/3)"),
    Mutation("he_factor_ignored", "initlab/choices/inits.py",
             '"he_normal", lambda w, c, layer=None: _variance_normal(w, c.factor,',
             '"he_normal", lambda w, c, layer=None: _variance_normal(w, 2.0,',
             ("tests/test_inits.py",), "init.factor never reaches he_normal"),
    # Jacobians
    Mutation("jacobian_pred_all_probe_inputs", "initlab/train/predictions.py",
             "x_probe[:probe_count(width)].pow(2)", "x_probe.pow(2)",
             (JACOBIAN, "-k", "prediction"), "Jacobian predicted for other inputs than it is measured on"),
    Mutation("jacobian_every_offset", "initlab/train/callbacks.py",
             "end.epoch % every == 0", "end.epoch % every == 1",
             (JACOBIAN, "-k", "jacobian_every"), "spectra at the wrong epochs"),
    Mutation("probe_count_uncapped", "initlab/measure/jacobian.py",
             "min(32, 2048 // width)", "2048 // width",
             (JACOBIAN, "-k", "jacobian_every"), "probe count without its cap of 32"),
    Mutation("hidden_jacobian_skips_a_layer", "initlab/measure/jacobian.py",
             "zip(model.hidden[1:], model.acts)", "zip(model.hidden[2:], model.acts)",
             (JACOBIAN, "-k", "matches_numpy"), "hidden Jacobian from h^2, not h^1"),
    Mutation("sv_std_sample", "initlab/measure/jacobian.py",
             "flat.std(correction=0)", "flat.std()",
             (JACOBIAN, "-k", "matches_numpy"), "sample instead of population std of singular values"),
    Mutation("var_sq_sv_sample", "initlab/measure/jacobian.py",
             "sq.var(correction=0)", "sq.var()",
             (JACOBIAN, "-k", "matches_numpy"), "sample variance of squared singular values"),
    # theory
    Mutation("chi1_half", "initlab/theory.py",
             "return float(sigma_w2 * act.grad_moment(q))", "return float(0.5 * sigma_w2 * act.grad_moment(q))",
             (ANALYSIS, "-k", "critical or ordered"), "a stray factor in chi1"),
    Mutation("sigma_b2_is_std", "initlab/theory.py",
             "return float(bias_std) ** 2", "return float(bias_std)",
             (ANALYSIS, "-k", "ordered"), "sigma_b^2 taken as the bias std"),
    Mutation("quadrature_agrees_too_coarse", "initlab/choices/gaussian.py",
             " & (coarse * root[rows] <= _X_STEP)", "",
             ("tests/test_theory.py", "-k", "gelu_quadrature or halving"),
             "two rules too coarse to see phi's bend accepted as agreeing"),
    Mutation("quadrature_loose_agreement", "initlab/choices/gaussian.py",
             "_AGREE = 1e-10", "_AGREE = 1e-4",
             ("tests/test_theory.py", "-k", "halving"), "successive rules accepted when 1e-4 apart (kinks: 3e-5 off)"),
    Mutation("quadrature_zero_length_by_the_rule", "initlab/choices/gaussian.py",
             "zero = root == 0  # E f(0 z)", "zero = root < 0  # E f(0 z)",
             ("tests/test_theory.py", "-k", "critical_at_one"), "E f(0 z) from the rule's weights, 1e-16 short of f(0)"),
    Mutation("init_report_not_in_checkpoint", "initlab/train/state.py",
             "self.init_report = state.get(\"init_report\", self.init_report)", "pass",
             ("tests/test_resume.py", "-k", "restarts_init"), "a resumed restart reports attempt 0's init"),
    Mutation("spaced_checkpoint_misses_the_stop", "initlab/train/callbacks.py",
             "< self.every_s and not end.stop and", "< self.every_s and",
             ("tests/test_resume.py", "-k", "spaced"), "kept checkpoint.pt older than early stopping's last epoch"),
    Mutation("spaced_checkpoint_ignores_the_interval", "initlab/train/callbacks.py",
             "if now - self.saved_at < self.every_s and", "if now - self.saved_at < 0 and",
             ("tests/test_resume.py", "-k", "spaced"), "checkpoint_every_s changes nothing"),
    Mutation("twins_share_a_group", "hydra_plugins/initlab_batched_launcher/_core.py",
             "if configs[i].hydra.job.chdir or i in twins:", "if configs[i].hydra.job.chdir:",
             ("tests/test_batched_launcher.py", "-k", "sharing_a_folder"),
             "two jobs of one folder trained as members of one group"),
    Mutation("folder_not_locked", "initlab/records.py",
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
             ("tests/test_resume.py", "-k", "one_running"), "a second job writes into a folder another job holds"),
    Mutation("sweep_twins_not_refused", "initlab/sweeps.py",
             "        if path not in first:", "        if True:",
             ("tests/test_sweeps.py", "-k", "twins"), "a sweep over threads=1,2 runs two jobs into one folder"),
    Mutation("held_folder_marked_failed", "initlab/callbacks.py",
             "if not isinstance(error, FolderInUse):", "if True:",
             ("tests/test_resume.py", "-k", "held_folder"), "a refused job writes FAILED into the folder another job fills"),
    Mutation("group_takes_any_value", "initlab/sweeps.py",
             "if o.is_delete() or not isinstance(o.value(), str):", "if False:",
             ("tests/test_bad_input.py", "-k", "one_choice"), "activation=null crashes, activation=[a,b] runs b"),
    Mutation("custom_subdir_read_as_the_sweeps", "initlab/sweeps.py",
             "job = root if reads_only_the_job else copy.deepcopy(root)", "job = root; reads_only_the_job = True",
             ("tests/test_sweeps.py", "-k", "per_job"), "subdir=${seed} read as the sweep's seed for every job"),
    Mutation("sweep_job_unknown_choice_unnamed", "initlab/sweeps.py",
             "if o.value() not in options:", "if False:",
             ("tests/test_sweeps.py", "-k", "no_choice"), "-m activation=tanh,foo does not list the choices"),
    Mutation("bool_reads_any_integer", "initlab/sweeps.py",
             'raise ConfigError(f"{o.input_line}: not a bool; valid: true or false")', "pass",
             ("tests/test_bad_input.py", "-k", "command_line_errors_are_one_line"),
             "optimizer.nesterov=2 runs with nesterov true"),
    Mutation("one_run_spelt_twice", "initlab/sweeps.py", "if other != num:", "if False:",
             ("tests/test_sweeps.py", "-k", "spelt_two_ways"),
             "-m depth=2,02 trains one run twice, counted as two seeds"),
    Mutation("refused_run_rewrites_hydra", "initlab/cli.py", "check_folder(exp, Path(run_dir))", "None",
             ("tests/test_resume.py", "-k", "before_hydra_writes"),
             "a rerun of other settings into a finished folder: Hydra rewrites its .hydra before the job refuses"),
    Mutation("refused_sweep_job_rewrites_hydra", "initlab/sweeps.py", "check_folder(exp, sweep_dir / folder)",
             "None", ("tests/test_resume.py", "-k", "before_hydra_writes"),
             "a sweep's job of other settings in a finished folder: Hydra rewrites its .hydra before the job refuses"),
    Mutation("one_run_counted_twice", "initlab/analysis/tables.py", "if twin != job:", "if False:",
             ("tests/test_analysis_models.py", "-k", "two_folders"),
             "a rerun into another folder counts as one more seed in every interval"),
    Mutation("diverged_run_converges", "initlab/analysis/tables.py",
             "out.update(dict.fromkeys(SPEED_COLUMNS, math.nan))", "pass",
             ("tests/test_analysis_models.py", "-k", "diverged"), "a run diverged at epoch 1 converged at epoch 1"),
    Mutation("analysis_into_a_job_folder", "analyze.py", '    if analysis.is_job(out) or ".hydra" in out.parts:',
             '    if ".hydra" in out.parts:',
             ("tests/test_analyze_files.py", "-k", "job_is_refused"),
             "analyze.py --out JOB replaces the job's own epochs.csv and layers.csv"),
    Mutation("stale_figures_kept", "initlab/analysis/figures/base.py",
             "        (directory / name).unlink(missing_ok=True)", "        pass",
             ("tests/test_analyze_files.py", "-k", "earlier_analysis"),
             "a figure the report no longer shows stays in figures/"),
    Mutation("shaping_checked_only_at_build", "initlab/models/__init__.py",
             "    kernel_shaping.check_solvable(exp)\n", "",
             ("tests/test_sweeps.py", "-k", "out_of_reach"),
             "a sweep job with TAT targets out of reach at its depth fails after 'all configs valid'"),
    Mutation("repeat_not_counted_skipped", "initlab/train/job.py", "                mark_skipped(job_dir)\n", "",
             ("tests/test_search.py", "-k", "repeated_trials"), "an optimizing sweeper's skipped repeats count as run"),
    Mutation("shaped_phase_from_small_lengths", "initlab/train/predictions.py",
             "kept = kernel_shaping.kept_length(model, sigma_w2, sigma_b2)", "kept = None",
             ("tests/test_kernel_shaping.py", "-k", "solved_parameters"),
             "a DKS net's chi_1 at the stable q* the search finds, not at the q = 1 it keeps"),
    Mutation("transform_ignores_set_slope", "initlab/config/activation.py",
             "self.transform == Transform.none or self.negative_slope == LEAKY_RELU_SLOPE", "True",
             ("tests/test_kernel_shaping.py", "-k", "slope_the_transform"),
             "a leaky ReLU slope set beside tat/dks is accepted and silently replaced by dks's"),
    Mutation("typed_refusal_without_range", "initlab/config/ranges.py",
             "valid = field_takes(schema, key)", "valid = None",
             ("tests/test_bad_input.py", "-k", "null_for and (epochs or lr)"),
             "epochs=null names the value but not what epochs takes"),
    Mutation("list_item_refusal_names_the_item", "initlab/config/ranges.py",
             "if parent is not None and getattr(parent, \"_metadata\", None) is not None:", "if False:",
             ("tests/test_bad_input.py", "-k", "command_line_errors_are_one_line"),
             "model.channels=[a,b] refused as model.channels[0], without what the list takes"),
    # analysis columns
    Mutation("misfit_mean", "initlab/analysis/tables.py",
             "float(ratio.abs().median())", "float(ratio.abs().mean())",
             (ANALYSIS, "-k", "convergence"), "misfit as the mean, not the median"),
    Mutation("misfit_counts_output_layer", "initlab/analysis/tables.py",
             'layers["kind"] == "hidden")]', 'layers["kind"].isin(["hidden", "output"]))]',
             (ANALYSIS, "-k", "convergence"), "misfits include the output layer"),
    Mutation("epoch0_counts_as_trained", "initlab/analysis/tables.py",
             'trained = epochs[epochs["epoch"] >= 1]  # epoch 0', 'trained = epochs[epochs["epoch"] >= 0]  # epoch 0',
             (ANALYSIS, "-k", "convergence"), "the state at init counts as a trained epoch"),
    Mutation("best_loss_is_final", "initlab/analysis/tables.py",
             'out[f"best_{split}_loss"] = _with_final(trained, final, f"{split}_loss").min()',
             'out[f"best_{split}_loss"] = final[f"{split}_loss"]',
             (ANALYSIS, "-k", "convergence"), "best loss taken as the final one"),
    # P5: divergence, resume, validation, sweeps, analysis files and filters
    Mutation("divergence_ignores_probe", "initlab/train/callbacks.py",
             "bad = ~torch.isfinite(stats.values) & stats.present", "bad = torch.zeros_like(stats.present)",
             ("tests/test_divergence.py", "-k", "probe_statistic"), "only losses checked for divergence"),
    Mutation("resume_ignores_settings", "initlab/resume.py",
             "    if diffs:\n", "    if False:\n",
             ("tests/test_resume.py", "-k", "refuse"), "a checkpoint resumed whatever its settings"),
    Mutation("frac_dead_is_frac_zero", "initlab/measure/probes.py",
             "return _share(torch.count_nonzero(peak == 0), peak.numel())", "return _frac_zero(a)",
             ("tests/test_statistics.py", "-k", "frac_dead"), "frac_dead counts zero entries"),
    Mutation("finite_check_dropped", "initlab/config/ranges.py",
             "        if not math.isfinite(value):\n            return False\n", "",
             ("tests/test_bad_input.py", "-k", "non_finite"), "NaN/inf pass the range checks"),
    Mutation("row_counts_unchecked", "initlab/analysis/tables.py",
             "        if have != expected[name]:", "        if have > expected[name]:",
             ("tests/test_analyze_files.py", "-k", "shorter or missing"), "cut files read silently"),
    Mutation("float_filter_exact", "initlab/analysis/filters.py",
             "rel_tol=REL_TOL, abs_tol=0.0", "rel_tol=0.0, abs_tol=0.0",
             ("tests/test_analyze_files.py", "-k", "float_filters"), "float filters compare exactly"),
    Mutation("long_folder_names_kept", "initlab/names.py",
             "    if len(name.encode()) <= limit:", "    if True:",
             ("tests/test_sweeps.py", "-k", "long_folder"), "job folder names never shortened"),
    Mutation("log_labels_not_thinned", "initlab/analysis/log_ticks.py",
             "            if pixels[i] - last < room:", "            if False:",
             ("tests/test_figures.py", "-k", "log_axis_labels"), "log tick labels drawn on each other"),
    Mutation("log_ticks_one_in_range", "initlab/analysis/log_ticks.py",
             "            if len(inside) >= MIN_TICKS:", "            if len(inside) >= 1:",
             ("tests/test_figures.py", "-k", "log_axis_labels or depth_3_log"),
             "a narrow log panel with a single labelled tick"),
    # the analysis of any model (P6)
    Mutation("convergence_ignores_validation", "initlab/analysis/tables.py",
             'metric = "val_acc" if "val_acc" in epochs', 'metric = "test_acc" if "val_acc" in epochs',
             ("tests/test_analysis_models.py", "-k", "convergence_epoch_is"), "convergence epoch from the test curve"),
    Mutation("convergence_counts_epoch0", "initlab/analysis/tables.py",
             'trained = epochs[epochs["epoch"] >= 1]\n    target =', 'trained = epochs\n    target =',
             ("tests/test_analysis_models.py", "-k", "convergence_epoch_is"), "the untrained epoch 0 counts as converged"),
    Mutation("figures_pool_models", "initlab/analysis/figures/base.py",
             "if len(self.models) <= 1:\n            return data, by, order", "if True:\n            return data, by, order",
             ("tests/test_analysis_models.py", "-k", "pools"), "grid and depth panels average different models"),
    Mutation("old_records_output_as_hidden", "initlab/analysis/tables.py",
             'np.where(layers["layer"] <= depth, "hidden", "output")', 'np.where(layers["layer"] <= depth + 1, "hidden", "output")',
             ("tests/test_analysis_models.py", "-k", "old_mlp"), "old MLP records: the output layer read as hidden"),
    Mutation("failed_reason_ignored", "initlab/analysis/tables.py",
             "    if failed.is_file() and _written_ns(failed) >= _written_ns(finished):", "    if False:",
             ("tests/test_figures.py", "-k", "failed_job"), "a failed job listed as unfinished"),
    # per-step records, distributions, the loss choice
    Mutation("steps_numbered_from_zero", "initlab/train/loop.py",
             "step = first_step + i", "step = first_step + i - 1",
             ("tests/test_steps_records.py", "-k", "every_logged_step"), "steps.csv numbers steps from 0"),
    Mutation("mse_summed_over_classes", "initlab/losses.py",
             "(logits - target).pow(2).mean(dim=1)", "(logits - target).pow(2).sum(dim=1)",
             ("tests/test_steps_records.py", "-k", "mse"), "MSE summed, not averaged, over the classes"),
    Mutation("quantile_lower_order_statistic", "initlab/measure/distributions.py",
             "out = a + (b - a) * (pos - lo)", "out = a + 0 * (pos - lo)",
             ("tests/test_distributions.py", "-k", "equal_numpy"), "quantiles without interpolation"),
    Mutation("histogram_over_all_entries", "initlab/measure/distributions.py",
             "return counts / finite.sum()", "return counts / v.numel()",
             ("tests/test_distributions.py", "-k", "equal_numpy"), "histogram fractions of all entries, not the finite ones"),
    Mutation("distributions_every_offset", "initlab/train/callbacks.py",
             "if not self.every or end.epoch % self.every:", "if not self.every or (end.epoch + 1) % self.every:",
             ("tests/test_distributions.py", "-k", "a_job_writes"), "distributions at the wrong epochs"),
    Mutation("filter_values_read_as_yaml", "initlab/analysis/filters.py",
             "for parse in (int, float, ast.literal_eval, yaml.safe_load):",
             "for parse in (ast.literal_eval, yaml.safe_load):",
             ("tests/test_analyze_files.py", "-k", "name_one_folder"), "depth=010 filters depth 8 (YAML octal)"),
    Mutation("hidden_jacobian_skips_pln", "initlab/measure/jacobian.py",
             "model.hidden[0](model.network_input(x))", "model.hidden[0](x.flatten(1))",
             ("tests/test_jacobian.py", "-k", "normalized"), "a shaped net's Jacobian from un-normalized inputs"),
    Mutation("no_theory_read_as_infinite", "initlab/analysis/tables.py",
             'if result.get("theory_reason") or not math.isfinite(out["sigma_w2"]):', "if False:",
             ("tests/test_analysis_models.py", "-k", "forward_order"), "a resmlp's depth scales read as infinite"),
    Mutation("accuracy_of_nan_logits", "initlab/train/job.py",
             '                row[f"{split}_acc"] = math.nan', "                pass",
             ("tests/test_divergence.py",), "a diverged epoch's accuracy is argmax(NaN) = class 0"),
    Mutation("no_checkpoint_of_zero_epochs", "initlab/train/callbacks.py",
             "if end.diverged or (end.epoch == 0 and self.epochs > 0):", "if end.diverged or end.epoch == 0:",
             ("tests/test_resume.py", "-k", "kept_checkpoint_extends"), "epochs=0 checkpoint=last keeps nothing"),
    Mutation("label_range_unchecked", "initlab/data/tensors.py",
             "if len(y) and not 0 <= int(y.min()) <= int(y.max()) < data.n_classes:", "if False:",
             ("tests/test_data.py", "-k", "do_not_fit"), "labels beyond the classes fail in training"),
    Mutation("cosine_run_continued_to_more_epochs", "initlab/resume.py",
             "if diffs and not others and schedule_follows_epochs(current):", "if False:",
             ("tests/test_resume.py", "-k", "cosine"), "a cosine run's lr climbs back up when extended"),
    Mutation("members_counted_when_the_group_ends", "initlab/ensemble/group.py",
             "                on_end(todo[j], results[todo[j]])\n", "",
             ("tests/test_batched_launcher.py", "-k", "ends_early"), "a diverged member counted only with its group"),
    Mutation("stop_at_the_last_epoch", "initlab/train/callbacks.py",
             "if end.epoch < self.epochs and state.stopper.should_stop():", "if state.stopper.should_stop():",
             ("tests/test_schedule_stopping.py", "-k", "patience"), "stopped_epoch set for a run that went to epochs"),
    Mutation("enum_text_is_its_python_name", "initlab/config/enums.py",
             "        return self.value\n", "        return Enum.__str__(self)\n",
             ("tests/test_sweeps.py", "-k", "enum_setting"), "${device} names a folder Device.cpu"),
    Mutation("split_sizes_checked_per_job", "initlab/sweeps.py",
             "            check_sizes(experiments[-1].dataset, files_here=files_here)\n", "",
             ("tests/test_sweeps.py", "-k", "bad_job_stops and val_split"),
             "a val_size the data cannot take runs jobs"),
    Mutation("loss_band_linear_on_log_axis", "initlab/analysis/figures/curves.py",
             '                row[1].set_yscale("log")  # before drawing', '                pass  # before drawing',
             ("tests/test_figures.py", "-k", "geometric_means"), "the loss curves' band dips below 0 on a log axis"),
    Mutation("act_std_colours_stretched", "initlab/analysis/figures/layers.py",
             "LogNorm(low, high if high > low else 10 * low)", "LogNorm(low, max(high, 10 * low))",
             ("tests/test_figures.py", "-k", "colours_span"), "a heatmap's log colours stretched past the data"),
    Mutation("svd_noise_recorded_as_singular_values", "initlab/measure/jacobian.py",
             "    sv = torch.where(sv < floor, torch.zeros_like(sv), sv)\n", "",
             ("tests/test_jacobian.py", "-k", "exactly_zero"), "a dead relu unit's null direction recorded as 1e-80"),
    Mutation("spectrum_below_axis_drawn_on_the_spine", "initlab/analysis/figures/theory.py",
             "if len(values) and lo <= values[-1]:", "if len(values) and values[-1] > 0:",
             ("tests/test_figures.py", "-k", "wholly_below"), "a vanishing init's spectrum hidden on the left spine"),
    Mutation("group_choice_read_as_a_bool_value", "initlab/sweeps.py",
             " or repository.group_exists(o.key_or_group):", ":",
             ("tests/test_bad_input.py", "-k", "optional_groups"), "train.py +experiment=grid_quick refused"),
    Mutation("users_files_bools_unchecked", "initlab/sweeps.py",
             "                check_file_bools(config.hydra.job.config_name, list(groups), composed[groups])\n", "",
             ("tests/test_sweeps.py", "-k", "users_config"), "a sweep's file with nesterov: 2 ran as true"),
    Mutation("searchpath_left_to_hydra", "initlab/sweeps.py",
             "    loader._process_config_searchpath(config_name, parsed, loader.repository)\n", "",
             ("tests/test_bad_input.py", "-k", "users_config"), "a choice in a hydra.searchpath folder refused"),
    Mutation("file_key_error_cut_at_its_colon", "initlab/cli.py",
             "return _file_key_message(str(err), *in_file.groups())", "return _first_line(str(err))",
             ("tests/test_bad_input.py", "-k", "preset_file"), "a preset's bad key named by no line"),
    Mutation("plateau_mode_against_its_monitor", "initlab/config/training.py",
             'return "max" if self.monitor.value.endswith("_acc") else "min"', 'return "min"',
             ("tests/test_schedule_stopping.py", "-k", "plateau-accuracy"), "the lr cut while accuracy improves"),
    Mutation("q_star_column_dropped_when_any", "initlab/analysis/report.py",
             '(t.runs[c].notna().any() or c == "q_star")', "t.runs[c].notna().any()",
             ("tests/test_analysis_values.py", "-k", "relu_he_is_critical"), "the Theory table without q* = any"),
    Mutation("phase_diagram_silent_on_zero_bias", "initlab/analysis/figures/theory.py",
             "        if sigma_b2 == 0 and not finite.all():", "        if False:",
             ("tests/test_figures.py", "-k", "without_bias"), "no curve read as any depth trains"),
    Mutation("lsuv_undone_by_its_branch_init", "initlab/config/experiment.py",
             '_require(self.init.name != "lsuv" or branch not in', "_require(True or branch not in",
             ("tests/test_lsuv.py", "-k", "branch"), "an LSUV report of layers then zeroed"),
    Mutation("restarts_logged_into_one_run", "initlab/train/tensorboard.py",
             "self._open(self.run_folder(attempt), purge_step=end.epoch)",
             "self._open(self.folder, purge_step=end.epoch)",
             ("tests/test_tensorboard.py", "-k", "each_restart"), "attempts drawn over each other, purged"),
    Mutation("search_settings_unchecked", "initlab/sweeps.py",
             "    _check_search_settings(config.hydra.sweeper)\n", "",
             ("tests/test_search.py", "-k", "optimize_nothing"), "n_trials=0 ends in Optuna's traceback"),
    Mutation("disk_data_left_to_every_job", "initlab/sweeps.py",
             'files_here = not str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher")',
             "files_here = False",
             ("tests/test_sweeps.py", "-k", "missing_dataset"), "each job of a sweep fails on missing files"),
    Mutation("plus_plus_hint_for_choices_without_the_key", "initlab/cli.py",
             "            lacking.append(c)\n", "",
             ("tests/test_bad_input.py", "-k", "base_config"), "the ++ hint leads to a refusal per job"),
    Mutation("imdb_review_encoding_unnamed", "initlab/data/sequences.py",
             "            except UnicodeDecodeError as err:", "            except KeyError as err:",
             ("tests/test_sequences.py", "-k", "utf8"), "a Latin-1 review: a traceback naming no file"),
    Mutation("mnist_gz_files_left_packed", "initlab/data/images.py",
             "    _unpack_gz(cfg.name, cls, expected, cfg.input_shape()[1:])\n", "",
             ("tests/test_data.py", "-k", "gz_files_alone"), "the official .gz files alone: 'files not found'"),
    Mutation("empty_gz_output_kept", "initlab/data/images.py",
             "    if damaged and _gz(damaged[0]).is_file():", "    if False:",
             ("tests/test_data.py", "-k", "empty_gz"), "an empty .gz: its empty output stayed and was blamed"),
    Mutation("replaced_gz_never_unpacked", "initlab/data/images.py",
             "(not path.exists() or stale(path))", "not path.exists()",
             ("tests/test_data.py", "-k", "empty_gz or newer_than"), "a replaced .gz was never read"),
    Mutation("corrupt_gz_traceback", "initlab/data/images.py",
             "except (OSError, EOFError, zlib.error) as err:", "except zlib.error as err:",
             ("tests/test_data.py", "-k", "corrupt_gz"), "a truncated .gz: an EOFError traceback"),
    Mutation("idx_truncation_reason_cut", "initlab/data/images.py",
             "needed = header + math.prod(dims)", "needed = size",
             ("tests/test_data.py", "-k", "damaged_are_named"), "a truncated idx file: a reshape error naming no file"),
    Mutation("idx_image_size_unchecked", "initlab/data/images.py",
             "if ndim == 3 and dims[1:] != tuple(image_size):", "if False:",
             ("tests/test_data.py", "-k", "another_size"), "32 x 32 MNIST images: a shape error mid-run, or none"),
    Mutation("idx_magic_unchecked", "initlab/data/images.py",
             'if head[:4] != magic.to_bytes(4, "big")[:len(head)]:', "if False:",
             ("tests/test_data.py", "-k", "unreadable_idx"), "an HTML page as an idx file: 'AssertionError'"),
    Mutation("imdb_directory_read_as_a_review", "initlab/data/sequences.py",
             'return sorted(path for path in folder.glob("*.txt") if path.is_file())',
             'return sorted(folder.glob("*.txt"))',
             ("tests/test_sequences.py", "-k", "directory_named_like"), "aclImdb/train/pos/dir.txt: IsADirectoryError"),
    Mutation("imdb_missing_folder_unnamed", "initlab/data/sequences.py",
             '(aclImdb_v1.tar.gz unpacked)", absent)', '(aclImdb_v1.tar.gz unpacked)")',
             ("tests/test_sequences.py", "-k", "missing_files"), "a missing test/neg: the layout, no folder named"),
    Mutation("vocab_size_beyond_the_reviews_accepted", "initlab/data/sequences.py",
             "    check_vocab_size(cfg.vocab_size, vocabulary)", "    pass",
             ("tests/test_sequences.py", "-k", "vocab_size_beyond"), "unused embedding rows; 2.5e9: 640 GB allocated"),
    Mutation("vocab_size_bound_off_by_one", "initlab/data/sequences.py",
             "    if vocab_size > largest:", "    if vocab_size > largest + 1:",
             ("tests/test_sequences.py", "-k", "vocab_size_beyond"), "one id more than the reviews give accepted"),
    Mutation("resnet18_records_the_unused_depth", "initlab/config/model.py",
             "    FIXED_DEPTH: ClassVar[Optional[int]] = 18\n", "",
             ("tests/test_resume.py", "-k", "resnet18"), "resnet18 labelled depth 5, trained twice"),
    Mutation("path_in_a_value_nests_folders", "initlab/sweeps.py",
             'fitted(override_dirname.replace("%", "%25").replace("/", "%2F"), limit)',
             "fitted(override_dirname, limit)",
             ("tests/test_sweeps.py", "-k", "path_in_a_value"), "dataset.root=/x made nested job folders"),
    Mutation("figure_name_past_the_file_system", "initlab/analysis/figures/base.py",
             "limit=NAME_MAX - 1 - longest_suffix)", "limit=10**6)",
             ("tests/test_figures.py", "-k", "fit_the_file_system"), "OSError: File name too long"),
    Mutation("shaping_broken_silently", "initlab/train/predictions.py",
             "    if kept is None and kernel_shaping.shaped_sites(model):", "    if False:",
             ("tests/test_kernel_shaping.py", "-k", "break_the_shaping"), "TAT under he_normal ran silently"),
    Mutation("trial_numbered_by_its_latest_repeat", "initlab/analysis/search.py",
             '"trial": latest if trained is None else int(trained),', '"trial": latest,',
             ("tests/test_search.py", "-k", "keeps_the_number"), "Best trial: 2 for trial 0's job"),
    Mutation("final_layernorm_unmeasured", "initlab/models/transformer.py",
             "        return self.site(super().forward(x))", "        return super().forward(x)",
             ("tests/test_models.py", "-k", "norm_site"), "the pre-norm transformer's last LayerNorm unmeasured"),
    Mutation("theory_grid_of_empty_panels", "initlab/analysis/figures/theory.py",
             "sparse = not wrap and len(pairs) < len(group) * len(inits)", "sparse = False",
             ("tests/test_figures.py", "-k", "one_per_pair"), "deep_plain's theory figure: 8 of 12 panels empty"),
    Mutation("eval_chunk_unbounded", "initlab/train/loop.py", "    rows = eval_rows(model, x[:1])\n",
             "    rows = EVAL_CHUNK\n", ("tests/test_eval_chunks.py",),
             "a CNN evaluated 8192 examples (512 MiB a layer)"),
    Mutation("eval_chunk_per_member", "initlab/ensemble/epoch.py", "eval_rows(stacked.base, x[:1], members=k)",
             "eval_rows(stacked.base, x[:1])", ("tests/test_eval_chunks.py",),
             "8 members' (8, 128, 8192) blocks page-faulted in every layer"),
    Mutation("switch_labelled_as_a_value", "initlab/analysis/tables.py", '            return name if value else ""',
             '            return f"{name}={value}"', ("tests/test_analysis_models.py", "-k", "switch"),
             'a CNN\'s legend read "orthogonal embedding=False"'),
    Mutation("derived_key_unexplained", "initlab/config/ranges.py", "        if isinstance(prop, property):",
             "        if False:", ("tests/test_bad_input.py", "-k", "command_line_errors_are_one_line"),
             "scheduler.mode=max refused without saying the mode follows the monitor"),
    Mutation("grid_trials_uncounted", "initlab/sweeps.py",
             "    return n_trials if size is None else min(n_trials, size)", "    return n_trials", ("tests/test_search.py", "-k", "counts_the_trials"),
             'the grid sampler\'s progress read "search of ? trials"'),
    Mutation("grid_over_an_interval_unchecked", "initlab/cli.py",
             "            grid_size(base)  # its grid sampler lists every searched value\n", "",
             ("tests/test_search.py", "-k", "grid_over"),
             "GridSampler only supports discrete distributions. (traceback)"),
    Mutation("attention_projection_unrecorded", "initlab/measure/probes.py",
             "p_name.endswith(\"weight\") and p.dim() >= 2", "p_name == \"weight\" and p.dim() >= 2",
             ("tests/test_every_model_job.py", "-k", "row_per_site and transformer"),
             "a transformer's in_proj_weight had no row in layers.csv, steps.csv or distributions.csv"),
    Mutation("best_below_the_restored_final", "initlab/analysis/tables.py",
             '        out[f"best_{split}_acc"] = _with_final(trained, final, f"{split}_acc").max()',
             '        out[f"best_{split}_acc"] = trained[f"{split}_acc"].max()',
             ("tests/test_analysis_models.py", "-k", "never_below"), "best_test_acc 0.103 beside final_test_acc 0.172"),
    Mutation("after_training_is_the_last_epoch", "initlab/analysis/figures/base.py",
             '            final = final.where(~restored, rows["job"].map(runs["best_epoch"]))\n', "",
             ("tests/test_analysis_models.py", "-k", "after_training"),
             "act_std_vs_layer drew the last epoch, the tables the restored best one"),
    Mutation("filter_given_twice_kept_the_last", "analyze.py", "        if key in given:", "        if False:",
             ("tests/test_analyze_files.py", "-k", "out_of_range"), "analyze.py sw depth=8 depth=3 analysed depth 3"),
    Mutation("group_sizes_out_of_order", "hydra_plugins/initlab_batched_launcher/_core.py",
             "    sizes = [len(g) for g in groups]", "    sizes = sorted((len(g) for g in groups), reverse=True)",
             ("tests/test_batched_launcher.py", "-k", "sizes_are_logged"),
             "'sizes 2 1 1' above groups of 1, 1, 2 jobs"),
    Mutation("fewer_seeds_unsaid", "initlab/analysis/figures/base.py",
             "        if not (ends.groupby(level=list(range(len(line)))).nunique() > 1).any():", "        if True:",
             ("tests/test_analysis_models.py", "-k", "fewer_seeds"),
             "a curve's last points one seed under 'mean over seeds'"),
    Mutation("attention_scores_uncounted", "initlab/train/loop.py",
             "        if isinstance(module, nn.MultiheadAttention) and len(inputs) >= 2:",
             "        if False:", ("tests/test_eval_chunks.py", "-k", "attention"),
             "a transformer's 128-sequence chunks held 128 MiB of attention scores"),
    Mutation("repeated_flag_kept_the_last", "analyze.py", "            for values in getattr(args, key) or []:",
             "            for values in (getattr(args, key) or [])[-1:]:",
             ("tests/test_analyze_files.py", "-k", "out_of_range"), "--depth 1 --depth 3 analysed depth 3 alone"),
    Mutation("swept_choice_derivation_unsaid", "initlab/cli.py", "for k in (kind, *SCHEMAS[parent[0]].values())]",
             "for k in (kind,)]", ("tests/test_bad_input.py", "-k", "sweep_base_config"),
             "-m scheduler=reduce_on_plateau,step scheduler.mode=max: no word of the monitor"),
    Mutation("grid_cut_short_silently", "initlab/callbacks.py", "            if grid is not None and total < grid:",
             "            if False:", ("tests/test_search.py", "-k", "cut_short"),
             "a 2-trial search of a 4-point grid trained other pairs on each rerun, unsaid"),
    Mutation("storage_unchecked", "initlab/sweeps.py", "    if storage is not None:", "    if False:",
             ("tests/test_search.py", "-k", "database_storage"),
             "hydra.sweeper.storage=sqlite:// ended in a traceback"),
    Mutation("one_seed_called_a_mean", "initlab/analysis/figures/curves.py",
             'one = runs.groupby([hue, "depth"])["job"].nunique().max() == 1', "one = False",
             ("tests/test_analysis_models.py", "-k", "one_seed"), "a one-seed analysis captioned 'mean over seeds'"),
    Mutation("panel_titles_unwrapped", "initlab/analysis/figures/base.py",
             "            _fit_text(ax.title, box.width * (1 + 0.9 * wspace), renderer)",
             "            pass", ("tests/test_figures.py", "-k", "panel_per_activation"),
             "six panels titled 'relu, resmlp preact' ran into each other"),
    Mutation("choice_unnamed_beside_bad_key", "initlab/cli.py", "    for attempt in (args, mine):",
             "    for attempt in (args,):", ("tests/test_bad_input.py", "-k", "command_line_errors_are_one_line"),
             "init=orthogonal init.factr=1 foo=1 named the choice init=?"),
    Mutation("queue_ranges_unchecked", "initlab/queue_check.py", "    for key, low in MINIMUM.items():",
             "    for key, low in {}.items():", ("tests/test_bad_input.py", "-k", "sweep_base_config_errors"),
             "hydra.launcher.mem_gb=-1 reached sbatch: a traceback beside an empty sweep folder"),
    Mutation("sbatch_not_asked", "initlab/queue_check.py", "        return _signal_after_limit(launcher) or sbatch_test(launcher)",
             "        return _signal_after_limit(launcher)", ("tests/test_bad_input.py", "-k", "without_sbatch"),
             "a SLURM sweep without sbatch failed once its folder existed"),
    Mutation("padding_attended", "initlab/models/transformer.py", "        h = self.encoder(h, src_key_padding_mask=~keep)",
             "        h = self.encoder(h)", ("tests/test_padding.py", "-k", "logits_do_not_depend"),
             "IMDB's reviews attended to their padding: logits depended on seq_len"),
    Mutation("padding_pooled", "initlab/models/transformer.py",
             "        return self.output(self.head((h * weights).sum(dim=1) / weights.sum(dim=1)))",
             "        return self.output(self.head(h.mean(dim=1)))", ("tests/test_padding.py", "-k", "logits_do_not_depend"),
             "a 20-token review at seq_len 256 pooled mostly from padding"),
    Mutation("padding_counted_in_probes", "initlab/measure/probes.py", "    content = content_rows(model, x)\n",
             "    content = lambda t: t\n", ("tests/test_padding.py", "-k", "probe_statistics"),
             "padding positions (delta exactly 0) counted in delta_rms and act_std"),
    Mutation("padding_counted_in_distributions", "initlab/measure/distributions.py",
             "    content = content_rows(model, x)  # a padded", "    content = lambda t: t  # a padded",
             ("tests/test_padding.py", "-k", "distributions"), "padding positions counted in distributions.csv"),
    Mutation("counts_always_plural", "hydra_plugins/initlab_batched_launcher/_core.py",
             "    return f\"{n} {noun}{'' if n == 1 else 's'}\"", "    return f\"{n} {noun}s\"",
             ("tests/test_batched_launcher.py", "-k", "count_in_words"), "the log read '2 jobs in 1 groups'"),
    # benchmarks' options and tables
    Mutation("bench_epoch_repeats_unchecked", "benchmarks/bench_epoch.py", 'check_at_least(parser, args, ["repeats"])',
             "check_at_least(parser, args, [])", ("tests/test_bench_epoch.py", "-k", "refused_in_one_line"),
             "bench_epoch.py --repeats 0 ran 32 s and printed inf, nanx, +nan% as results"),
    Mutation("bench_epoch_device_any_name", "benchmarks/bench_epoch.py", 'else "cpu", choices=DEVICES)', 'else "cpu")',
             ("tests/test_bench_epoch.py", "-k", "refused_in_one_line"),
             "bench_epoch.py --device foo ended in a RuntimeError traceback"),
    Mutation("bench_grid_activation_unknown", "benchmarks/bench_grid.py",
             '    check_known(proj, "activations", args.activations, conf_choices("activation"))\n', "",
             ("tests/test_bench_grid.py", "-k", "project_refuses_bad_options"),
             "bench_grid.py project --activations nosuch: a 76-line MissingConfigException"),
    Mutation("bench_grid_depth_zero", "benchmarks/bench_grid.py",
             'check_at_least(proj, args, ["depths", "epochs", "grid_epochs", "threads"])',
             'check_at_least(proj, args, ["epochs", "grid_epochs", "threads"])',
             ("tests/test_bench_grid.py", "-k", "project_refuses_bad_options"),
             "bench_grid.py project --depths 0: a ConfigError traceback"),
    Mutation("bench_grid_launcher_twice", "benchmarks/bench_grid.py",
             '        check_distinct(timing, args, ["launchers"])\n', "",
             ("tests/test_bench_grid.py", "-k", "time_refuses_bad_launchers"),
             "bench_grid.py time --launchers basic basic: two rows of one overwritten timing"),
    Mutation("bench_samples_below_the_classes", "benchmarks/bench_epoch.py", "    if samples < low:",
             "    if samples < 1:", ("tests/test_bench_ensemble.py", "-k", "bad_sizes"),
             "bench_ensemble.py --samples 5: ConfigError dataset.n_classes must be <= dataset.n_train"),
    Mutation("bench_noise_shown_as_zero_seconds", "benchmarks/bench_ensemble.py", "    if seconds <= 0:",
             "    if seconds < 0:", ("tests/test_bench_ensemble.py", "-k", "unmeasured_difference"),
             "| 2 | job, one at a time | 1 | 0.0000 | - | - |: clamped noise printed as a measurement"),
    Mutation("projection_counts_noise_as_free", "benchmarks/bench_grid.py", "    if per_epoch <= 0:", "    if False:",
             ("tests/test_bench_grid.py", "-k", "unmeasured"), "bench_grid project printed 0.000 s/epoch for noise"),
    Mutation("several_tasks_per_job", "initlab/queue_check.py", "        if launcher.get(key, 1) != 1:",
             "        if False:", ("tests/test_bad_input.py", "-k", "sweep_base_config_errors"),
             "tasks_per_node=2 trained one job folder twice at once"),
    Mutation("signal_at_start_unchecked", "initlab/queue_check.py", "    if limit and delay is not None and delay >= 60 * limit:",
             "    if False:", ("tests/test_bad_input.py", "-k", "sweep_base_config_errors"),
             "timeout_min=1 with the preset's 120 s signal killed every task at its start"),
    Mutation("sbatch_help_line_as_reason", "initlab/queue_check.py",
             'lines = [line.strip() for line in stderr.splitlines() if line.strip() and "--help" not in line]',
             "lines = [line.strip() for line in stderr.splitlines() if line.strip()]",
             ("tests/test_bad_input.py", "-k", "sbatchs_reason"), "the refusal read 'Try sbatch --help'"),
    Mutation("panels_never_wrap", "initlab/analysis/figures/facets.py", "PANELS_A_ROW = 6 ", "PANELS_A_ROW = 100 ",
             ("tests/test_figures.py", "-k", "panel_per_activation"), "12 panels in one row, 0.6 inches wide"),
    Mutation("per_layer_panels_never_wrap", "initlab/analysis/figures/layers.py", 'style: str = "init", most: int = 5,',
             'style: str = "init", most: int = 100,', ("tests/test_figures.py", "-k", "side_by_side"),
             "act_std_vs_layer 13.4 inches wide with nine activations"),
    Mutation("block_x_label_hidden", "initlab/analysis/figures/facets.py",
             "                ax.xaxis.label.set_visible(bottom)", "                pass",
             ("tests/test_figures.py", "-k", "side_by_side"), "no x label under the first block of panels"),
    Mutation("row_title_widens_every_gap", "initlab/analysis/figures/facets.py",
             "                title.set_in_layout(len(shown) == len(ax_row))", "                pass",
             ("tests/test_figures.py", "-k", "side_by_side"), "a row title beside a hidden slot widened every gap"),
    Mutation("panels_shrink_under_blocks", "initlab/analysis/figures/base.py",
             "    panel = max(KEPT * height, min(b.height for bs in boxes for b in bs) / dpi)",
             "    panel = min(b.height for bs in boxes for b in bs) / dpi",
             ("tests/test_figures.py", "-k", "panel_per_activation"),
             "12 panels in blocks of two rows: 0.29 inches tall"),
    Mutation("curves_legend_taller_than_figure", "initlab/analysis/figures/curves.py",
             "        fig.set_figheight(max(fig.get_figheight(), 0.8 + LEGEND_ROW * len(labels)))", "        pass",
             ("tests/test_figures.py", "-k", "side_by_side"),
             "nine activations' legend shrank the curves' panels to nothing"),
    Mutation("long_words_never_split", "initlab/analysis/figures/base.py", "    for split_words in (False, True):",
             "    for split_words in (False,):", ("tests/test_figures.py", "-k", "splits_a_word_only"),
             "'leaky_relu' drawn over its neighbour 'linear' in 0.8-inch panels"),
    Mutation("cuda_sweep_unchecked", "initlab/sweeps.py",
             "            if refusal := device_refusal(experiments[-1].device.value, config.hydra.launcher):",
             "            if refusal := None:", ("tests/test_sweeps.py", "-k", "cuda_basic"),
             "device=cuda on a GPU-less machine failed every job of the sweep with a traceback"),
    Mutation("gpu_request_unchecked", "initlab/queue_check.py", "    if executor is not None and not asks:",
             "    if False:", ("tests/test_sweeps.py", "-k", "cuda_on_slurm"),
             "device=cuda with gpus_per_node=0: every SLURM task without a GPU"),
    Mutation("sweep_dropped_by_later_override", "initlab/cli.py",
             "        if override.is_sweep_override() and later:", "        if False:",
             ("tests/test_bad_input.py", "-k", "sweep_base_config"),
             "epochs=1,abc epochs=2 ran one job with epochs=2, the sweep's values dropped in silence"),
    Mutation("analysis_ctrl_c_traceback", "analyze.py",
             "        signal.signal(signal.SIGINT, _stop)", "        pass", ("tests/test_analyze.py", "-k", "ctrl_c"),
             "Ctrl-C during analyze.py printed matplotlib's or pandas' traceback"),
    Mutation("failed_extension_counted_finished", "initlab/analysis/tables.py",
             "    if failed.is_file() and _written_ns(failed) >= _written_ns(finished):",
             "    if failed.is_file() and not finished.is_file():", ("tests/test_analyze_files.py", "-k", "failed_after"),
             "a finished job whose extension failed was counted completed at its earlier epochs"),
    Mutation("record_name_folder_deleted_blind", "initlab/records.py", "        if path.is_dir():", "        if False:",
             ("tests/test_resume.py", "-k", "folder_under"),
             "resume=false beside a folder named checkpoint.pt: IsADirectoryError mid-start"),
    Mutation("wrapped_rows_spaced_as_blocks", "initlab/analysis/figures/base.py",
             "        if height and g.axes.shape[0] > 1:", "        if False:",
             ("tests/test_figures.py", "-k", "side_by_side"),
             "rows within a block as far apart as the blocks: 27 panels 22 inches tall"),
    Mutation("deleted_then_set_called_unknown", "initlab/cli.py",
             "    if deleted and key in valid:  # ~depth=5 depth=5 said \"unknown key depth; valid: ..., depth, ...\"",
             "    if False:", ("tests/test_bad_input.py", "-k", "removes"),
             "~depth=5 depth=5: 'unknown key depth; valid top-level keys: ..., depth, ...'"),
    Mutation("analysis_out_is_a_file", "analyze.py",
             "    if refusal := unwritable(\"--out\", str(out)):  # a file of that name, a read-only sweep: not a traceback",
             "    if refusal := None:", ("tests/test_analyze_files.py", "-k", "cannot_be_a_folder"),
             "analyze.py -o README.md ended in FileExistsError's traceback"),
    Mutation("subdir_resolved_untyped", "initlab/sweeps.py", "        root = copy.deepcopy(config)",
             "        root = OmegaConf.create(OmegaConf.to_container(config, resolve=False))",
             ("tests/test_sweeps.py", "-k", "subdir_reading"),
             "subdir=f${init.factor} with init.factor=2: checks looked in f2, Hydra wrote f2.0 (a rerun failed every job)"),
    Mutation("diverged_run_not_longer_run", "initlab/resume.py",
             "    if ends_alike(finished, current):", "    if False:",
             ("tests/test_resume.py", "-k", "ended_early"),
             "a diverged sweep asked for more epochs failed its diverged jobs: 'kept no checkpoint to go on from'"),
    Mutation("ended_run_refused_below_asked", "initlab/resume.py",
             'return current["epochs"] >= finished["diverged_epoch"]',
             'return current["epochs"] >= finished["choices"]["epochs"]',
             ("tests/test_resume.py", "-k", "ended_early"), "a diverged run asked again for its first epochs: refused"),
    Mutation("stopped_run_taken_at_its_stop", "initlab/resume.py",
             'return current["epochs"] > finished["stopped_epoch"]',
             'return current["epochs"] >= finished["stopped_epoch"]',
             ("tests/test_resume.py", "-k", "ended_early"),
             "epochs = the stopping epoch taken for the stopped run (patience out at the last epoch is no stop)"),
    Mutation("large_phase_diagram_hides_lost_cells", "initlab/analysis/figures/theory.py",
             "                lost = diverged & acc.isna()", "                lost = diverged & False",
             ("tests/test_figures.py", "-k", "large_phase_diagram"),
             "over 60 cells a cell where every seed diverged was blank, as if never run"),
    Mutation("report_tables_float_format", "initlab/analysis/report.py",
             '.map(lambda v: shown(v) if isinstance(v, float) else v)', '',
             ("tests/test_analysis_models.py", "-k", "numbers_as"),
             "the HTML report's tables wrote optimizer.lr 100000.00 under figures titled 100000"),
    Mutation("elu_kernels_across_the_kink", "initlab/choices/gaussian.py",
             "alpha * np.exp(np.minimum(x, 0.0))), kinks=(0.0,))", "alpha * np.exp(np.minimum(x, 0.0))))",
             ("tests/test_theory.py", "-k", "selu_xi_c"),
             "selu's xi_c 41.5 for 33.6 (a trapezoid grid over phi''s jump)"),
    Mutation("shaped_kink_not_moved", "initlab/kernel_shaping.py",
             "kinks = tuple((k - s) / a for k in base.kinks) if a else ()", "kinks = base.kinks",
             ("tests/test_kernel_shaping.py", "-k", "dks_network_c_slope"),
             "DKS's elu split at elu's kink (0), not its own (1.2)"),
    Mutation("kink_delta_left_out_of_length_slope", "initlab/choices/gaussian.py",
             "        for k in self.kinks:  # phi phi''", "        for k in ():  # phi phi''",
             ("tests/test_kernel_shaping.py", "-k", "dks_network_c_slope"),
             "dV/dq of a shifted leaky ReLU without phi phi''s delta at the kink"),
    Mutation("optimizer_overflow_crashes", "initlab/train/job.py",
             "                if not overflowed(err):", "                if True:",
             ("tests/test_divergence.py", "-k", "beyond_float32"),
             "optimizer.lr=1e39 crashed mid-run (RuntimeError), the folder half-written"),
    Mutation("bias_variance_overflow_raises", "initlab/theory.py",
             "return float(bias_std) * float(bias_std)", "return float(bias_std) ** 2",
             ("tests/test_divergence.py", "-k", "theory_never_crashes"),
             "model.bias_std=1e300: OverflowError in the theory crashed the job"),
    Mutation("lone_points_invisible", "initlab/analysis/figures/base.py",
             "        mark_lone_points(fig)\n", "",
             ("tests/test_figures.py", "-k", "one_point"), "grad_norm_per_epoch of one-epoch runs drew nothing"),
    Mutation("joblib_workers_outlive_sweep", "initlab/callbacks.py",
             "            exit_with_the_sweep(str(config.hydra.launcher.get(\"_target_\", \"\")))", "            pass",
             ("tests/test_resume.py", "-k", "kill_9_of_a_joblib"),
             "kill -9 of a parallel sweep: loky workers trained on and held the folders, the rerun was refused"),
    Mutation("members_unnamed_on_the_console", "hydra_plugins/initlab_batched_launcher/_core.py",
             "        handler.setFormatter(_MemberNamed(formatter))", "        pass",
             ("tests/test_batched_launcher.py", "-k", "ends_early"),
             "a group's console showed four 'diverged at epoch 1' lines naming no job"),
    Mutation("figure_names_collide", "initlab/analysis/figures/base.py",
             "        if f\"{name}.{self.formats[0]}\" in self.written:  # values that read alike (0.3, 0.30000000000000004)",
             "        if False:", ("tests/test_figures.py", "-k", "never_share"),
             "lr=0.3 and 0.30000000000000004: two figures written to one file, the report embedding it twice"),
    Mutation("value_text_shows_float_noise", "initlab/analysis/tables.py", "NOISE = 1e-7", "NOISE = 0.0",
             ("tests/test_figures.py", "-k", "value_text"),
             "a float32 sigma_b2 named its phase diagram sb2_0.050000001006"),
    Mutation("restarted_run_taken_for_longer", "initlab/resume.py", "    if finished.get(\"final_attempt\", 0) > 0:",
             "    if False:", ("tests/test_resume.py", "-k", "restarted"),
             "a run that restarted after attempt 0 ran to its end was skipped as the 8-epoch run"),
    Mutation("ended_early_epochs_not_recorded", "initlab/train/job.py",
             "                    records.write_json_atomic(self.result_path, finished)", "                    pass",
             ("tests/test_resume.py", "-k", "ended_early"),
             "analyze.py split a sweep by epochs 2 and 4 after diverged runs were skipped for epochs=4"),
    Mutation("dropped_sweep_key_with_prefix", "initlab/cli.py",
             "        later = [o for o in parsed[k + 1:] if (o.key_or_group, o.package) == key]",
             "        later = [o for o in parsed[k + 1:] if o.get_key_element() == override.get_key_element()]",
             ("tests/test_bad_input.py", "-k", "sweep_base_config"),
             "init.factor=interval(0.5,4) ++init.factor=2: every Optuna trial trained 2.0 under the search's names"),
    Mutation("job_folders_compared_as_text", "initlab/sweeps.py", "        path = os.path.normpath(folder)",
             "        path = folder", ("tests/test_sweeps.py", "-k", "subdir_reading"),
             "dataset.root=/a/ok,/a/x/../ok under r${dataset.root}: job 2 wrote FAILED into job 1's folder"),
    Mutation("swept_choice_params_from_default", "initlab/sweeps.py",
             "                    if f\"${{{group}.\" in template and o.value() != config.hydra.runtime.choices.get("
             "group):",
             "                    if False:", ("tests/test_sweeps.py", "-k", "subdir_reading"),
             "optimizer=sgd,adam with lr${optimizer.lr}: refused as two jobs writing lr0.01 (adam's lr is 0.001)"),
    Mutation("row_gaps_count_y_labels", "initlab/analysis/figures/base.py",
             "    drawn = [[ax.get_tightbbox(renderer, for_layout_only=True) for ax in row] for row in rows]",
             "    drawn = [[ax.get_tightbbox(renderer) for ax in row] for row in rows]",
             ("tests/test_figures.py", "-k", "across_two_models"),
             "resmlp per-layer figure: a two-line y label spread a block's rows as far apart as its blocks"),
    Mutation("empty_run_dir_is_cwd", "initlab/cli.py",
             "        if folder is not None and not str(folder).strip():"
             "  # hydra.run.dir='': records in the working dir",
             "        if False:", ("tests/test_bad_input.py", "-k", "cannot_be_created"),
             "hydra.run.dir='': the run wrote its records into the working directory"),
    Mutation("gres_any_gpu_word", "initlab/queue_check.py",
             "    return any(isinstance(count, int) and count > 0 for count in counts)",
             "    return any(count is not None for count in counts) or 'gpu' in str(extra).lower()",
             ("tests/test_sweeps.py", "-k", "cuda_on_slurm"),
             "gres=gpu:0 or constraint=gpu read as a GPU request: every SLURM task without a GPU"),
    Mutation("unreadable_checkpoint_traceback", "initlab/train/job.py",
             "                raise ConfigError(unreadable_checkpoint(job_dir, err)) from err", "                raise",
             ("tests/test_launchers.py", "-k", "basic_failing"),
             "a damaged checkpoint.pt failed its job with torch's UnpicklingError and no way on"),
    Mutation("ctrl_c_traceback", "train.py", "    except KeyboardInterrupt:", "    except ImportError:",
             ("tests/test_resume.py", "-k", "ctrl_c and basic"),
             "Ctrl-C ended a sweep in a KeyboardInterrupt traceback"),
    Mutation("ctrl_c_at_start_traceback", "train.py", "    signal.signal(signal.SIGINT, _stop_before_any_job)",
             "    pass", ("tests/test_resume.py", "-k", "while_train_py_starts"),
             "Ctrl-C in the first seconds printed the import's traceback"),
    Mutation("second_ctrl_c_interrupts_shutdown", "train.py",
             "        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C", "        pass  #",
             ("tests/test_resume.py", "-k", "ctrl_c"), "a second Ctrl-C interrupted the shutdown: atexit traceback"),
    Mutation("list_offered_for_any_field", "initlab/cli.py", "if isinstance(node, ListConfig) and",
             "if True or", ("tests/test_bad_input.py", "-k", "command_line_errors"),
             "depth=5,18 was told to try depth=[5,18], which an integer refuses"),
    Mutation("string_offered_for_any_field", "initlab/cli.py", "if isinstance(node, StringNode) else [])",
             "if True else [])", ("tests/test_bad_input.py", "-k", "command_line_errors"),
             "threads=1,2 was told to try threads='1,2', which an Optional[int] refuses"),
    Mutation("last_override_blamed", "initlab/cli.py", "    return (quoted or deleting or mine[-1:] or [key])[0]",
             "    return (mine[-1:] or [key])[0]", ("tests/test_bad_input.py", "-k", "command_line_errors"),
             "epochs=abc epochs=1 was reported as epochs=1"),
    Mutation("filters_after_multi_value_options_swallowed", "analyze.py",
             "    args = p.parse_intermixed_args(_multi_values_last(argv))", "    args = p.parse_intermixed_args(argv)",
             ("tests/test_analyze_files.py", "-k", "keeps_the_whole_sweeps"),
             "--detail-depth 5 50 depth=5,50 took the filter for a depth"),
    Mutation("extension_without_checkpoint_unexplained", "initlab/resume.py",
             "    if diffs and not others and checkpoint_epoch is None and longer:",
             "    if False:", ("tests/test_resume.py", "-k", "other_settings_is_refused"),
             "epochs=60 on a finished 50-epoch run: 'other settings', not that checkpoint=last would extend it"),
    Mutation("checkpoint_not_a_train_state", "initlab/train/job.py",
             '            if not isinstance(saved, dict) or "epoch" not in saved:', "            if False:",
             ("tests/test_resume.py", "-k", "damaged_checkpoint"), "a pickled list as checkpoint.pt: AttributeError"),
    Mutation("block_scales_differ", "initlab/analysis/figures/layers.py", '"row" if row and wrap.blocks == 1 else True',
             '"row" if row else True', ("tests/test_figures.py", "-k", "side_by_side"),
             "the blocks of a wrapped per-layer figure each had their own y scale"),
    Mutation("x_labels_unfitted", "initlab/analysis/figures/base.py",
             '            _fit_text(ax.xaxis.label, box.width, renderer)', "            pass",
             ("tests/test_figures.py", "-k", "nine_activations"), "'site (forward order)' ran into its neighbours"),
    Mutation("padding_counted_in_tensorboard", "initlab/train/tensorboard.py",
             "        content = content_rows(model, self.x_probe)", "        content = lambda t: t",
             ("tests/test_padding.py", "-k", "tensorboard"), "TensorBoard's site histograms counted padding"),
    Mutation("grid_diverged_cell_unmarked", "initlab/analysis/figures/depth.py",
             "(diverged & acc.isna())", "(diverged & acc.notna())",
             ("tests/test_figures.py", "-k", "grid_cell_where_every_seed_diverged"),
             "a grid cell whose every seed diverged was blank, its † promised by the caption not drawn"),
    Mutation("phase_diverged_cell_unmarked", "initlab/analysis/figures/theory.py", "                    elif mark:",
             "                    elif False:", ("tests/test_figures.py", "-k", "phase_diagram_cell_where_every_seed"),
             "a phase-diagram cell whose every seed diverged was blank, with no †"),
    Mutation("per_layer_phases_without_data", "initlab/analysis/figures/layers.py",
             "return [w for w in WHEN if w in set(finite)]", "return list(WHEN)",
             ("tests/test_figures.py", "-k", "name_the_phases_drawn"),
             "runs that diverged at epoch 1: 'mid-training (epoch : half of ...)' over an empty panel"),
    Mutation("convergence_final_accuracy_pooled", "initlab/analysis/report.py",
             '_cell(trainable["final_val_acc" if', '_cell(part["final_val_acc" if',
             ("tests/test_analysis_models.py", "-k", "final_accuracy_is_of_the_runs"),
             "the convergence table's final accuracy pooled the untrainable seeds under 'over the trainable seeds'"),
    Mutation("summary_n_hides_missing_runs", "initlab/analysis/report.py",
             'of = f" of {len(values)}" if len(finite) < len(values) else ""', 'of = ""',
             ("tests/test_analysis_models.py", "-k", "how_many_runs_have_a_value"),
             "a configuration with a diverged seed of two read as one seed's value, n = number of runs"),
    Mutation("file_name_value_unformatted", "initlab/analysis/figures/base.py",
             'f"no_{k}" if pd.isna(v) else f"{k}={shown(v)}"', 'f"no_{k}" if pd.isna(v) else f"{k}={v}"',
             ("tests/test_figures.py", "-k", "reads_alike_in_figure_titles"),
             "figure files named optimizer.lr=100000.0 under titles that said optimizer.lr=100000"),
]


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> bool:
    """Make this process the child subreaper of everything it starts (Linux): a process whose parent
    dies is re-parented here, not to init, so kill_leftovers can find it. A mutant can disable
    what ends a killed sweep's workers (joblib_workers_outlive_sweep); they trained on for minutes
    beside the next mutant. False where the call is not available."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[int]:
    """This process's live children, from /proc (Linux)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm)": state, ppid, ...
        if fields[1] == str(me) and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def kill_leftovers() -> int:
    """SIGKILL and reap every process still here after a test run (its own children and, once
    adopt_orphans is in force, the orphans of what it started), until none is left; how many."""
    killed = 0
    for _ in range(20):
        left = _children()
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in left:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def _pytest(tree: Path, args: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """'passed', 'failed' or 'timeout' for ``python -m pytest -x -q ARGS`` in ``tree``; whatever the
    run left behind is killed (kill_leftovers) before the next one starts."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
                              cwd=tree, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    finally:
        left = kill_leftovers()
        if left:
            print(f"  killed {left} process{'es'[:2 * (left > 1)]} the run left behind", flush=True)
    if done.returncode == 5:
        raise SystemExit(f"no tests selected by {' '.join(args)}: fix the mutation's test selection")
    return ("passed" if done.returncode == 0 else "failed"), time.perf_counter() - start


def run(mutations: list[Mutation], baseline: bool, timeout: float) -> int:
    adopt_orphans()
    with tempfile.TemporaryDirectory(prefix="initlab-mutants-") as tmp:
        tree = Path(tmp) / "repo"
        shutil.copytree(ROOT, tree, ignore=IGNORE)
        if baseline:
            for args in dict.fromkeys(m.tests for m in mutations):
                outcome, seconds = _pytest(tree, args, timeout)
                print(f"baseline {outcome:8s} {seconds:6.1f}s  {' '.join(args)}", flush=True)
                if outcome != "passed":
                    print("the unmutated tests do not pass: fix them before mutating")
                    return 2
        counts = {"killed": 0, "survived": 0, "not applicable": 0}
        for m in mutations:
            path = tree / m.file
            original = path.read_text()
            hits = original.count(m.old)
            if hits != 1:
                status, seconds = "not applicable", 0.0
                detail = f"snippet found {hits} times in {m.file}"
            else:
                path.write_text(original.replace(m.old, m.new))
                try:
                    outcome, seconds = _pytest(tree, m.tests, timeout)
                finally:
                    path.write_text(original)
                status = "survived" if outcome == "passed" else "killed"
                detail = m.why + (" (timed out)" if outcome == "timeout" else "")
            counts[status] += 1
            print(f"{status:14s} {seconds:6.1f}s  {m.name}: {detail}", flush=True)
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0 if counts["killed"] == len(mutations) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    parser.add_argument("--baseline", action="store_true", help="first run the selected tests unmutated")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run (default 600)")
    args = parser.parse_args(argv)
    chosen = MUTATIONS
    if args.only:
        known = {m.name: m for m in MUTATIONS}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            parser.error(f"unknown mutation(s) {', '.join(unknown)}; --list shows the names")
        chosen = [known[n] for n in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:32s} {m.file:24s} {' '.join(m.tests)}\n{'':32s} {m.why}")
        return 0
    return run(chosen, args.baseline, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
