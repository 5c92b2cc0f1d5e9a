"""Figures from the analysis tables: one module per figure family, composed into one Plotter.

``FAMILIES`` is the registry, in report order: the method that draws a family, the files it
writes, and whether it draws several models side by side (``across_models``; the others are drawn
once per model) or every run of the analysis at once (``whole_sweep``: an Optuna search, whose
searched keys would otherwise split it into one figure set per trial). A new family is a module with a mixin class plus one entry here.
"""

from __future__ import annotations

from initlab.analysis.figures.base import (THEME, ZERO_LABEL, Family, Figure, NotDrawn, NothingToDraw, PlotterBase,
                                           PoolingError, remove_stale)
from initlab.analysis.figures.curves import CurveFigures
from initlab.analysis.figures.depth import DepthFigures
from initlab.analysis.figures.distributions import DistributionFigures
from initlab.analysis.figures.he_factor import HeFactorFigures
from initlab.analysis.figures.layers import LayerFigures
from initlab.analysis.figures.schedule import ScheduleFigures
from initlab.analysis.figures.search import SearchFigures
from initlab.analysis.figures.steps import StepFigures
from initlab.analysis.figures.theory import THEORY, TheoryFigures

FAMILIES = (
    Family("search", "search_*.png", whole_sweep=True),
    Family("grid", "grid_test_accuracy.png", across_models=True),
    Family("accuracy_vs_depth", "accuracy_vs_depth.png", across_models=True),
    Family("plain_vs_residual", "plain_vs_residual.png", across_models=True),
    Family("epochs_to_95", "epochs_to_95_vs_depth.png", across_models=True),
    Family("act_std_vs_layer", "act_std_vs_layer_depth*.png"),
    Family("gradients", "grad_norm_vs_layer_depth*.png"),
    Family("delta_at_init", "delta_rms_at_init_depth*.png"),
    Family("dead_and_saturated", "dead_saturated_vs_layer_depth*.png"),
    Family("heatmaps", "heatmap_*.png"),
    Family("curves_by_activation", "curves_activation_*.png"),
    Family("curves_by_init", "curves_init_*.png"),
    Family("grad_norm_per_epoch", "grad_norm_per_epoch.png", across_models=True),
    Family("lr_per_epoch", "lr_per_epoch.png"),
    Family("step_records", "steps_*_depth*.png"),
    Family("distribution_fans", "distribution_fan_*.png"),
    Family("distribution_images", "distribution_hist_*.png"),
    Family("he_factor", "he_factor_*.png"),
    Family("phase_diagram", "phase_diagram_*.png"),
    Family("length_vs_theory", "preact_sq_vs_theory_depth*.png"),
    Family("delta_vs_theory", "delta_rms_vs_theory_depth*.png"),
    Family("jacobian_spectra", "jacobian_spectra.png"),
    Family("jacobian_mean_sq", "jacobian_mean_sq_sv.png"),
)


class Plotter(PlotterBase, DepthFigures, LayerFigures, CurveFigures, ScheduleFigures, StepFigures, DistributionFigures,
              HeFactorFigures, TheoryFigures, SearchFigures):
    """Every figure family of FAMILIES."""

    families = FAMILIES


__all__ = ["FAMILIES", "THEME", "THEORY", "ZERO_LABEL", "Family", "Figure", "NotDrawn", "NothingToDraw", "Plotter",
           "PoolingError", "remove_stale"]
