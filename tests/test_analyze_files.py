"""The read side on fabricated job folders (tests/jobfactory.py): files checked against the row
counts result.json records, and run filters (floats to a relative 1e-9, list values).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest
from jobfactory import write_job

import analyze
from initlab.analysis import tables as analysis
from initlab.analysis.filters import output_name


def _cut_last_rows(path, keep):
    """Keep the header and ``keep`` data rows; the file still ends in a newline (cut at a row)."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + keep]))


@pytest.mark.parametrize("name, keep", [("jacobian.csv", 1), ("jacobian_sv.csv", 5), ("layers.csv", 8),
                                        ("epochs.csv", 2)])
def test_a_file_shorter_than_recorded_skips_the_job(tmp_path, caplog, name, keep):
    good, cut = write_job(tmp_path / "sweep" / "good", seed=0), write_job(tmp_path / "sweep" / "cut", seed=1)
    _cut_last_rows(cut / name, keep)
    with caplog.at_level(logging.WARNING):
        tables = analysis.load([tmp_path / "sweep"])
    assert list(tables.runs["job"]) == ["good"]
    assert [s.job for s in tables.skipped] == ["cut"]
    assert tables.skipped[0].reason.startswith(f"{name} has ")  # the count, or for epochs the epochs, it has
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(cut) in warnings[0]
    assert good.is_dir()


def test_jacobian_sv_with_5_rows_is_named_in_the_report(tmp_path):
    root = tmp_path / "sweep"
    write_job(root / "good", seed=0)
    cut = write_job(root / "cut", seed=1)
    expected = json.loads((cut / "result.json").read_text())["rows"]["jacobian_sv.csv"]
    _cut_last_rows(cut / "jacobian_sv.csv", 5)
    assert analyze.main([str(root)]) == 0
    skipped = (root / "analysis" / "report.md").read_text().split("## Skipped jobs", 1)[1]
    assert f"- cut: jacobian_sv.csv has 5 rows, result.json records {expected}" in skipped


def test_a_file_recorded_but_missing_skips_the_job(tmp_path):
    cut = write_job(tmp_path / "sweep" / "cut")
    (cut / "jacobian.csv").unlink()
    tables = analysis.load([tmp_path / "sweep"])
    assert tables.runs.empty
    assert tables.skipped[0].reason.startswith("jacobian.csv has 0 rows, result.json records 2")


def test_jobs_without_row_counts_keep_todays_checks(tmp_path):
    """Older jobs (no result.json "rows"): a file cut at a row boundary still loads; one cut
    mid-row is still caught."""
    old = write_job(tmp_path / "sweep" / "old", rows=False)
    _cut_last_rows(old / "jacobian_sv.csv", 5)
    tables = analysis.load([tmp_path / "sweep"])
    assert len(tables.runs) == 1 and len(tables.spectra) == 5
    data = (old / "layers.csv").read_bytes()
    (old / "layers.csv").write_bytes(data[: len(data) // 2].rstrip(b"\n"))
    assert analysis.load([tmp_path / "sweep"]).skipped[0].reason == "layers.csv is truncated"


# --- filters -----------------------------------------------------------------------------------------
def test_float_filters_match_within_relative_tolerance(tmp_path):
    root = tmp_path / "sweep"
    for i, std in enumerate((0.1, 0.2, 0.30000000000000004, 0.4)):  # Hydra's range(0.1, 0.5, 0.1)
        write_job(root / f"std{i}", init="normal", init_params={"std": std}, seed=i)
    for wanted in ("0.3", "0.30000000000000004", "3e-1"):
        tables = analysis.load([root], {"init.std": [wanted]})
        assert list(tables.runs["job"]) == ["std2"], wanted
    with pytest.raises(KeyError, match="no run matches init.std=0.3000001"):  # 3e-7 relative: no
        analysis.load([root], {"init.std": ["0.3000001"]})
    assert sorted(analysis.load([root], {"init.std": ["0.1", "0.4"]}).runs["job"]) == ["std0", "std3"]
    with pytest.raises(KeyError, match="init.std is numeric"):
        analysis.load([root], {"init.std": ["small"]})


def test_list_values_can_be_filtered(tmp_path, capsys):
    root = tmp_path / "sweep"
    for i, betas in enumerate(([0.5, 0.9], [0.9, 0.999])):
        write_job(root / f"betas{i}", optimizer="adam", optimizer_params={"betas": betas}, seed=i)
    assert analyze.parse([str(root), "optimizer.betas=[0.5,0.9],[0.9,0.99]"]).filters == {
        "optimizer.betas": ["[0.5,0.9]", "[0.9,0.99]"]}
    for wanted in ("[0.5,0.9]", "[0.5, 0.9]", "[0.50, 0.9000000000000001]"):
        assert list(analysis.load([root], {"optimizer.betas": [wanted]}).runs["job"]) == ["betas0"], wanted
    with pytest.raises(KeyError, match=r"no run matches optimizer.betas=\[0.5\]"):
        analysis.load([root], {"optimizer.betas": ["[0.5]"]})
    assert analyze.main([str(root), "optimizer.betas=[0.9,0.999]", "--out", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "runs.csv")["job"].tolist() == ["betas1"]


def test_text_and_bool_filters_still_match_exactly(tmp_path):
    root = tmp_path / "sweep"
    write_job(root / "a", activation="relu", optimizer_params={"nesterov": False}, seed=0)
    write_job(root / "b", activation="tanh", optimizer_params={"nesterov": False}, seed=1)
    assert list(analysis.load([root], {"activation": ["TANH"]}).runs["job"]) == ["b"]
    assert len(analysis.load([root], {"optimizer.nesterov": ["false"]}).runs) == 2
    with pytest.raises(KeyError, match="no run matches activation=relu6; valid: the runs' activation: relu, tanh"):
        analysis.load([root], {"activation": ["relu6"]})


# --- where the output goes ------------------------------------------------------------------------
def sweep_of_two(root):
    for seed, activation in enumerate(("relu", "tanh")):
        write_job(root / f"job{seed}", activation=activation, seed=seed, overrides=[f"activation={activation}"])
    return root


def test_a_filtered_analysis_keeps_the_whole_sweeps(tmp_path, monkeypatch):
    """analyze.py SWEEP activation=tanh writes SWEEP/analysis_activation=tanh/, not over SWEEP/analysis/."""
    root = sweep_of_two(tmp_path / "sweep")
    assert analyze.main([str(root)]) == 0
    assert analyze.main([str(root), "activation=tanh"]) == 0
    assert pd.read_csv(root / "analysis" / "runs.csv")["job"].tolist() == ["job0", "job1"]
    assert pd.read_csv(root / "analysis_activation=tanh" / "runs.csv")["job"].tolist() == ["job1"]
    assert output_name({"init.std": ["0.1", "0.2"], "depth": ["5"]}) == "analysis_depth=5;init.std=0.1,0.2"
    assert analyze.parse([str(root), "seed=0", "--init", "he_normal"]).filters == \
        analyze.parse([str(root), "init=he_normal", "seed=0"]).filters  # one folder, whatever the order
    assert analyze.parse([str(root), "seed=" + ",".join(map(str, range(200)))]).filters["seed"][-1] == "199"
    assert analyze.parse([str(root), "--detail-depth", "3", "3"]).detail_depth == [3]
    # a filter or a folder after a multi-value option was taken as its value ('invalid int value')
    after = analyze.parse(["--detail-depth", "5", "50", "seed=0", "--format", "pdf", str(root), "init=he_normal"])
    assert (after.detail_depth, after.format, after.paths) == ([5, 50], ["pdf"], [root])
    assert after.filters == {"init": ["he_normal"], "seed": ["0"]}
    (tmp_path / "cwd" / "3").mkdir(parents=True)  # a folder named like a depth or a format stays a value
    (tmp_path / "cwd" / "pdf").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    values = analyze.parse([str(root), "--detail-depth", "2", "3", "--format", "pdf"])
    assert (values.detail_depth, values.format, values.paths) == ([2, 3], ["pdf"], [root])
    long = output_name({"seed": [str(s) for s in range(100)]})
    assert long.startswith("analysis_seed=0,1,2,") and len(long) == len("analysis_") + 100 + 13


def test_filters_that_match_the_same_runs_name_one_folder(tmp_path):
    """seed=00 and seed=0 (train.py reads both as 0), depth=010 (10, not YAML's octal 8), 0.50 and .5,
    TANH and tanh, values in any order or repeated: one output folder each, matching the same runs."""
    assert output_name({"seed": ["00"]}) == output_name({"seed": ["0"]}) == "analysis_seed=0"
    assert output_name({"seed": ["10", "2", "2"]}) == "analysis_seed=2,10"
    assert output_name({"depth": ["010"]}) == "analysis_depth=10"
    assert output_name({"init.std": ["0.50", "1e-1"]}) == output_name({"init.std": [".1", "0.5"]}) \
        == "analysis_init.std=0.1,0.5"
    assert output_name({"init.std": ["2.0"]}) == "analysis_init.std=2"
    assert output_name({"activation": ["TANH"]}) == output_name({"activation": ["tanh"]}) == "analysis_activation=tanh"
    assert output_name({"optimizer.nesterov": ["True"]}) == "analysis_optimizer.nesterov=true"
    root = tmp_path / "sweep"
    for seed, depth in ((0, 8), (1, 10)):
        write_job(root / f"job{seed}", depth=depth, seed=seed)
    assert list(analysis.load([root], {"depth": ["010"]}).runs["job"]) == ["job1"]
    assert list(analysis.load([root], {"seed": ["00"]}).runs["job"]) == ["job0"]


def test_a_filter_value_that_matches_no_run_is_named(tmp_path, caplog):
    """init=lsuv,nosuch kept the lsuv runs and said nothing of the typo."""
    for init in ("lsuv", "he_normal"):
        write_job(tmp_path / init, init=init)
    with caplog.at_level(logging.WARNING, logger="initlab.analysis.filters"):
        runs = analysis.load([tmp_path], {"init": ["lsuv", "nosuch"], "depth": ["3", "4"]}).runs
    assert list(runs["init"]) == ["lsuv"]
    assert [r.getMessage() for r in caplog.records] == [
        "filter init=nosuch matches no run (the runs' init: he_normal, lsuv)",
        "filter depth=4 matches no run (the runs' depth: 3)"]


def test_runs_that_differ_only_in_how_they_were_logged_are_one_configuration(tmp_path):
    """Seeds 0 and 1, one with logger=tensorboard: configs.csv had a row per logger (n=1 each) and
    every report table a logger column, though the logger is not one of the run's choices."""
    for seed, logger in enumerate(("tensorboard", "none")):
        write_job(tmp_path / f"seed={seed}", seed=seed, logger=logger, overrides=[f"seed={seed}", f"logger={logger}"])
    tables = analysis.load([tmp_path])
    assert "logger" not in tables.runs and "logger" not in tables.keys
    from initlab.analysis import report

    assert list(report.configurations(tables)["runs"]) == [2]


def test_filters_that_keep_no_run_name_the_values_there_are(tmp_path, capsys):
    """analyze.py init=nosuch said only "no run matches init=nosuch": the values it could have been
    are those of the runs the filters before it kept."""
    for init, depth in (("lsuv", 3), ("he_normal", 5)):
        write_job(tmp_path / init, init=init, depth=depth)
    with pytest.raises(KeyError) as err:
        analysis.load([tmp_path], {"init": ["nosuch"]})
    assert err.value.args[0] == "no run matches init=nosuch; valid: the runs' init: he_normal, lsuv"
    with pytest.raises(KeyError) as err:
        analysis.load([tmp_path], {"depth": ["5"], "init": ["lsuv"]})
    assert err.value.args[0] == "no run matches init=lsuv; valid: the runs' init with depth=5: he_normal"
    assert analyze.main([str(tmp_path), "depth=5", "init=lsuv"]) == 1
    assert capsys.readouterr().err == "error: no run matches init=lsuv; valid: the runs' init with depth=5: he_normal\n"
    # in the order typed (they were sorted first, and init=lsuv depth=5 blamed init)
    assert analyze.main([str(tmp_path), "init=lsuv", "depth=5"]) == 1
    assert capsys.readouterr().err == "error: no run matches depth=5; valid: the runs' depth with init=lsuv: 3\n"


def test_a_job_folder_whose_name_holds_commas_can_be_filtered_on_quoted(tmp_path):
    """Hydra names a job's folder by its overrides, commas and all: job="'a=1,b=2'" is one value,
    as a quoted value is in Hydra's overrides; a quote left open is refused in one line."""
    root = tmp_path / "sweep"
    for seed, activation in enumerate(("relu", "tanh")):
        write_job(root / f"activation={activation},seed={seed}", activation=activation, seed=seed)
    assert analyze.split_values("a,[0.5,0.9],'x=1,y=2',\"u,v\"") == ["a", "[0.5,0.9]", "x=1,y=2", "u,v"]
    assert analyze.main([str(root), "job='activation=tanh,seed=1',nope"]) == 0
    assert pd.read_csv(next(root.glob("analysis_job=*")) / "runs.csv")["job"].tolist() == ["activation=tanh,seed=1"]
    with pytest.raises(SystemExit):
        analyze.parse([str(root), "job='activation=tanh,seed=1"])


def test_a_job_that_failed_after_its_result_is_skipped_as_failed(tmp_path):
    """A finished job asked for more epochs whose extension failed kept its earlier result.json
    beside FAILED, and the analysis counted it completed at the earlier run's epochs under the
    settings its .hydra files now hold. A FAILED older than result.json (a later success in
    another launcher) does not count."""
    root = tmp_path / "sweep"
    extended, later_fine = write_job(root / "extended", seed=0), write_job(root / "later_fine", seed=1)
    for job, written_ns in ((extended, (job_mtime := (extended / "result.json").stat().st_mtime_ns) + 10**9),
                            (later_fine, job_mtime - 10**9)):
        (job / "FAILED").write_text(f"ConfigError: checkpoint.pt cannot be read ({'x' * 200}); delete it\n")
        os.utime(job / "FAILED", ns=(written_ns, written_ns))
    tables = analysis.load([root])
    assert tables.runs["seed"].tolist() == [1]
    assert [(Path(bad.job).name, bad.reason) for bad in tables.skipped] == [  # whole: it was cut at 200 characters,
        ("extended", f"failed: ConfigError: checkpoint.pt cannot be read ({'x' * 200}); delete it "  # the advice lost
                     f"(its result.json is an earlier run's)")]


def test_only_unfinished_jobs_say_so_not_unreadable(tmp_path, capsys):
    """A killed single run (no result.json): the error gives the skip reason the warning gave."""
    job = write_job(tmp_path / "run", epochs=2)
    (job / "result.json").unlink()
    assert analyze.main([str(job)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: nothing to analyze in {job}: every job folder found was skipped (")
    assert "(the folder: unfinished" in err and "unreadable" not in err


def test_figures_an_earlier_analysis_drew_and_this_one_does_not_are_removed(tmp_path):
    """Another --format (or a family now not drawn) leaves no stale file the report does not show;
    files the analysis never drew stay."""
    root = sweep_of_two(tmp_path / "sweep")
    figures = root / "analysis" / "figures"
    assert analyze.main([str(root), "--format", "pdf"]) == 0
    pdfs = sorted(p.name for p in figures.glob("*.pdf"))
    assert pdfs and len(pdfs) == len(list(figures.glob("*.png")))
    (figures / "mine.pdf").write_text("a figure of the user's")
    assert analyze.main([str(root)]) == 0
    assert sorted(p.name for p in figures.glob("*.pdf")) == ["mine.pdf"]
    assert sorted(json.loads((figures / ".drawn.json").read_text())) == sorted(p.name for p in figures.glob("*.png"))


def test_an_output_folder_that_is_a_job_is_refused(tmp_path, capsys):
    root = sweep_of_two(tmp_path / "sweep")
    before = (root / "job0" / "epochs.csv").read_bytes()
    assert analyze.main([str(root), "--out", str(root / "job0")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: --out {root / 'job0'} is a job folder or its .hydra/: the tables would replace the job's own "
        "records; valid: a folder that holds no job's records")
    assert (root / "job0" / "epochs.csv").read_bytes() == before
    for out in (root / "job0" / "nothing" / "..", root / "job0" / ".hydra"):  # the same folder, spelt otherwise
        assert analyze.main([str(root), "--out", str(out)]) == 1
    assert (root / "job0" / "epochs.csv").read_bytes() == before
    assert analyze.main([str(root / "job0")]) == 0  # a single job's default output is its analysis/ subfolder


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_an_output_path_that_cannot_be_a_folder_is_refused_in_one_line(tmp_path, capsys, where):
    """-o README.md ended in FileExistsError's traceback."""
    root = sweep_of_two(tmp_path / "sweep")
    (tmp_path / "README.md").write_text("mine\n")
    out = tmp_path / "README.md" / ("x" if where == "below_a_file" else "")
    assert analyze.main([str(root), "-o", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: --out={os.path.realpath(out)}: cannot create it here "
                                               f"({tmp_path / 'README.md'} is a file); valid: a folder this user can write")
    assert (tmp_path / "README.md").read_text() == "mine\n"


@pytest.mark.parametrize("args,line", [
    (["--detail-depth", "7"], "error: --detail-depth 7: no run has that depth; valid: 3"),
    (["--margin", "-5"], "--margin -5.0: valid: a number in [0, 1) (an accuracy above chance)"),
    (["--detail-depth", "0"], "--detail-depth 0: valid: depths >= 1"),
    # a filter given twice kept its last values: "depth=8 depth=3" analysed depth 3 alone, silently
    (["depth=8", "depth=3"], "depth=8 and depth=3: depth filtered twice; valid: its values at once, depth=8,3"),
    (["init=a", "--init", "b,c"], "init=a and --init b,c: init filtered twice; valid: its values at once, init=a,b,c"),
    (["filter.seed=0", "seed=1"], "filter.seed=0 and seed=1: seed filtered twice; valid: its values at once, seed=0,1"),
    (["--depth", "1", "--depth", "3"], "--depth 1 and --depth 3: depth filtered twice; valid: its values at once, "
                                       "depth=1,3"),  # argparse kept the last one
    (["depth=3,8", "depth=3"], "depth=3,8 and depth=3: depth filtered twice; valid: its values at once, depth=3,8"),
    # an empty -o wrote the tables, figures and report into the working directory (here the repository)
    (["-o", ""], "argument -o/--out: an empty folder name ('') would be the working directory; valid: a folder path"),
    ([""], "an empty folder name ('') would be the working directory; valid: a folder path"),
])
def test_analysis_options_out_of_range_are_refused_in_one_line(tmp_path, capsys, args, line):
    root = sweep_of_two(tmp_path / "sweep")
    try:
        code = analyze.main([str(root), *args])
    except SystemExit as exit_:  # argparse's refusal: usage, then the line
        code = exit_.code
    assert code in (1, 2)
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(line)
    assert not (root / "analysis").exists()
