"""Facet grids whose columns wrap into blocks of rows.

More than a handful of panels side by side are too narrow to read on a 7-inch page (twelve in one
row were 0.6 inches wide, nine put "depth 5" over the last panel's tick label), so a grid of
``rows`` x ``cols`` panels continues below in another block of ``rows`` rows once a row holds
``most`` panels. Each block keeps its own column titles, x axes and row labels, so every panel
reads on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import pandas as pd
import seaborn as sns

PANELS_A_ROW = 6  # beyond, panels wrap into another block of rows


@dataclass(frozen=True)
class Wrap:
    """Where each panel of a ``rows`` x ``cols`` facet grid sits once its columns wrap: the fewest
    blocks that keep at most ``most`` panels a row, filled evenly (nine panels: five and four).
    ``rows`` is ``[None]`` for a grid of one row."""

    cols: Sequence
    rows: Sequence = (None,)
    most: int = PANELS_A_ROW

    @property
    def blocks(self) -> int:
        return math.ceil(len(self.cols) / self.most)

    @property
    def per_row(self) -> int:
        return math.ceil(len(self.cols) / self.blocks)

    def place(self, data: pd.DataFrame, col: str, row: Optional[str] = None) -> pd.DataFrame:
        """``data`` with ``grid_row`` and ``grid_col``, the panel each of its rows is drawn in."""
        slot = data[col].map({c: i for i, c in enumerate(self.cols)})
        within = data[row].map({r: i for i, r in enumerate(self.rows)}) if row else 0
        return data.assign(grid_row=slot // self.per_row * len(self.rows) + within, grid_col=slot % self.per_row)

    @property
    def facets(self) -> dict:
        """relplot's facet arguments for data from ``place``."""
        return {"row": "grid_row", "row_order": list(range(len(self.rows) * self.blocks)),
                "col": "grid_col", "col_order": list(range(self.per_row))}

    def label(self, g: sns.FacetGrid, xlabel: str, ylabels: Sequence[str], row_titles: Sequence[str] = ()) -> None:
        """Titles, labels and x tick labels of a grid drawn with ``facets``: each column's title above
        its block, ``xlabel`` and x tick labels under each block's last row, ``ylabels`` (one, or one
        per row of a block) left of each row, ``row_titles`` (one per row of a block) at the right of
        the row's last panel, as seaborn's margin titles; the unused slots of the last block hidden.
        Pass the panel height to PlotterBase._fit_panel_text afterwards: the blocks' x axes take room."""
        for r, ax_row in enumerate(g.axes):
            block, within = divmod(r, len(self.rows))
            bottom = within == len(self.rows) - 1
            shown = []
            for c, ax in enumerate(ax_row):
                index = block * self.per_row + c
                ax.set_visible(index < len(self.cols))
                ax.set_title(str(self.cols[index]) if index < len(self.cols) and within == 0 else "")
                ax.set_xlabel(xlabel if bottom else "")
                ax.xaxis.label.set_visible(bottom)  # seaborn hid it on every row but the grid's last
                ax.tick_params(axis="x", which="both", labelbottom=bottom)
                for label in ax.get_xticklabels(which="both"):
                    label.set_visible(bottom)
                shown += [ax] if index < len(self.cols) else []
            ax_row[0].set_ylabel(ylabels[within % len(ylabels)])
            if row_titles:  # beside a hidden slot, left out of the layout: it would widen every gap
                title = shown[-1].annotate(row_titles[within], xy=(1.02, 0.5), xycoords="axes fraction",
                                           rotation=270, ha="left", va="center")
                title.set_in_layout(len(shown) == len(ax_row))
