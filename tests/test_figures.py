"""Every figure family drawn from fabricated job folders (tests/jobfactory.py) and checked for
content: panels, titles, lines, cells, and that no two labels overlap, for grid shapes from 1x2x1
to the full grid. Also log axes with zero or underflowing data, pooling only across seeds, the
figures-not-drawn list, the t-interval bands and analyze.py's figure options.

Plotters run with ``strict=True``: a figure that fails raises here instead of being listed.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from jobfactory import write_job, write_sweep
from matplotlib.collections import PathCollection, PolyCollection
from scipy import stats

import analyze
from initlab import callbacks
from initlab.analysis import tables as analysis
from initlab.analysis.figures import FAMILIES, THEME, ZERO_LABEL, NothingToDraw, Plotter, PoolingError
from initlab.analysis.figures.base import mark_lone_points
from initlab.analysis.figures.layers import round_ticks

CARD = {"activations": ("relu", "tanh"), "inits": ("he_normal", "orthogonal"), "depths": (5, 30, 50)}
FULL = {"activations": ("relu", "tanh", "sigmoid", "gelu"),
        "inits": ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "normal", "zero", "orthogonal",
                  "trunc_normal"),
        "depths": (3, 5, 10, 20, 30, 40, 50), "seeds": (0, 1)}


@pytest.fixture(autouse=True)
def _close_figures():
    """Tests keep figures open to inspect them; close them after each test."""
    with plt.rc_context({"figure.max_open_warning": 0}):
        yield
    plt.close("all")


def plotter_for(root, out, detail=None) -> Plotter:
    """A strict plotter that keeps its figures open and writes coarse PNGs (fast; sizes are in inches)."""
    plotter = Plotter(analysis.load([root]), out, detail_depths=detail, strict=True)
    plotter.kept, plotter.dpi = {}, 40
    return plotter


def draw(root, out, detail=None, only=()):
    """Every figure of the sweep at ``root`` (or the families named in ``only``), kept open:
    (plotter, figures, {file stem: matplotlib Figure})."""
    plotter = plotter_for(root, out, detail)
    figures = [f for name in only for f in getattr(plotter, name)()] if only else plotter.all()
    assert plotter.not_drawn == []
    return plotter, figures, plotter.kept


def _drawn_ticklabels(axis):
    """Tick labels matplotlib draws, major and minor (a narrow log axis labels its minor ticks):
    those of ticks inside the view interval."""
    scale = np.log10 if axis.get_scale() == "log" else (lambda v: v)
    low, high = sorted(scale(np.asarray(axis.get_view_interval(), dtype=float)))
    span = (high - low) * 1e-9
    index = 0 if axis.axis_name == "x" else 1
    labels = axis.get_ticklabels() + axis.get_ticklabels(minor=True)
    return [t for t in labels if t.get_position()[index] > 0 or axis.get_scale() != "log"
            if low - span <= scale(t.get_position()[index]) <= high + span]


def _texts(fig):
    """Every visible, non-empty text of a figure with its name for messages."""
    texts = [("figure text", t) for t in fig.texts]  # the suptitle is one of them
    for legend in fig.legends:
        texts += [("legend", t) for t in legend.get_texts()]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for axis in ("x", "y"):
            obj = getattr(ax, f"{axis}axis")
            texts += [(f"axes {i} {axis} tick", t) for t in _drawn_ticklabels(obj)]
            texts.append((f"axes {i} {axis} label", obj.label))
        texts += [(f"axes {i} title", t) for t in (ax.title, ax._left_title, ax._right_title)]
        texts += [(f"axes {i} text", t) for t in ax.texts]
        if ax.get_legend() is not None:
            texts += [(f"axes {i} legend", t) for t in ax.get_legend().get_texts()]
    return [(name, t) for name, t in texts if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig) -> list[str]:
    """Pairs of texts whose boxes overlap by more than 1 pixel each way (matplotlib's own extents)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = _texts(fig)
    boxes = np.array([t.get_window_extent(renderer).extents for _, t in texts]).reshape(-1, 4)
    x = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    hits = np.argwhere(np.triu((x > 1) & (y > 1), k=1))
    return [f"{texts[i][0]} {texts[i][1].get_text()!r} / {texts[j][0]} {texts[j][1].get_text()!r}" for i, j in hits]


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


# --- shapes from 1x2x1 to the full grid ----------------------------------------------------------
def _check_readable(kept):
    for name, fig in kept.items():
        assert overlapping_texts(fig) == [], name
        for ax in fig.axes:  # every log axis that shows labels: two or more labelled ticks in range
            for axis in (ax.xaxis, ax.yaxis):
                shown = any(t.label1.get_visible() or t.label2.get_visible() for t in axis.get_major_ticks())
                if ax.get_visible() and axis.get_scale() == "log" and shown:
                    labelled = [t.get_text() for t in _drawn_ticklabels(axis) if t.get_text() and t.get_visible()]
                    assert len(labelled) >= 2, (name, ax.get_title(), axis.axis_name, labelled)
        titles = _titles(fig)
        assert len(titles) == len(set(titles)), (name, titles)  # every panel says which it is
        # drawn by overlapping_texts, and unchanged since
        assert fig.get_tightbbox(fig.canvas.get_renderer()).width <= 9.5, name  # inches, as saved


def _check_grid(fig, acts, inits, depths):
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == sorted(acts)
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in depths]
        assert len(ax.texts) == len(inits) * len(depths)  # one number per cell
        assert ax.get_xlabel() == "depth"
    ordered = [i for i in analysis.INITS if i in inits]  # the study's order, related inits together
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ordered  # rows named on the left
    cell_w = fig.get_figwidth() * panels[0].get_position().width / len(depths)
    cell_h = fig.get_figheight() * panels[0].get_position().height / len(inits)
    assert cell_w >= 0.3 and cell_h >= 0.2  # inches: the numbers fit


@pytest.mark.slow
def test_card_example_is_readable(tmp_path):
    """The README's 12-job example: every figure readable, the grid a panel per activation."""
    root = write_sweep(tmp_path / "sweep", **CARD)
    _, figures, kept = draw(root, tmp_path / "out")
    _check_readable(kept)
    _check_grid(kept["grid_test_accuracy"], CARD["activations"], CARD["inits"], CARD["depths"])
    heat = kept["heatmap_act_std_relu_depth50"]
    assert _titles(heat) == list(CARD["inits"])
    assert [t.get_text() for t in heat.axes[0].get_yticklabels()] == ["1", "20", "40"]  # round steps (was 13, 25, 38)


def test_smallest_grid_is_readable(tmp_path):
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "xavier_normal"), (4,), jacobian=False)
    _, _, kept = draw(root, tmp_path / "out")
    _check_readable(kept)
    _check_grid(kept["grid_test_accuracy"], ("relu",), ("he_normal", "xavier_normal"), (4,))


def _cell_texts(ax, xs: tuple[float, float], ys: tuple[float, float]) -> list[str]:
    """The texts drawn inside the cell from ``xs`` to ``ys`` (data coordinates) of ``ax``, as
    matplotlib places them on the canvas: their centre within the cell's pixels."""
    renderer = ax.figure.canvas.get_renderer()
    (x0, y0), (x1, y1) = ax.transData.transform([(xs[0], ys[0]), (xs[1], ys[1])])
    inside = []
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        if text.get_visible() and min(x0, x1) < cx < max(x0, x1) and min(y0, y1) < cy < max(y0, y1):
            inside.append(text.get_text())
    return inside


def test_a_grid_cell_where_every_seed_diverged_shows_its_dagger(tmp_path):
    """The caption promises '†: diverged', but seaborn annotates no NaN cell: a cell whose every seed
    diverged (no accuracy) was hatched and blank. Its † is now drawn in it; a cell with one diverged
    seed keeps its number and †."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "normal"), (3, 5), (0, 1), jacobian=False)
    for depth, seed in ((5, 0), (5, 1), (3, 1)):
        write_job(root / f"activation=relu,depth={depth},init=normal,seed={seed}", init="normal", depth=depth,
                  seed=seed, status="diverged", jacobian=False)
    plotter, figures, kept = draw(root, tmp_path / "out", only=("grid",))
    fig = kept["grid_test_accuracy"]
    fig.canvas.draw()
    ax = next(a for a in fig.axes if a.get_visible() and a.get_title() == "relu")
    rows = [t.get_text() for t in ax.get_yticklabels()]
    normal, he = rows.index("normal"), rows.index("he_normal")
    runs = plotter.runs.set_index(["init", "depth", "seed"])["final_test_acc"]
    assert _cell_texts(ax, (1, 2), (normal, normal + 1)) == ["†"]  # depth 5: both seeds diverged
    assert _cell_texts(ax, (0, 1), (normal, normal + 1)) == [f"{runs['normal', 3, 0]:.2f}".lstrip("0") + "†"]
    assert _cell_texts(ax, (1, 2), (he, he + 1)) == [f"{runs['he_normal', 5].mean():.2f}".lstrip("0")]
    assert "†: diverged in at least one seed" in figures[0].caption
    assert overlapping_texts(fig) == []


ACROSS_MODELS = ("grid", "accuracy_vs_depth", "plain_vs_residual", "epochs_to_95", "grad_norm_per_epoch")


@pytest.mark.parametrize("activations, variants, labels", [
    (("relu", "tanh"), (("mlp", {}), ("resmlp", {}), ("resmlp", {"preact": True})), ("mlp", "resmlp", "resmlp preact")),
    (("relu", "tanh", "selu", "leaky_relu"), (("mlp", {}), ("resmlp", {"preact": True})), ("mlp", "resmlp")),
    (("relu", "tanh", "gelu", "leaky_relu"), (("mlp", {}), ("resmlp", {}), ("resmlp", {"preact": True})),
     ("mlp", "resmlp", "resmlp preact")),  # 12 panels in one row were 0.6 inches wide: two rows of 6 now
], ids=["6 panels", "8 panels", "12 panels"])
def test_a_panel_per_activation_and_model_is_readable(tmp_path, activations, variants, labels):
    """A user's sweep over activations x models: six panels titled "relu, resmlp preact" ran
    into each other in accuracy_vs_depth.png, and its y label "final train acc" into the row
    below's. Every figure drawn across models keeps its titles and labels apart."""
    root = tmp_path / "sweep"
    for act, (model, params), depth in itertools.product(activations, variants, (3, 5)):
        overrides = [f"activation={act}", f"model={model}", f"depth={depth}"]
        overrides += [f"model.{k}={str(v).lower()}" for k, v in params.items()]
        write_job(root / ",".join(overrides), activation=act, model=model, model_params=params or None,
                  depth=depth, overrides=overrides, jacobian=False)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, _, kept = draw(root, tmp_path / "out", only=ACROSS_MODELS)
    assert {"accuracy_vs_depth", "epochs_to_95_vs_depth", "grad_norm_per_epoch"} <= set(kept)
    _check_readable(kept)
    titles = [" ".join(t.split()) for t in _titles(kept["accuracy_vs_depth"])]  # wrapped, never cut
    assert sorted(titles) == sorted(f"{a}, {m}" for a in activations for m in labels)
    fig = kept["accuracy_vs_depth"]
    for ax in (a for a in fig.axes if a.get_visible()):
        box = ax.get_window_extent(fig.canvas.get_renderer())
        assert box.width / fig.dpi >= 0.75 and box.height / fig.dpi >= 0.55, (ax.get_title(), box)  # inches


NINE = ("relu", "tanh", "gelu", "leaky_relu", "elu", "selu", "silu", "sigmoid", "linear")
# wrapped figures of nine activations (and plain_vs_residual, with two models)
WRAPPED = ("accuracy_vs_depth", "epochs_to_95_vs_depth", "grad_norm_per_epoch", "lr_per_epoch",
           "act_std_vs_layer_depth3", "act_std_vs_layer_depth5", "dead_saturated_vs_layer_depth5")


def _check_wrapped(fig, name: str, columns: int) -> None:
    """A facet figure whose ``columns`` panels wrap into blocks: every panel at least 0.75 x 0.55
    inches, and exactly one x label with its tick labels under each column of each block."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for ax in panels:
        box = ax.get_window_extent(renderer)
        assert box.width / fig.dpi >= 0.75 and box.height / fig.dpi >= 0.55, (name, ax.get_title(), box)  # inches
    labelled = [ax for ax in panels if ax.xaxis.label.get_visible() and ax.get_xlabel()]
    assert len(labelled) == columns, name
    for ax in labelled:
        assert any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()), (name, ax.get_title())
    # rows within a block (no x axis between them) stand close; a tight layout spaced them as far
    # apart as the blocks (0.78 in), and 27 panels in accuracy_vs_depth took 22 inches
    rows = sorted({(round(box.y0), round(box.y1)) for box in (ax.get_window_extent(renderer) for ax in panels)},
                  key=lambda row: -row[1])
    block_ends = {round(ax.get_window_extent(renderer).y0) for ax in labelled}
    for upper, lower in zip(rows, rows[1:]):
        gap = (upper[0] - lower[1]) / fig.dpi
        assert gap >= 0.5 if upper[0] in block_ends else gap <= 0.4, (name, upper, lower, gap)


@pytest.mark.slow
@pytest.mark.filterwarnings("error:constrained_layout not applied")
def test_every_activation_side_by_side_is_readable(tmp_path):
    """All nine activations, every figure family: panels more than six a row (five for per-layer
    figures) wrap into blocks of rows, each with its titles, x axes and row labels; a title that
    still cannot fit between its neighbours is split inside a word rather than drawn over them.
    With one row a panel, "depth 5" sat on grad_norm_per_epoch's last tick label, act_std_vs_layer
    was 13.4 inches wide, and the training curves' 13-entry legend shrank their panels to nothing."""
    root = write_sweep(tmp_path / "sweep", NINE, ("he_normal", "xavier_normal"), (3, 5), jacobian=False,
                       epochs=3, lr=[0.1, 0.05, 0.02, 0.01])
    _, _, kept = draw(root, tmp_path / "out", detail=[3, 5])
    _check_readable(kept)
    titles = [" ".join(t.split()) for t in _titles(kept["accuracy_vs_depth"])]
    assert sorted(t.replace("_ ", "_") for t in titles) == sorted(NINE)  # split inside a word at most
    for name in WRAPPED:
        _check_wrapped(kept[name], name, len(NINE))
    for name in ("act_std_vs_layer_depth5", "dead_saturated_vs_layer_depth5"):  # one scale across the blocks
        assert len({ax.get_ylim() for ax in kept[name].axes if ax.get_visible()}) == 1, name
    one_depth = write_sweep(tmp_path / "one_depth", NINE, ("he_normal",), (3,), jacobian=False)
    _, _, curves = draw(one_depth, tmp_path / "out_one", only=("curves_by_init",))
    for name, fig in [("curves_init_he_normal", kept["curves_init_he_normal"]), *curves.items()]:
        for ax in fig.axes:  # 13 legend entries beside one or two rows of panels
            assert ax.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi >= 1.0, name
        assert fig.legends[0].get_window_extent(fig.canvas.get_renderer()).y0 >= 0, name  # within the figure


@pytest.mark.slow
def test_nine_activations_across_two_models_are_readable(tmp_path):
    """plain_vs_residual and grad_norm_per_epoch with a panel per activation, two models; resmlp's
    per-layer figure, whose x label "site (forward order)" ran into its neighbours' five a row."""
    root = tmp_path / "sweep"
    for act, model, depth in itertools.product(NINE, ("mlp", "resmlp"), (3, 5)):
        overrides = [f"activation={act}", f"model={model}", f"depth={depth}"]
        write_job(root / ",".join(overrides), activation=act, model=model, depth=depth, overrides=overrides,
                  jacobian=False)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, _, kept = draw(root, tmp_path / "out", only=("plain_vs_residual", "grad_norm_per_epoch"))
    resmlp = tmp_path / "resmlp"
    for act in NINE:
        write_job(resmlp / f"activation={act}", activation=act, model="resmlp", depth=3, jacobian=False)
    (resmlp / "multirun.yaml").write_text("hydra: {}\n")
    kept.update(draw(resmlp, tmp_path / "out_resmlp", only=("act_std_vs_layer",))[2])
    labels = {ax.get_xlabel().replace("\n", " ") for ax in kept["act_std_vs_layer_depth3"].axes if ax.get_xlabel()}
    assert labels == {"site (forward order)"}
    _check_readable(kept)
    _check_wrapped(kept["plain_vs_residual"], "plain_vs_residual", len(NINE))
    _check_wrapped(kept["grad_norm_per_epoch"], "grad_norm_per_epoch", len(NINE))
    # its two-line y label hung over the panel's ends and spread the block's rows 0.61 in apart
    _check_wrapped(kept["act_std_vs_layer_depth3"], "act_std_vs_layer_depth3 (resmlp)", len(NINE))


def test_a_title_wraps_between_words_and_splits_a_word_only_when_it_must():
    """grad_norm_per_epoch with nine activations: 'leaky_relu' (one word) in a 0.8-inch panel was
    drawn over its neighbour 'linear'."""
    from initlab.analysis.figures.base import _fit_text

    fig = plt.figure()
    renderer = fig.canvas.get_renderer()
    words, word = fig.text(0, 0, "relu, resmlp preact"), fig.text(0, 0.5, "leaky_relu")
    full = word.get_window_extent(renderer).width
    _fit_text(words, words.get_window_extent(renderer).width * 0.7, renderer)
    assert words.get_text() == "relu, resmlp\npreact"  # between words: no word split
    _fit_text(word, full * 0.7, renderer)
    assert "\n" in word.get_text() and word.get_text().replace("\n", "") == "leaky_relu"
    assert word.get_window_extent(renderer).width <= full * 0.7
    plt.close(fig)


def test_depth_3_log_panels_are_labelled_and_readable(tmp_path):
    """The review's act_std_vs_layer_depth3 and curves panels: narrow log ranges on short panels
    (labels 0.9/0.8/0.7 and 3/2.8/2.6 drawn on each other) keep two or more labels, none overlapping."""
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("he_normal", "normal", "trunc_normal"), (3,),
                       jacobian=False)
    _, _, kept = draw(root, tmp_path / "out", only=("act_std_vs_layer", "curves_by_activation", "length_vs_theory"))
    _check_readable(kept)


def test_coinciding_inits_keep_their_own_markers(tmp_path):
    """normal and trunc_normal draw the same per-layer line in the review's act_std figure: each init
    has its own marker, placed at different layers, so the line drawn first still shows."""
    inits = ("he_normal", "normal", "trunc_normal")
    root = write_sweep(tmp_path / "sweep", ("relu",), inits, (12,), jacobian=False)
    _, _, kept = draw(root, tmp_path / "out", only=("act_std_vs_layer",))
    for ax in kept["act_std_vs_layer_depth12"].axes:
        lines = [line for line in ax.lines
                 if line.get_marker() not in (None, "", "None", "v") and len(line.get_xdata())]
        assert len(lines) == len(inits)
        assert len({line.get_marker() for line in lines}) == len(inits)
        shown = [set(range(len(line.get_xdata()))[slice(*line.get_markevery(), None)]) for line in lines]
        assert all(a != b for a, b in itertools.combinations(shown, 2))


@pytest.mark.slow
def test_full_grid_is_readable_and_larger(tmp_path):
    root = write_sweep(tmp_path / "full", **FULL, epochs=3, jacobian=False)
    _, _, kept = draw(root, tmp_path / "out")
    _check_readable(kept)
    grid = kept["grid_test_accuracy"]
    _check_grid(grid, FULL["activations"], FULL["inits"], FULL["depths"])
    small = write_sweep(tmp_path / "small", ("relu", "tanh"), ("he_normal", "orthogonal"), (5, 50))
    _, _, few = draw(small, tmp_path / "out_small", only=("grid", "heatmaps"))
    assert grid.get_figheight() > few["grid_test_accuracy"].get_figheight()  # cells keep their size
    heat = kept["heatmap_act_std_relu_depth50"]
    assert len(_titles(heat)) == 8 and heat.get_figheight() > few["heatmap_act_std_relu_depth50"].get_figheight()


# --- every family, its content -------------------------------------------------------------------
@pytest.mark.slow
def test_every_family_is_drawn_with_its_content(tmp_path):
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("he_normal", "xavier_normal"), (2, 4), (0, 1))
    plotter, figures, kept = draw(root, tmp_path / "out")
    _check_readable(kept)
    expected = {"grid_test_accuracy", "accuracy_vs_depth", "epochs_to_95_vs_depth", "act_std_vs_layer_depth4",
                "grad_norm_vs_layer_depth4", "delta_rms_at_init_depth4", "dead_saturated_vs_layer_depth4",
                "heatmap_act_std_relu_depth4", "heatmap_act_mean_tanh_depth4", "curves_activation_relu",
                "curves_activation_tanh", "curves_init_he_normal", "curves_init_xavier_normal",
                "preact_sq_vs_theory_depth4", "delta_rms_vs_theory_depth4", "jacobian_spectra",
                "jacobian_mean_sq_sv"}
    assert expected <= set(kept), expected - set(kept)
    assert all((tmp_path / "out" / f.path).read_bytes().startswith(b"\x89PNG") for f in figures)

    acc = kept["accuracy_vs_depth"]
    panels = [ax for ax in acc.axes if ax.get_visible()]
    assert len(panels) == 4  # train and test rows x two activations
    assert [ax.get_title() for ax in panels[:2]] == ["relu", "tanh"]
    assert panels[0].get_ylabel() == "final train acc" and panels[2].get_ylabel() == "final test acc"
    assert len([c for c in panels[0].collections if isinstance(c, PolyCollection)]) == 2  # a band per init

    curves = kept["curves_activation_relu"]
    assert curves._suptitle.get_text() == "activation relu"
    assert [ax.get_title() for ax in curves.axes[:2]] == ["accuracy", "loss"]
    assert curves.axes[1].get_yscale() == "log"
    assert len(curves.axes) == 4  # accuracy and loss x two depths

    dead = kept["dead_saturated_vs_layer_depth4"]
    rows = [" ".join(t.get_text().split()) for ax in dead.axes for t in ax.texts]  # titles wrap
    assert {"zero entries", "dead units", "saturated entries"} <= set(rows)

    grad = kept["grad_norm_vs_layer_depth4"]
    assert {ax.get_title() for ax in grad.axes} >= {"at init", "middle of training", "end of training"}
    assert all(ax.get_yscale() == "log" for ax in grad.axes)
    assert {"he_normal", "xavier_normal"} <= {t.get_text() for t in grad.legends[0].get_texts()}
    caption = next(f.caption for f in figures if Path(f.path).name.startswith("grad_norm_vs_layer_depth4"))
    assert "mid-training (epoch 1: half of each run's last epoch, rounded down)" in caption  # 2 epochs

    heat = kept["heatmap_act_std_relu_depth4"]
    mesh = heat.axes[0].collections[0]
    assert mesh.get_array().size == 4 * 3  # layers x epochs 0..2


def test_dead_units_row_tolerates_older_jobs(tmp_path):
    root = tmp_path / "sweep"
    write_job(root / "new", depth=3, seed=0)
    write_job(root / "old", depth=3, seed=1, frac_dead=False)
    _, _, kept = draw(root, tmp_path / "out", only=("dead_and_saturated",))
    rows = {" ".join(t.get_text().split()) for ax in kept["dead_saturated_vs_layer_depth3"].axes for t in ax.texts}
    assert "dead units" in rows
    old = tmp_path / "old_only"
    write_job(old / "old", depth=3, frac_dead=False)
    _, _, kept = draw(old, tmp_path / "out_old", only=("dead_and_saturated",))
    rows = {" ".join(t.get_text().split()) for ax in kept["dead_saturated_vs_layer_depth3"].axes for t in ax.texts}
    assert rows == {"zero entries", "saturated entries"}


def test_band_is_the_t_interval_over_seeds(tmp_path):
    """accuracy_vs_depth: band half-width = t_{0.975, n-1} s / sqrt(n), from NumPy and scipy.stats.t."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "normal"), (3, 6), (0, 1, 2, 3))
    _, _, kept = draw(root, tmp_path / "out", only=("accuracy_vs_depth",))
    runs = analysis.load([root]).runs
    ax = kept["accuracy_vs_depth"].axes[1]  # row "final test acc" (one activation: axes[0] train)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    for band, init in zip(bands, ("he_normal", "normal")):
        verts = band.get_paths()[0].vertices
        for depth in (3, 6):
            acc = runs[(runs["init"] == init) & (runs["depth"] == depth)]["final_test_acc"].to_numpy()
            n = len(acc)
            half = stats.t.ppf(0.975, n - 1) * np.std(acc, ddof=1) / math.sqrt(n)
            ys = verts[np.isclose(verts[:, 0], depth), 1]
            assert ys.max() - ys.min() == pytest.approx(2 * half, rel=1e-9)
            assert (ys.max() + ys.min()) / 2 == pytest.approx(acc.mean(), rel=1e-9)


def test_loss_curves_on_a_log_axis_are_geometric_means_with_the_interval_of_the_logs(tmp_path):
    """The review's curves figure: a linear t-band on the log loss axis dipped below 0 (drawn as a
    block off the panel's bottom). The loss line is the geometric mean over seeds, its band
    exp(mean(log) +- t s/sqrt(n)) of the logs: positive, as on every other log axis."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal",), (3,), (0, 1, 2))
    _, _, kept = draw(root, tmp_path / "out", only=("curves_by_activation",))
    loss = kept["curves_activation_relu"].axes[1]
    assert loss.get_title() == "loss" and loss.get_yscale() == "log"
    epochs = analysis.load([root]).epochs
    for split, line in zip(("test", "train"), [ln for ln in loss.lines if len(ln.get_xdata())][:2]):
        values = epochs.pivot(index="epoch", columns="job", values=f"{split}_loss").to_numpy()
        logs = np.log(values)
        half = stats.t.ppf(0.975, logs.shape[1] - 1) * logs.std(axis=1, ddof=1) / math.sqrt(logs.shape[1])
        np.testing.assert_allclose(line.get_ydata(), np.exp(logs.mean(axis=1)), rtol=1e-9)
        band = [c for c in loss.collections if isinstance(c, PolyCollection)][0 if split == "test" else 1]
        verts = band.get_paths()[0].vertices
        for epoch in range(len(values)):
            ys = verts[np.isclose(verts[:, 0], epoch), 1]
            expected = np.exp(logs[epoch].mean() + np.array([-1, 1]) * half[epoch])
            np.testing.assert_allclose([ys.min(), ys.max()], expected, rtol=1e-9)


PER_LAYER = ("gradients", "act_std_vs_layer", "dead_and_saturated")
ALL_PHASES = ["at init", "middle of training", "end of training"]
GRAD_CAPTION = ("Norm of the weight gradient on the probe batch per layer (layer 4 is the output layer) {}, depth 3, "
                "log scale.")
DEAD_CAPTION = "; {}, depth 3."


@pytest.mark.parametrize("ends, phases, grad, act, dead", [
    ({"he_normal": 4, "normal": 1}, ALL_PHASES,
     "at init, mid-training (epoch 2: half of each run's last epoch, rounded down; none for the 2 of 4 runs that "
     "ended before epoch 2) and the end of training", "at init (top) and after training (bottom)",
     "at init (solid) and after training (dashed)"),
    ({"he_normal": 1, "normal": 1}, ["at init", "end of training"], "at init and the end of training",
     "at init (top) and after training (bottom)", "at init (solid) and after training (dashed)"),
    ({"he_normal": 0, "normal": 0}, ["at init"], "at init", "at init", "at init"),
], ids=["some_diverged_at_epoch_1", "all_ended_at_epoch_1", "all_ended_at_init"])
def test_per_layer_captions_name_the_phases_drawn(tmp_path, ends, phases, grad, act, dead):
    """A sweep whose runs diverged at epoch 1 captioned grad_norm_vs_layer "mid-training (epoch :
    half of each run's last epoch, ...)" over an empty panel: a run has a middle only from epoch 2
    (half of epoch 1 is the init). The per-layer figures now draw and name the phases some run
    has, and say which runs have no middle; runs that ended at init have no end of training either."""
    root = tmp_path / "sweep"
    for (init, last), seed in itertools.product(ends.items(), (0, 1)):
        diverged = last == 1 and init == "normal"
        write_job(root / f"init={init},seed={seed}", init=init, seed=seed, depth=3, epochs=last, jacobian=False,
                  status="diverged" if diverged else "completed", overrides=[f"init={init}", f"seed={seed}"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, figures, kept = draw(root, tmp_path / "out", only=PER_LAYER)
    captions = {Path(f.path).stem: f.caption for f in figures}
    assert captions["grad_norm_vs_layer_depth3"] == GRAD_CAPTION.format(grad)
    assert [ax.get_title() for ax in kept["grad_norm_vs_layer_depth3"].axes] == phases  # none empty
    assert captions["act_std_vs_layer_depth3"].startswith(f"Post-activation std per hidden layer {act}, depth 3")
    rows = [t.get_text().replace("\n", " ") for ax in kept["act_std_vs_layer_depth3"].axes for t in ax.texts]
    assert rows == [{"at init": "at init", "end of training": "after training"}[p] for p in phases if "middle" not in p]
    assert captions["dead_saturated_vs_layer_depth3"].endswith(DEAD_CAPTION.format(dead))
    for name, fig in kept.items():
        for ax in fig.axes:
            assert [line for line in ax.lines if len(line.get_xdata())], (name, ax.get_title())  # nothing empty


def test_a_count_axis_whose_values_are_all_equal_keeps_integer_ticks(tmp_path):
    """The review's epochs_to_95_vs_depth: every run reached 95% at the same epoch, and the y axis
    read 3.90, 4.05, 4.20 (MaxNLocator gives up integers when fewer than two fit)."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "normal"), (3, 6), (0, 1),
                       curve=[0.1, 0.5, 0.8, 0.9, 0.9])
    _, _, kept = draw(root, tmp_path / "out", only=("epochs_to_95",))
    for ax in kept["epochs_to_95_vs_depth"].axes:
        labels = [t.get_text().replace("\u2212", "-") for t in _drawn_ticklabels(ax.yaxis) if t.get_text()]
        assert labels and all(float(v).is_integer() for v in labels), labels


def test_step_figures_of_one_logged_step_keep_integer_ticks(tmp_path):
    """A one-epoch run of one step: the per-layer gradient figure's step axis read 0.96, 0.98, 1.00, ..."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        write_job(root / f"seed={seed}", seed=seed, depth=3, epochs=1, steps_per_epoch=1, overrides=[f"seed={seed}"])
    _, _, kept = draw(root, tmp_path / "out", only=("step_records",))
    assert {"steps_loss_depth3", "steps_grad_norm_depth3"} <= set(kept)
    for name in ("steps_loss_depth3", "steps_grad_norm_depth3"):
        for ax in kept[name].axes:
            labels = [t.get_text().replace("\u2212", "-") for t in _drawn_ticklabels(ax.xaxis) if t.get_text()]
            assert all(float(v).is_integer() for v in labels), (name, labels)


def test_act_std_heatmap_colours_span_the_data(tmp_path):
    """The review's tanh heatmap: the log colour scale ran to 10x the smallest std (to 2 or 4 where
    tanh's std stays below 1), leaving half the map unused. Now it spans the data."""
    root = write_sweep(tmp_path / "sweep", ("tanh",), ("he_normal", "xavier_normal"), (4,))
    _, _, kept = draw(root, tmp_path / "out", only=("heatmaps",))
    layers = analysis.load([root]).layers
    hidden = layers[(layers["kind"] == "hidden")]["act_std"]
    norm = kept["heatmap_act_std_tanh_depth4"].axes[0].collections[0].norm
    assert hidden.max() < 10 * hidden[hidden > 0].min()  # the case the stretch distorted
    assert (norm.vmin, norm.vmax) == pytest.approx((hidden[hidden > 0].min(), hidden.max()))


def test_a_spectrum_wholly_below_the_jacobian_axis_is_named_on_its_panel(tmp_path):
    """A vanishing init's spectrum (here 0.75^100 ~ 3e-13 of he_normal's) lies left of the axis:
    drawn, it was a line along the left spine under a legend entry. Now the panel names it."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "xavier_normal"), (100,))
    _, _, kept = draw(root, tmp_path / "out", only=("jacobian_spectra",))
    ax = kept["jacobian_spectra"].axes[0]
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["he_normal"]
    assert [t.get_text() for t in ax.texts] == [f"every s < {ax.get_xlim()[0]:.0e}: xavier_normal"]
    assert overlapping_texts(kept["jacobian_spectra"]) == []


def test_a_phase_diagram_without_bias_says_its_ordered_side_has_no_curve_yet_shrinks(tmp_path):
    """tanh with sigma_b^2 = 0: q* = 0 and xi_c infinite for sigma_w^2 < 1, so no 6 xi_c curve is
    drawn there, which read as "any depth trains" although chi1 < 1 shrinks every signal."""
    root = tmp_path / "sweep"
    for factor in (0.5, 2.0):
        for depth in (2, 6):
            write_job(root / f"depth={depth},init.factor={factor}", activation="tanh", init="he_normal",
                      depth=depth, init_params={"factor": factor})
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, figures, _ = draw(root, tmp_path / "out", only=("phase_diagram",))
    (figure,) = figures
    assert "with σ_b² = 0, q* = 0 on the ordered side, where ξ_c is infinite (no curve)" in figure.caption


def test_a_phase_diagram_cell_where_every_seed_diverged_shows_its_dagger(tmp_path):
    """As in the grid: a cell of the phase diagram whose every seed diverged has no accuracy, and it
    was left blank, no †; the caption never said what † means."""
    root = tmp_path / "sweep"
    for factor, depth, seed in itertools.product((0.5, 2.0), (2, 6), (0, 1)):
        diverged = depth == 6 and (factor == 2.0 or seed == 1)
        write_job(root / f"depth={depth},init.factor={factor},seed={seed}", activation="tanh", init="he_normal",
                  depth=depth, seed=seed, init_params={"factor": factor},
                  status="diverged" if diverged else "completed")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    plotter, (figure,), kept = draw(root, tmp_path / "out", only=("phase_diagram",))
    (fig,) = kept.values()
    fig.canvas.draw()
    x, y = plotter._edges(np.array([0.5, 2.0]), log=False), plotter._edges(np.array([2, 6]), log=True)
    runs = plotter.runs.set_index(["sigma_w2", "depth", "seed"]).sort_index()
    for ax, metric in zip(fig.axes[:2], ("train", "test")):
        assert _cell_texts(ax, x[1:], y[1:]) == ["†"]  # sigma_w2 2, depth 6: both seeds diverged
        one = runs.loc[(0.5, 6, 0), f"final_{metric}_acc"]  # the other seed diverged
        assert _cell_texts(ax, x[:2], y[1:]) == [f"{one:.2f}".lstrip("0") + "†"]
        both = runs.loc[(2.0, 2), f"final_{metric}_acc"].mean()
        assert _cell_texts(ax, x[1:], y[:2]) == [f"{both:.2f}".lstrip("0")]
    assert "; †: diverged in at least one seed (alone in its cell: in every seed, so no accuracy)" in figure.caption
    assert overlapping_texts(fig) == []


def test_a_large_phase_diagram_marks_the_cells_where_every_seed_diverged(tmp_path):
    """Over 60 cells the numbers and daggers are left out; a cell where every seed diverged was
    then blank, as a cell never run: it is marked x, and the caption says so."""
    root = tmp_path / "sweep"
    factors, depths = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0), (2, 3, 4, 5, 6, 7, 8, 9)
    lost = {(6.0, 9), (4.0, 9)}
    for factor, depth in itertools.product(factors, depths):
        write_job(root / f"depth={depth},init.factor={factor}", activation="tanh", init="he_normal", depth=depth,
                  init_params={"factor": factor}, epochs=1, jacobian=False,
                  status="diverged" if (factor, depth) in lost else "completed")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, (figure,), kept = draw(root, tmp_path / "out", only=("phase_diagram",))
    (fig,) = kept.values()
    for ax in fig.axes[:2]:
        (marks,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert {tuple(p) for p in marks.get_offsets().tolist()} == {(f, float(d)) for f, d in lost}
        assert not ax.texts
    assert "; x: every seed diverged (no accuracy)" in figure.caption


def test_a_phase_diagram_over_many_decades_of_sigma_w2_is_drawn_on_a_log_axis(tmp_path):
    """init.factor up to 1e300: pandas' round(9) of sigma_w^2 = 1e300 gave inf and the figure was
    dropped ("x and y arguments to pcolormesh cannot have non-finite values"); on a linear axis
    every ordinary cell sat squashed at 0."""
    root = tmp_path / "sweep"
    for factor, depth in itertools.product((0.5, 2.0, 1e100, 1e300), (2, 3)):
        write_job(root / f"depth={depth},init.factor={factor}", activation="tanh", init="he_normal", depth=depth,
                  init_params={"factor": factor}, epochs=1, jacobian=False, gain=1.0)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, figures, kept = draw(root, tmp_path / "out", only=("phase_diagram",))
    (fig,) = kept.values()
    assert [ax.get_xscale() for ax in fig.axes[:2]] == ["log", "log"]
    assert fig.axes[0].get_xlim()[1] > 1e300 and fig.axes[0].get_xlim()[0] < 0.5


def test_figure_names_fit_the_file_system_and_absent_keys_read_as_absent():
    """analyze.py over several sweeps named figures by every model parameter (OSError: File name
    too long) and titled the runs without an experiment 'experiment=nan'."""
    from initlab.analysis.figures.base import _context_text, _file_name

    long = "curves_" + "_".join(f"model.param{i}=value{i}" for i in range(40))
    name = _file_name(long, 4)
    assert len(f"{name}.jpeg".encode()) <= 255 and name.startswith("curves_model.param0=value0")
    assert _file_name(long, 4) == name != _file_name(long + "x", 4)
    assert _file_name("act std/site (a)", 3) == "act_std_site_a_"
    assert _context_text({"experiment": float("nan"), "model": "cnn", "optimizer.lr": 0.1}) == (
        "no experiment, model=cnn, optimizer.lr=0.1")


def test_theory_panels_of_runs_covering_a_few_activation_init_pairs_are_one_per_pair(tmp_path):
    """deep_plain's five arms drew a 3 x 4 grid of which 8 panels were empty, its row labels run
    into each other; a panel per pair present now, titled by both."""
    root = tmp_path / "sweep"
    for act, init in (("relu", "he_normal"), ("tanh", "orthogonal"), ("tanh", "xavier_normal")):
        write_job(root / f"activation={act},init={init}", activation=act, init=init, depth=3)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    _, _, kept = draw(root, tmp_path / "out", only=("length_vs_theory",))
    fig = kept["preact_sq_vs_theory_depth3"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert titles == ["relu\nhe_normal", "tanh\nxavier_normal", "tanh\northogonal"]  # the registry's order
    assert overlapping_texts(fig) == []


def test_heatmap_ticks_are_round_steps():
    """The review's heatmaps labelled epochs 0, 1, 3, 4 and layers 1, 11, 21, 30, 40 (linspace
    rounded): now the first value and multiples of a 1-2-5 step."""
    def shown(values, most):
        return [values[i] for i in round_ticks(values, most)]
    assert shown(list(range(5)), 4) == [0, 2, 4]
    assert shown(list(range(1, 41)), 5) == [1, 10, 20, 30, 40]
    assert shown(list(range(1, 11)), 5) == [1, 5, 10]
    assert shown(list(range(1, 6)), 5) == [1, 2, 3, 4, 5]
    assert shown([7], 5) == [7]


# --- log axes with zero, empty or non-finite data ------------------------------------------------
def test_zero_init_is_drawn_with_zero_markers(tmp_path):
    """-m init=zero activation=relu,tanh: every figure drawn, zeros marked, none missing."""
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("zero",), (3,))
    plotter, figures, kept = draw(root, tmp_path / "out", only=("act_std_vs_layer", "gradients", "heatmaps"))
    for name in ("act_std_vs_layer_depth3", "grad_norm_vs_layer_depth3"):
        fig = kept[name]
        marked = [line for ax in fig.axes for line in ax.lines if line.get_marker() == "v" and len(line.get_xdata())]
        assert marked, name
        assert ZERO_LABEL in {t.get_text() for t in fig.legends[0].get_texts()}
    mesh = kept["heatmap_act_std_relu_depth3"].axes[0].collections[0]
    colours = mesh.to_rgba(mesh.get_array())
    assert mesh.get_array().size == 3 * 3
    assert np.allclose(colours, mesh.cmap.get_under())  # every cell exactly 0: light grey, below the colours


def test_a_heatmap_tells_non_finite_cells_from_zeros(tmp_path):
    """elu with alpha=3e38 (init=normal std 10): layers 2 and 3 have NaN act_std; they were drawn in
    the same grey as cells that are exactly 0. Now zeros are light grey (the colour map's "under"),
    non-finite cells dark grey (left undrawn over the axes' face), and the caption says so."""
    from conftest import compose_config, run_job

    from initlab.analysis.figures.layers import NOT_FINITE

    run = tmp_path / "run"
    run_job(compose_config("activation=elu", "activation.alpha=3e38", "init=normal", "init.std=10", "epochs=1",
                           "depth=3", "model.width=8", "threads=1", "device=cpu"), run)
    _, figures, kept = draw(run, tmp_path / "out", only=("heatmaps",))
    for stat in ("act_std", "act_mean"):
        ax = kept[f"heatmap_{stat}_elu_depth3"].axes[0]
        mesh = ax.collections[0]
        assert np.ravel(mesh.get_array().mask).tolist() == [False, True, True]  # layer 1 finite, 2 and 3 NaN
        assert np.allclose(ax.get_facecolor()[:3], matplotlib.colors.to_rgb(NOT_FINITE))
        assert not np.allclose(matplotlib.colors.to_rgb(NOT_FINITE), mesh.cmap.get_under()[:3])
    captions = {Path(f.path).stem: f.caption for f in figures}
    assert "dark grey cells are not finite: the run diverged" in captions["heatmap_act_std_elu_depth3"]


def test_underflow_at_depth_500_is_drawn(tmp_path):
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("he_normal",), (500,), epochs=1, gain=0.1,
                       jacobian=False)
    _, _, kept = draw(root, tmp_path / "out", only=("act_std_vs_layer",))
    fig = kept["act_std_vs_layer_depth500"]
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    floor = min(line.get_ydata().min() for line in ax.lines if line.get_marker() == "v" and len(line.get_xdata()))
    assert 0 < floor <= 1e-299 and ax.get_ylim()[0] < floor


def test_a_figure_that_cannot_be_drawn_is_reported(tmp_path, caplog):
    """All act_std non-finite: act_std_vs_layer is listed by its file name (as README.md names it)
    with the reason in report.md and .html, logged, and raises under strict."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "orthogonal"), (3,), jacobian=False)
    for job in root.glob("activation=*"):
        layers = pd.read_csv(job / "layers.csv")
        layers["act_std"] = np.inf
        layers.to_csv(job / "layers.csv", index=False)
    with pytest.raises(NothingToDraw, match="no finite act_std"):
        plotter_for(root, tmp_path / "strict").all()
    with caplog.at_level(logging.WARNING):
        assert analyze.main([str(root)]) == 0
    assert any("could not draw act_std_vs_layer_depth*.png: no finite act_std" in r.getMessage()
               for r in caplog.records)
    md = (root / "analysis" / "report.md").read_text()
    listed = md.split("## Figures not drawn", 1)[1].split("\n## ", 1)[0]
    assert "- act_std_vs_layer_depth*.png: no finite act_std" in listed
    assert "act_std_vs_layer_depth*.png: no finite act_std" in (root / "analysis" / "report.html").read_text()


def test_every_figure_family_is_named_by_the_files_readme_lists(tmp_path):
    """A figure not drawn is named by its file (README.md's list), for every family, not by the
    method ("gradients", "delta_at_init") that draws it."""
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal",), (3,))
    plotter = plotter_for(root, tmp_path / "out")
    steps = [family.method for family in FAMILIES]
    assert all(callable(getattr(plotter, step)) for step in steps)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert plotter.files["gradients"] == "grad_norm_vs_layer_depth*.png"
    assert plotter.files["delta_at_init"] == "delta_rms_at_init_depth*.png"
    for step in steps:
        assert f"`{plotter.files[step]}`" in readme, step


# --- pooling only across seeds ---------------------------------------------------------------------
def _mode_sweep(root, modes=("fan_in", "fan_out"), factors=(0.5, 1.0, 2.0)):
    for mode, factor, seed in itertools.product(modes, factors, (0, 1)):
        write_job(root / f"init.factor={factor},init.mode={mode},seed={seed}", depth=3, seed=seed,
                  init_params={"factor": factor, "mode": mode},
                  overrides=[f"init.factor={factor}", f"init.mode={mode}", f"seed={seed}"])
    return root


def test_he_factor_splits_by_mode_and_states_the_rule(tmp_path):
    root = _mode_sweep(tmp_path / "sweep")
    _, figures, kept = draw(root, tmp_path / "out", only=("he_factor",))
    he = {name: fig for name, fig in kept.items() if name.startswith("he_factor")}
    assert set(he) == {"he_factor_relu_he_normal_depth3_fan_in", "he_factor_relu_he_normal_depth3_fan_out"}
    assert he["he_factor_relu_he_normal_depth3_fan_out"]._suptitle.get_text().endswith("Var(W) = factor / fan_out")
    assert he["he_factor_relu_he_normal_depth3_fan_in"]._suptitle.get_text().endswith("Var(W) = factor / fan_in")
    legend = he["he_factor_relu_he_normal_depth3_fan_in"].axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()][1:4] == ["0.5", "1", "2"]
    loss = he["he_factor_relu_he_normal_depth3_fan_in"].axes[1]  # log axis: bands of the logs, never <= 0
    lows = [c.get_paths()[0].vertices[:, 1].min() for c in loss.collections if isinstance(c, PolyCollection)]
    assert lows and min(lows) > 0, lows
    one = _mode_sweep(tmp_path / "fan_out_only", modes=("fan_out",))
    _, _, kept = draw(one, tmp_path / "out_one", only=("he_factor",))
    assert kept["he_factor_relu_he_normal_depth3"]._suptitle.get_text().endswith("Var(W) = factor / fan_out")


def test_pooling_runs_that_differ_in_more_than_the_seed_is_refused(tmp_path):
    root = _mode_sweep(tmp_path / "sweep")
    plotter = Plotter(analysis.load([root]), tmp_path / "out", strict=True)
    runs = plotter.runs
    with pytest.raises(PoolingError, match="init.mode"):
        plotter._he_factor_panel(runs, "relu", "he_normal", 3, {})


@pytest.mark.slow
def test_keys_no_figure_shows_split_every_figure(tmp_path):
    root = tmp_path / "sweep"
    for lr, init, seed in itertools.product((0.01, 0.1), ("he_normal", "orthogonal"), (0,)):
        write_job(root / f"init={init},optimizer.lr={lr},seed={seed}", init=init, seed=seed, depth=3,
                  optimizer_params={"lr": lr}, overrides=[f"init={init}", f"optimizer.lr={lr}", f"seed={seed}"])
    plotter, figures, kept = draw(root, tmp_path / "out")
    for name, fig in kept.items():
        assert "optimizer.lr=" in name, name
        lr = "0.01" if "optimizer.lr=0.01" in name else "0.1"
        assert fig._suptitle is not None and f"optimizer.lr={lr}" in fig._suptitle.get_text(), name
    for figure in figures:
        lr = "0.01" if "optimizer.lr=0.01" in figure.path else "0.1"
        assert figure.caption.startswith(f"optimizer.lr={lr}. "), figure.path
    assert len(figures) == len(kept) and {f.path.count("optimizer.lr=0.01") for f in figures} == {0, 1}


class GridOnly(Plotter):
    """The grid family alone, split per context as Plotter.all splits every family (fast)."""

    families = tuple(f for f in FAMILIES if f.method == "grid")


def test_a_value_reads_alike_in_figure_titles_and_file_names(tmp_path):
    """The user test's figures were named optimizer.lr=100000.0 beside optimizer.lr=0.05 and titled
    optimizer.lr=100000: file names wrote str(value), titles :g. Both now write the title's number,
    with the digits that keep two values apart, and a file name keeps its exponent's +."""
    root = tmp_path / "sweep"
    written = {100000.0: "100000", 0.05: "0.05", 1e6: "1e+06", 0.1234567: "0.1234567", 0.1234568: "0.1234568",
               0.1 + 0.2: "0.3"}  # the last as Hydra's range writes 0.3
    for (lr, text), init in itertools.product(written.items(), ("he_normal", "orthogonal")):
        write_job(root / f"init={init},optimizer.lr={text}", init=init, depth=3, jacobian=False,
                  optimizer_params={"lr": lr}, overrides=[f"init={init}", f"optimizer.lr={lr!r}"])
    plotter = GridOnly(analysis.load([root]), tmp_path / "out", strict=True)
    plotter.kept, plotter.dpi = {}, 40
    figures = plotter.all()
    assert sorted(Path(f.path).name for f in figures) == sorted(
        f"grid_test_accuracy_optimizer.lr={text}.png" for text in written.values())
    for figure in figures:
        text = Path(figure.path).stem.split("optimizer.lr=")[1]
        assert (tmp_path / "out" / figure.path).is_file()
        assert plotter.kept[Path(figure.path).stem]._suptitle.get_text() == f"optimizer.lr={text}"
        assert figure.caption.startswith(f"optimizer.lr={text}. ")


def test_values_that_read_alike_never_share_a_figure_file(tmp_path, caplog):
    """optimizer.lr=0.3 and 0.30000000000000004 (Hydra's range) read alike: their figures were
    written to one file (68 figures reported, 53 files, report.md embedding one twice)."""
    root = tmp_path / "sweep"
    for lr, init in itertools.product((0.3, 0.1 + 0.2), ("he_normal", "orthogonal")):
        write_job(root / f"init={init},optimizer.lr={lr!r}", init=init, depth=3, jacobian=False,
                  optimizer_params={"lr": lr}, overrides=[f"init={init}", f"optimizer.lr={lr!r}"])
    plotter = GridOnly(analysis.load([root]), tmp_path / "out", strict=True)
    plotter.dpi = 40
    with caplog.at_level(logging.WARNING):
        figures = plotter.all()
    assert sorted(Path(f.path).name for f in figures) == ["grid_test_accuracy_optimizer.lr=0.3.png",
                                                          "grid_test_accuracy_optimizer.lr=0.3_2.png"]
    assert all((tmp_path / "out" / f.path).is_file() for f in figures)
    assert "a second figure of that name" in caplog.text


def test_value_text_is_the_g_format_with_the_digits_that_tell_values_apart():
    from initlab.analysis.figures.base import _file_name, shown
    from initlab.analysis.tables import value_text

    cases = {100000.0: "100000", 64.0: "64", 0.05: "0.05", 1e-5: "1e-05", 1e6: "1e+06", -2.5: "-2.5",
             0.1234567: "0.1234567", 0.1234568: "0.1234568", 0.1 + 0.2: "0.3",
             0.05000000100624: "0.05"}  # a float32 sigma_b2, rounded to 12 decimals: sb2_0.050000001006
    assert {v: value_text(v) for v in cases} == cases
    assert [f"{v:g}" for v in (100000.0, 0.05, 1e6)] == ["100000", "0.05", "1e+06"]  # where :g is exact, :g
    assert (shown(np.float64(100000.0)), shown(np.int64(3)), shown("fan_in")) == ("100000", "3", "fan_in")
    assert _file_name("grid_optimizer.lr=1e+06", 3) == "grid_optimizer.lr=1e+06"


# --- analyze.py's figure options ---------------------------------------------------------------------
def test_formats_write_pdf_and_svg(tmp_path):
    assert analyze.parse(["x", "--format", "pdf", "svg"]).format == ["pdf", "svg"]
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "orthogonal"), (2, 3))
    plotter = Plotter(analysis.load([root]), tmp_path / "out", formats=("pdf", "svg"), strict=True)
    plotter.dpi = 40
    figures = plotter.accuracy_vs_depth() + plotter.grid()
    assert len(figures) == 2
    for figure in figures:
        png = tmp_path / "out" / figure.path
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")
        head = png.with_suffix(".svg").read_bytes()[:400]
        assert head.startswith(b"<?xml") and b"<svg" in head


def test_detail_depth_chooses_the_per_layer_figures(tmp_path):
    assert analyze.parse(["x", "--detail-depth", "5", "30"]).detail_depth == [5, 30]
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "orthogonal"), (5, 30, 50))
    _, _, kept = draw(root, tmp_path / "out", detail=[5, 30], only=("act_std_vs_layer", "heatmaps"))
    assert set(kept) == {"act_std_vs_layer_depth5", "act_std_vs_layer_depth30", "heatmap_act_std_relu_depth5",
                         "heatmap_act_std_relu_depth30", "heatmap_act_mean_relu_depth5", "heatmap_act_mean_relu_depth30"}
    assert len(kept["act_std_vs_layer_depth30"].axes[0].lines[0].get_xdata()) == 30  # a point per hidden layer
    _, _, default = draw(root, tmp_path / "default", only=("act_std_vs_layer",))
    assert set(default) == {"act_std_vs_layer_depth50"}  # the deepest


def test_margin_changes_trainable_by_value(tmp_path):
    assert analyze.parse(["x", "--margin", "0.05"]).margin == 0.05
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal", "orthogonal", "normal"), (5, 30, 50))
    verdicts = set()
    for margin in (0.05, 0.3, 0.8):
        runs = analysis.load([root], margin=margin).runs
        assert (runs["trainable"].to_numpy() == (runs["final_test_acc"] > 0.1 + margin).to_numpy()).all()
        verdicts.add(tuple(runs["trainable"]))
    assert len(verdicts) == 3


@pytest.mark.slow
def test_report_of_a_normal_sweep_with_a_failed_job(tmp_path):
    """analyze.py end to end: nothing missing, every figure embedded once; an unfinished job with
    its log's hint, a failed one with the reason from its FAILED file (initlab.callbacks)."""
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("he_normal", "zero"), (2,))
    failed = root / "activation=relu,depth=2,init=normal,seed=0"
    (failed / ".hydra").mkdir(parents=True)
    (failed / "train.log").write_text(
        "[2026-12-01 01:00:00,000][initlab.train.job][INFO] - epoch 0/2\n"
        "[2026-12-01 01:00:01,000][initlab.train.job][ERROR] - RuntimeError: CUDA out of memory\n")
    crashed = root / "activation=tanh,depth=2,init=normal,seed=0"
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / callbacks.FAILED).write_text("ValueError: probe_size 0 must be positive\n")
    assert analyze.main([str(root)]) == 0
    md = (root / "analysis" / "report.md").read_text()
    assert "## Figures not drawn\n\n- none\n" in md
    pngs = sorted((root / "analysis" / "figures").glob("*.png"))
    assert len(pngs) > 10 and md.count("](figures/") == len(pngs)
    skipped = md.split("## Skipped jobs", 1)[1]
    assert f"- {failed.name}: unfinished: no result.json (log: RuntimeError: CUDA out of memory)" in skipped
    assert f"- {crashed.name}: failed: ValueError: probe_size 0 must be positive" in skipped


# --- log axes: labelled ticks in range, never overlapping ---------------------------------------
NARROW_LOG_RANGES = [(0.68, 0.92), (2.55, 3.05), (0.35, 0.95), (0.6, 1.3), (0.25, 1.2), (1e-3, 0.9),
                     (1e-12, 2.0), (0.999, 1.001), (40.0, 60.0)]


@pytest.mark.parametrize("theme, height", [("matplotlib", 0.9), ("matplotlib", 1.6), ("matplotlib", 3.0),
                                           ("house", 1.6), ("house", 3.0)])
@pytest.mark.parametrize("low, high", NARROW_LOG_RANGES)
def test_log_axis_labels_are_in_range_and_apart(low, high, theme, height):
    """The review's cases (0.9/0.8/0.7 and 3/2.8/2.6 drawn on each other; only 1 and 0.3 on a
    0.35-0.95 panel) and their kind: any range, a panel of any height, both axes, matplotlib's
    fonts and the larger ones of the figures' theme (a 0.9-inch panel in that theme keeps 18
    pixels of axis after tight_layout, less than two labels need: not a case the figures draw)."""
    if theme == "house":
        sns.set_theme(**THEME)  # undone after the test (conftest's matplotlib_settings)
    fig, axes = plt.subplots(1, 2, figsize=(4, height), dpi=100)
    for ax in axes:
        ax.plot([1, 2], [low, high])
        ax.set_yscale("log")
        ax.set_ylim(low, high)
    axes[1].set(xscale="log", xlim=(low, high))
    for axis in (axes[0].yaxis, axes[1].yaxis, axes[1].xaxis):
        Plotter._plain_log_ticks(axis)
    fig.tight_layout()
    assert overlapping_texts(fig) == []
    for axis in (axes[0].yaxis, axes[1].xaxis):
        labelled = [t for t in _drawn_ticklabels(axis) if t.get_text()]
        assert len(labelled) >= 2, (axis.axis_name, [t.get_text() for t in labelled])


def test_drawing_leaves_matplotlib_settings_as_it_found_them(tmp_path):
    """The figures' theme is scoped to drawing: a caller's (or the next test's) fonts are its own."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    root = write_sweep(tmp_path / "sweep", ("relu",), ("he_normal",), (2,))
    assert analyze.main([str(root)]) == 0
    after = dict(matplotlib.rcParams)
    assert {k: (before[k], after[k]) for k in before if str(before[k]) != str(after[k])} == {}


def test_a_series_of_one_point_is_drawn_as_a_marker(tmp_path):
    """epochs=1: grad_norm_per_epoch has one value per run (epoch 1; epoch 0 has no step), and its
    lines drew nothing: each lone point now carries a marker of its line's colour."""
    root = write_sweep(tmp_path / "sweep", ("relu", "tanh"), ("he_normal", "orthogonal"), (3,), epochs=1)
    _, _, kept = draw(root, tmp_path / "out", only=("grad_norm_per_epoch",))
    fig = kept["grad_norm_per_epoch"]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        lines = [line for line in ax.lines if line.get_linestyle() not in ("None", "") and len(line.get_xdata())]
        marks = [line for line in ax.lines if line.get_marker() == "o" and line.get_linestyle() in ("None", "")]
        assert len(lines) == 2 and len(marks) == 2  # one per init, at epoch 1
        assert {tuple(m.get_xdata()) for m in marks} == {(1.0,)}
        assert {m.get_color() for m in marks} == {line.get_color() for line in lines}
    # epochs=0 (the user test's transformer): the training curves were empty panels, "0 not drawn"
    root = write_sweep(tmp_path / "init_only", ("relu",), ("he_normal", "orthogonal"), (3,), epochs=0)
    _, _, kept = draw(root, tmp_path / "out0", only=("curves_by_activation",))
    for ax in kept["curves_activation_relu"].axes:
        assert len([line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == 1]) >= 2


def test_only_points_without_a_drawn_neighbour_get_a_marker():
    """A line of five values with a gap: the point between two gaps (and NaNs, or zeros on a log
    axis) gets a marker, points inside a segment do not."""
    fig, (lin, log) = plt.subplots(1, 2)
    lin.plot([0, 1, 2, 3, 4], [1.0, np.nan, 2.0, np.nan, 3.0], color="red")
    lin.plot([0, 1, 2], [1.0, 2.0, 3.0], color="blue")
    log.set_yscale("log")
    log.plot([0, 1, 2, 3], [1.0, 0.0, 2.0, 3.0], color="green")
    mark_lone_points(fig)
    marks = {(m.get_color(), tuple(m.get_xdata())) for ax in (lin, log) for m in ax.lines if m.get_marker() == "o"}
    assert marks == {("red", (0.0, 2.0, 4.0)), ("green", (0.0,))}


def test_a_run_that_diverged_at_init_has_its_curves_listed_not_drawn(tmp_path):
    """init=normal init.std=1e12 diverges at epoch 0: its losses and accuracies are NaN from the
    start, and curves_*.png was drawn with empty axes and a legend without entries (seaborn's
    "Ignoring palette" warnings on stderr) instead of being listed under "Figures not drawn"."""
    from conftest import compose_config, run_job

    run = tmp_path / "run"
    result = run_job(compose_config("init=normal", "init.std=1e12", "epochs=1", "depth=2", "model.width=8",
                                    "threads=1", "device=cpu"), run)
    assert (result["status"], result["diverged_epoch"]) == ("diverged", 0)
    plotter = Plotter(analysis.load([run]), tmp_path / "out")
    assert plotter.curves("activation") + plotter.curves("init") == []
    assert [(n.figure, n.reason) for n in plotter.not_drawn] == [
        ("curves_activation_relu.png", "no finite accuracy or loss: every activation=relu run diverged at init"),
        ("curves_init_normal.png", "no finite accuracy or loss: every init=normal run diverged at init")]
    with pytest.raises(NothingToDraw, match="^curves_init_normal.png: no finite accuracy or loss"):
        Plotter(analysis.load([run]), tmp_path / "strict", strict=True).curves("init")


def test_kernel_shaped_labels_fit_their_panels(tmp_path):
    """-m activation=tanh,selu activation.transform=none,tat,dks: the grid's one-depth panels are
    titled "tanh transform=none" and ran into each other; the theory figures' row titles on the
    right ran into the next row's. Titles now get panels as wide as their longest word, and row
    titles wrap to the panel's height."""
    from conftest import compose_config, run_job

    root = tmp_path / "sweep"
    for act, transform in itertools.product(("tanh", "selu"), ("none", "tat", "dks")):
        run_job(compose_config(f"activation={act}", f"activation.transform={transform}", "init=scaled_orthogonal",
                               "epochs=1", "depth=4", "model.width=16", "threads=1", "device=cpu",
                               "jacobian_every=0"),
                root / f"activation={act},activation.transform={transform}")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    sns.set_theme(**THEME)  # the fonts analyze.py draws with (undone after the test: conftest's matplotlib_settings)
    _, _, kept = draw(root, tmp_path / "out", only=("grid", "length_vs_theory"))
    assert "tanh\ntransform=none" in _titles(kept["grid_test_accuracy"])
    _check_readable(kept)
