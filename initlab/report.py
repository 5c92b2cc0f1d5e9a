"""report.md and a self-contained report.html (figures embedded) from the tables and figures.

Both are rendered from one list of blocks, so the two files always say the same thing.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from initlab.analysis import Tables
from initlab.plots import Figure

METRICS = {"final_train_acc": "final train acc", "final_test_acc": "final test acc",
           "best_test_acc": "best test acc", "final_test_loss": "final test loss",
           "epochs_to_95_peak_train": "epochs to 95% peak train",
           "epochs_to_95_final_test": "epochs to 95% final test", "s_per_epoch": "s/epoch"}


def _cell(values: pd.Series, digits: int = 3) -> str:
    """mean ± std (n) over seeds; a single value as is."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f} (n={len(values)})"


def configurations(t: Tables) -> pd.DataFrame:
    """One row per configuration (every varied choice but the seed), metrics as mean ± std (n)."""
    keys = [k for k in t.keys if k != "seed"] or ["activation", "init", "depth"]
    rows = []
    for values, part in t.runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        row["runs"] = len(part)
        row["status"] = ", ".join(f"{n} {s}" for s, n in part["status"].value_counts().items())
        row.update({label: _cell(part[col], 1 if col.startswith("epochs") else 3) for col, label in METRICS.items()})
        row["trainable"] = f"{part['trainable'].sum()}/{len(part)}"
        rows.append(row)
    return pd.DataFrame(rows)


def grid_table(t: Tables) -> pd.DataFrame:
    """Final test accuracy, a row per configuration and a column per depth (the reference's table);
    a row per depth when nothing else varies."""
    keys = [k for k in t.keys if k not in ("seed", "depth")]
    cells = {}
    for values, part in t.runs.groupby([*keys, "depth"], sort=False, dropna=False):
        text = _cell(part["final_test_acc"])
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


def _blocks(t: Tables, figures: list[Figure], sources: list[str], command: str) -> list[tuple]:
    runs = t.runs
    status = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    blocks = [("h1", "initlab analysis"),
              ("p", f"Sources: {', '.join(sources)}. {len(runs)} runs ({status}); {len(t.skipped)} job "
                    f"folder(s) skipped. Made with `{command}`."),
              ("p", "Settings shared by every run: " + _shared(runs) + ".")]
    if t.extra_keys:
        blocks.append(("p", f"Note: these runs also vary {', '.join(t.extra_keys)}, which the figures "
                            f"do not separate (they pool over them); narrow with e.g. "
                            f"`{t.extra_keys[0]}={runs[t.extra_keys[0]].iloc[0]}`."))
    chance = ", ".join(f"{c:.2g}" for c in runs["chance"].dropna().unique()) or "unknown"
    blocks += [("h2", "Final test accuracy"),
               ("p", f"Mean ± std (n) over seeds. † diverged (in at least one seed); ✗ not trainable: final test "
                     f"accuracy at most chance ({chance}) + {t.margin:g}."),
               ("table", grid_table(t))]
    section = None
    for fig in figures:
        if fig.section != section:
            section = fig.section
            blocks.append(("h2", section))
        blocks.append(("figure", fig.path, fig.caption))
    blocks += [("h2", "Theory"), ("p", _theory(t))]
    blocks += [("h2", "Per-configuration summary"),
               ("p", "Mean ± standard deviation over seeds (n = number of runs); every run is a row of runs.csv."),
               ("table", configurations(t)), ("h2", "Skipped jobs")]
    blocks.append(("list", [f"{s.job}: {s.reason}" for s in t.skipped] or ["none"]))
    blocks.append(("p", "Tables in this folder: runs.csv (one row per run), configs.csv (the summary above), "
                        "epochs.csv and layers.csv (every run, long format, with the choice columns)"
                        + (", jacobian.csv." if t.jacobian is not None else ".")))
    return blocks


def _shared(runs: pd.DataFrame) -> str:
    cols = ["activation", "init", "depth", "dataset", "optimizer", "optimizer.lr", "batch_size", "epochs", "seed",
            "model.width", "probe_size"]
    parts = [f"{c}={runs[c].iloc[0]}" for c in cols if c in runs and runs[c].nunique() == 1]
    return ", ".join(parts) or "none"


def _theory(t: Tables) -> str:
    """Where the mean-field predictions go once the records carry them."""
    have = [c for c in t.runs if c.startswith("theory.")]
    have += [c for c in ("q_pred", "delta_rms_pred") if c in t.layers]
    have += ["jacobian.csv"] if t.jacobian is not None else []
    if not have:
        return "These records carry no theory predictions (result.json `theory`, layers.csv `q_pred`, " \
               "`delta_rms_pred`, jacobian.csv); the theory figures will appear here."
    return (f"These records carry theory predictions ({', '.join(have)}), copied into this folder's tables; "
            f"the theory figures will appear in this section.")


def _blank_missing(table: pd.DataFrame) -> pd.DataFrame:
    """A parameter that an option lacks (init.std of he_normal) shows as an empty cell, not nan."""
    return table.astype(object).where(table.notna(), "")


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


def write(t: Tables, figures: list[Figure], out: Path, sources: list[str], command: str) -> Path:
    blocks = _blocks(t, figures, sources, command)
    (out / "report.md").write_text(_md(blocks))
    (out / "report.html").write_text(_html(blocks, out))
    return out / "report.html"
