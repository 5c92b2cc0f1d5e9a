"""report.md and a self-contained report.html (figures embedded) from the tables and figures.

Both are rendered from one list of blocks, so the two files always say the same thing.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from initlab.analysis import search
from initlab.analysis.tables import Tables, shown
from initlab.analysis.figures import THEORY, Figure, NotDrawn
from initlab.analysis.figures.base import t95

METRICS = {"final_train_acc": "final train acc", "final_test_acc": "final test acc",
           "best_test_acc": "best test acc", "final_test_loss": "final test loss",
           "epochs_to_95_peak_train": "epochs to 95% peak train",
           "epochs_to_95_final_test": "epochs to 95% final test", "convergence_epoch": "convergence epoch",
           "n_params": "parameters", "s_per_epoch": "s/epoch"}


def _cell(values: pd.Series, digits: int = 3) -> str:
    """mean ± std (n) over seeds; a single value as is. NaN values are not averaged; where some runs
    have none (a diverged run's accuracy), n says how many of them count ("n=1 of 2", as
    interval_cell): one seed's value among two runs read as the mean of a one-seed configuration."""
    finite = values.dropna()
    if finite.empty:
        return ""
    of = f" of {len(values)}" if len(finite) < len(values) else ""
    if len(finite) == 1:
        return f"{finite.iloc[0]:.{digits}f}" + (f" (n=1{of})" if of else "")
    return f"{finite.mean():.{digits}f} ± {finite.std():.{digits}f} (n={len(finite)}{of})"


def interval_cell(values: pd.Series, digits: int = 3) -> str:
    """mean ± half-width of the 95% t-interval of the mean over seeds (n=seeds), as the figures' bands
    (figures.base.t95, Student's t with n - 1 degrees of freedom); one seed: its value (n=1).

    NaN values are not averaged; where some runs have none, n says how many of them count
    ("n=2 of 3"). Empty when no run has a value.
    """
    finite = values.dropna()
    if finite.empty:
        return ""
    low, high = t95(finite)
    n = f"n={len(finite)}" + (f" of {len(values)}" if len(finite) < len(values) else "")
    if len(finite) == 1:
        return f"{finite.iloc[0]:.{digits}f} ({n})"
    return f"{finite.mean():.{digits}f} ± {(high - low) / 2:.{digits}f} ({n})"


def configurations(t: Tables) -> pd.DataFrame:
    """One row per configuration (every varied choice but the seed), metrics as mean ± std (n)."""
    keys = [k for k in t.keys if k != "seed"] or ["activation", "init", "depth"]
    rows = []
    for values, part in t.runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        row["runs"] = len(part)
        row["status"] = ", ".join(f"{n} {s}" for s, n in part["status"].value_counts().items())
        row.update({label: _cell(part[col], 1 if col.startswith(("epochs", "conv")) else 0 if col == "n_params" else 3)
                    for col, label in METRICS.items() if col in part})
        if "n_params" in part and part["n_params"].nunique() == 1:  # the seeds' models are alike: the count
            row[METRICS["n_params"]] = f"{part['n_params'].iloc[0]:.0f}"
        row["trainable"] = f"{part['trainable'].sum()}/{len(part)}"
        rows.append(row)
    return pd.DataFrame(rows)


def grid_table(t: Tables) -> pd.DataFrame:
    """Final test accuracy, a row per configuration and a column per depth (the reference's table);
    a row per depth when nothing else varies. Each cell: mean ± 95% interval over seeds (interval_cell)."""
    keys = [k for k in t.keys if k not in ("seed", "depth")]
    cells = {}
    for values, part in t.runs.groupby([*keys, "depth"], sort=False, dropna=False):
        text = interval_cell(part["final_test_acc"])
        text += " †" if (part["status"] == "diverged").any() else ""
        text += " ✗" if part["trainable"].astype(float).mean() < 0.5 else ""  # NA (unknown chance): no mark
        cells[values] = text
    if not keys:
        return pd.DataFrame({"depth": [k[0] for k in cells], "final test acc": list(cells.values())})
    rows = list(dict.fromkeys(k[:-1] for k in cells))  # unstack sorts; keep the runs' order
    table = pd.Series(cells).unstack(-1).reindex(rows if len(keys) > 1 else [r[0] for r in rows]).fillna("")
    table.index.names, table.columns.name = keys, None
    table.columns = [f"depth {d}" for d in table.columns]
    return table.reset_index()


def _blocks(t: Tables, figures: list[Figure], sources: list[str], command: str,
            not_drawn: list[NotDrawn]) -> list[tuple]:
    runs = t.runs
    status = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    blocks = [("h1", "initlab analysis"),
              ("p", f"Sources: {', '.join(sources)}. {len(runs)} runs ({status}); {len(t.skipped)} job "
                    f"folder(s) skipped. Made with `{command}`."),
              ("p", "Settings shared by every run: " + _shared(runs, t.settings) + ".")]
    blocks += _extra_blocks(t)
    models = list(dict.fromkeys(runs["model_label"])) if "model_label" in runs else []
    if len(models) > 1:
        blocks.append(("p", f"These runs compare {len(models)} models ({', '.join(models)}): the grid, accuracy "
                            f"vs depth, plain vs residual and gradient-norm figures show them side by side; every "
                            f"other figure is drawn once per model (named in its title and file name)."))
    blocks += [("h2", "Figures not drawn"),
               ("list", [f"{n.figure}: {n.reason}" for n in not_drawn] or ["none"])]
    chance = ", ".join(f"{c:.2g}" for c in runs["chance"].dropna().unique()) or "unknown"
    blocks += [("h2", "Final test accuracy"),
               ("p", f"Mean ± half-width of the 95% t-interval of the mean over seeds (n = seeds; one seed: its "
                     f"value). † diverged (in at least one seed); ✗ not trainable: final test accuracy at most "
                     f"chance ({chance}) + {t.margin:g} (in more than half of the seeds)."),
               ("table", grid_table(t))]
    blocks += _convergence_blocks(t)
    section = None
    for fig in figures:
        if fig.section == THEORY:
            continue
        if fig.section != section:
            section = fig.section
            blocks.append(("h2", section))
        blocks.append(("figure", fig.path, fig.caption))
    blocks += _theory_blocks(t, [f for f in figures if f.section == THEORY])
    blocks += [("h2", "Per-configuration summary"),
               ("p", "Mean ± standard deviation over seeds (n = the runs with a value, 'n=1 of 2' where a run has "
                     "none, as a diverged run's accuracy); every run is a row of runs.csv."),
               ("table", configurations(t)), ("h2", "Skipped jobs")]
    blocks.append(("list", [f"{s.job}: {s.reason}" for s in t.skipped] or ["none"]))
    blocks.append(("p", "Tables in this folder: runs.csv (one row per run), configs.csv (the summary above), "
                        "epochs.csv and layers.csv (every run, long format, with the choice columns)"
                        + (", jacobian.csv." if t.jacobian is not None else ".")))
    return blocks


def convergence_table(t: Tables) -> pd.DataFrame:
    """Per configuration (every varied choice but the seed): the CNN study's convergence epoch (first
    epoch reaching 95% of the final validation accuracy, runs.csv ``convergence_epoch``) and the
    final accuracy it is measured against, mean ± std (n) over the trainable seeds only (as figure
    6: a run at chance has no convergence to speak of), with how many runs are trainable. Both
    columns describe the same runs: a final accuracy pooling the untrainable seeds (0.222 ± 0.063
    (n=2) beside 1/2 trainable) was not the level the convergence epoch reached; every seed's final
    test accuracy is in the grid table. Empty for old tables."""
    if "convergence_epoch" not in t.runs:
        return pd.DataFrame()
    keys = [k for k in t.keys if k != "seed"] or ["activation", "init", "depth"]
    rows = []
    for values, part in t.runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        metric = part["convergence_metric"].iloc[0]
        row["measured on"] = "validation" if metric == "val_acc" else "test"
        trainable = part[part["trainable"].fillna(False).astype(bool)]
        row["trainable"] = f"{len(trainable)}/{len(part)}"
        row["convergence epoch"] = _cell(trainable["convergence_epoch"], 1)
        row["final accuracy"] = _cell(trainable["final_val_acc" if metric == "val_acc" else "final_test_acc"])
        row["never reached"] = f"{int(trainable['convergence_epoch'].isna().sum())}/{len(trainable)}"
        rows.append(row)
    return pd.DataFrame(rows)


def _extra_blocks(t: Tables) -> list[tuple]:
    """The varied keys no figure shows. The figures are drawn once per value of those that vary
    between the drawn runs; of an Optuna search's trials only the best is drawn (the search figure
    shows them all), so a key its trials vary, e.g. optimizer.lr, was said to be drawn once per
    value though one value was."""
    runs = t.runs
    extra = [k for k in t.extra_keys if k.split(".")[0] != "model"]
    trials = search.trials(t) if extra else pd.DataFrame(columns=["job", "search"])
    drawn = runs if trials.empty else runs[runs["job"].isin(search.shown_jobs(runs, trials))]
    per_value = [k for k in extra if drawn[k].nunique(dropna=False) > 1]
    blocks = []
    if per_value:
        blocks.append(("p", f"These runs also vary {', '.join(per_value)}: every figure is drawn once per "
                            f"value (named in its title and file name), so that only seeds are pooled; "
                            f"narrow with e.g. `{per_value[0]}={shown(drawn[per_value[0]].iloc[0])}`."))
    searches = [runs[runs["job"].isin(part["job"])] for _, part in trials.groupby("search", sort=False)]
    in_trials = [k for k in extra if any(part[k].nunique(dropna=False) > 1 for part in searches)]
    if in_trials:
        blocks.append(("p", f"The trials of an Optuna search also vary {', '.join(in_trials)}: the search figure "
                            f"shows every trial; the other figures show each search's best trial only (its value "
                            f"named in their titles and file names); draw another trial with "
                            f"`python analyze.py PATH {in_trials[0]}=VALUE`."))
    return blocks


def _convergence_blocks(t: Tables) -> list[tuple]:
    table = convergence_table(t)
    if table.empty:
        return []
    on = set(t.runs["convergence_metric"])
    which = ("validation accuracy" if on == {"val_acc"} else "test accuracy (these runs hold out no validation "
             "split)" if on == {"test_acc"} else "validation accuracy where the run held out a validation split, "
             "else test accuracy (column 'measured on')")
    return [("h2", "Convergence"),
            ("p", f"Convergence as the CNN study defines it: the first trained epoch whose {which} reaches 95% of "
                  f"its final value. The convergence epoch and the final accuracy it is measured against: mean ± "
                  f"std (n) over the trainable seeds only (runs.csv convergence_epoch; 'never reached': trainable "
                  f"runs without one; every seed's final test accuracy is in the table above)."),
            ("table", table)]


def _shared(runs: pd.DataFrame, settings: list[str]) -> str:
    """Every setting (runs.csv's choices and parameters) that all runs share, each group's choice
    with its parameters in brackets (``model=cnn (channels=[16, 32], norm=none)``). A fixed list of
    eleven keys left out the model, its parameters and the scheduler: a CNN's report read as the
    default MLP's. A parameter an option lacks (cnn's width) is shared by nothing."""
    shared = {c: _setting_text(runs[c].iloc[0]) for c in settings
              if c in runs and runs[c].notna().all() and runs[c].astype(str).nunique() == 1}
    parts, placed = [], set()
    for key, value in shared.items():
        if "." in key:
            continue
        params = [k for k in shared if k.startswith(key + ".")]
        placed.update(params)
        inner = ", ".join(f"{k.split('.', 1)[1]}={shared[k]}" for k in params)
        parts.append(f"{key}={value}" + (f" ({inner})" if inner else ""))
    parts += [f"{k}={v}" for k, v in shared.items() if "." in k and k not in placed]  # its option varies
    return ", ".join(parts) or "none"


def _setting_text(value: object) -> str:
    """A setting as a command line writes it: true/false, numbers as the figures write them."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return shown(value)


THEORY_COLUMNS = {"sigma_w2": "σ_w²", "sigma_b2": "σ_b²", "chi1": "χ₁", "q_star": "q*", "xi_c": "ξ_c",
                  "q_log_misfit": "q misfit", "delta_log_misfit": "δ misfit", "jac_msv_ratio": "mean s² meas/pred"}


def _number(value: float) -> str:
    if pd.isna(value):
        return ""
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def theory_table(t: Tables) -> pd.DataFrame:
    """Per configuration: the hidden layers' mean-field phase and how far the measurements at init
    sit from the predictions (mean over seeds); empty when no run recorded theory. Configurations
    the theory does not cover (result.json ``theory_reason``) are left out: theory_reasons lists them."""
    have = [c for c in THEORY_COLUMNS if c in t.runs and (t.runs[c].notna().any() or c == "q_star")]
    if "chi1" not in have:
        return pd.DataFrame()
    keys = [k for k in t.keys if k != "seed"] or ["activation", "init", "depth"]
    covered = t.runs[t.runs["theory_reason"].isna()] if "theory_reason" in t.runs else t.runs
    rows = []
    for values, part in covered.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        finite = part[have].replace([float("inf"), float("-inf")], float("nan"))
        for col in have:  # inf (a depth scale at criticality) stays inf; otherwise the mean over seeds
            value = part[col].iloc[0] if finite[col].isna().all() else finite[col].mean()
            row[THEORY_COLUMNS[col]] = _number(value)
        if "q_star" in have and part["q_star"].isna().all() and part["chi1"].notna().all():
            row[THEORY_COLUMNS["q_star"]] = "any"  # relu-like exactly at chi1 = 1 without bias
        rows.append(row)
    return pd.DataFrame(rows)


def theory_reasons(t: Tables) -> list[str]:
    """"<model>: <reason>" for each model whose runs recorded why they carry no predictions
    (result.json ``theory_reason``), in the runs' order; several reasons of one model each once."""
    if "theory_reason" not in t.runs:
        return []
    runs = t.runs[t.runs["theory_reason"].notna()]
    model = runs["model_label"] if "model_label" in runs else runs["model"]
    return list(dict.fromkeys(f"{m}: {r}" for m, r in zip(model, runs["theory_reason"])))


def _theory_blocks(t: Tables, figures: list[Figure]) -> list[tuple]:
    """The Theory section: what was predicted, the per-configuration table, the figures."""
    blocks = [("h2", "Theory")]
    reasons = theory_reasons(t)
    if reasons:
        blocks += [("p", "Predicted columns (q_pred, delta_rms_pred, mean_sq_sv_pred and the phase in runs.csv) "
                         "are empty where no mean-field theory covers the model; the jobs recorded why "
                         "(result.json theory_reason):"),
                   ("list", reasons)]
    table = theory_table(t)
    if table.empty and not figures and reasons:
        return blocks
    if table.empty and not figures:
        return blocks + [("p", "These records carry no mean-field predictions (result.json `theory`, layers.csv "
                               "`q_pred` and `delta_rms_pred`, jacobian.csv `mean_sq_sv_pred`): they were "
                               "recorded before initlab wrote them. Rerun the jobs to see theory beside the "
                               "measurements.")]
    blocks.append(("p", "Mean-field theory (initlab.theory, docs/theory.md) for the hidden layers at init: σ_w² = "
                        "fan_in·Var(W) and σ_b² = Var(b); χ₁ = σ_w² E[φ'(h)²] at the fixed point q* (< 1 "
                        "ordered: signals and gradients shrink per layer; > 1 chaotic; 1 critical); ξ_c, the "
                        "depth over which inputs stay distinguishable, which bounds trainable depth to about "
                        "6 ξ_c (Schoenholz et al.). ξ_c is ∞ at criticality, and also wherever q* is 0 or "
                        "unbounded (relu, or tanh without bias): there the signal itself shrinks or grows by "
                        "χ₁ per layer, so χ₁ is the number to read (relu-xavier: χ₁ = 0.5). q* = any: every "
                        "length is a fixed point (relu at σ_w² = 2 without bias). The misfits compare the measurements at init with "
                        "the predictions: q misfit = median over hidden layers of |ln(mean h² / q_pred)|, "
                        "δ misfit the same for rms dL/dh (0.1 ≈ 10% off); mean s² meas/pred is the hidden "
                        "Jacobian's mean squared singular value over its prediction. Mean over seeds; every "
                        "run's values are in runs.csv."))
    if not table.empty:
        blocks.append(("table", table))
    blocks += [("figure", fig.path, fig.caption) for fig in figures]
    return blocks


def _blank_missing(table: pd.DataFrame) -> pd.DataFrame:
    """Cells as text: a parameter that an option lacks (init.std of he_normal) as an empty cell, not
    nan; a number as the figures write it (``shown``): the HTML table wrote 100000.00 and 0.01 with
    one column's decimals, under figures titled optimizer.lr=100000."""
    return table.astype(object).where(table.notna(), "").map(lambda v: shown(v) if isinstance(v, float) else v)


def _md(blocks: list[tuple]) -> str:
    out = []
    for kind, *body in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' if kind == 'h1' else '##'} {body[0]}")
        elif kind == "p":
            out.append(body[0])
        elif kind == "table":
            out.append(_blank_missing(body[0]).to_markdown(index=False))
        elif kind == "figure":
            out.append(f"![{Path(body[0]).stem}]({body[0]})\n\n*{body[1]}*")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in body[0]))
    return "\n\n".join(out) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em}"
       "th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-style:italic}"
       "code{background:#f3f3f3}")


def _html(blocks: list[tuple], out: Path) -> str:
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>initlab analysis</title>"
             f"<style>{CSS}</style></head><body>"]
    for kind, *body in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(body[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_code(html.escape(body[0]))}</p>")
        elif kind == "table":
            parts.append(_blank_missing(body[0]).to_html(index=False, border=0))
        elif kind == "figure":
            data = base64.b64encode((out / body[0]).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(body[1])}'>"
                         f"<figcaption>{html.escape(body[1])}</figcaption></figure>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in body[0]) + "</ul>")
    return "\n".join(parts) + "\n</body></html>\n"


def _code(text: str) -> str:
    """Markdown `code` spans as <code>, so both reports read the same."""
    pieces = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def write(t: Tables, figures: list[Figure], out: Path, sources: list[str], command: str,
          not_drawn: tuple[NotDrawn, ...] = ()) -> Path:
    """report.md and report.html in ``out``; ``not_drawn``: figures that failed, with the reason."""
    blocks = _blocks(t, figures, sources, command, list(not_drawn))
    (out / "report.md").write_text(_md(blocks))
    (out / "report.html").write_text(_html(blocks, out))
    return out / "report.html"
