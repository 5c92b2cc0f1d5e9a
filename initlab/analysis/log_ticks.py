"""One tick policy for every log axis of the figures: labelled ticks inside the data's range that
never collide.

matplotlib's defaults fail both ways on the short panels of a facet grid: on a narrow range (0.7 to
0.9, a loss from 2.6 to 3) it labels minor ticks a few pixels apart, and with subs (1, 3) a range
between 0.35 and 0.95 shows no tick at all. LogTicks picks the densest "nice" tick set that puts at
least two ticks in the view (1, 1-3, 1-2-5, every integer multiple, then linear steps of 1-2-2.5-5
for ranges narrower than one multiple); SpacedLogLabels labels them, dropping any label that would
sit closer than its font height to the one below it, so the labels never overlap. Both run at draw
time, so they follow limits set later (shared axes, an axis floor).
"""

from __future__ import annotations

import matplotlib.axis
import numpy as np
from matplotlib.ticker import Formatter, Locator, LogLocator, MaxNLocator, NullFormatter

PLAIN_DECADES = 4  # up to this many decades, labels are plain numbers (0.5, not 5x10^-1)
SUBS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), tuple(float(s) for s in range(1, 10)))
MIN_TICKS = 2


class LogTicks(Locator):
    """Ticks of a log axis: the coarsest of SUBS that puts MIN_TICKS or more inside the view,
    linear nice steps when none does, matplotlib's decade ticks beyond PLAIN_DECADES."""

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        low, high = sorted((float(vmin), float(vmax)))
        if not (low > 0 and np.isfinite(high)):
            return LogLocator().tick_values(max(low, 1e-300), high)
        decades = np.log10(high / low)
        if decades > PLAIN_DECADES:
            ticks = LogLocator(numticks=5).tick_values(low, high)
            return ticks[(ticks >= low * (1 - 1e-9)) & (ticks <= high * (1 + 1e-9))]
        exponents = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
        for subs in SUBS:
            ticks = np.array([s * 10.0 ** e for e in exponents for s in subs])
            inside = ticks[(ticks >= low * (1 - 1e-9)) & (ticks <= high * (1 + 1e-9))]
            if len(inside) >= MIN_TICKS:
                return inside
        return MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)


class SpacedLogLabels(Formatter):
    """Labels for LogTicks: plain numbers up to PLAIN_DECADES decades, powers of ten beyond; going
    up the axis, a label closer than ``spacing`` font heights to the last one kept is left empty."""

    def __init__(self, spacing: float = 1.15):
        self.spacing = spacing

    def _text(self, value: float, decades: float) -> str:
        if decades <= PLAIN_DECADES:
            return f"{value:g}"
        exponent = np.log10(value)
        return f"$10^{{{int(round(exponent))}}}$" if abs(exponent - round(exponent)) < 1e-9 else ""

    def __call__(self, value, pos=None) -> str:
        low, high = sorted(self.axis.get_view_interval())
        return self._text(value, np.log10(high / low) if low > 0 else np.inf)

    def format_ticks(self, values) -> list[str]:
        low, high = sorted(self.axis.get_view_interval())
        decades = np.log10(high / low) if low > 0 else np.inf
        texts = [self._text(v, decades) if low * (1 - 1e-9) <= v <= high * (1 + 1e-9) else "" for v in values]
        ticks = self.axis.get_major_ticks(len(values)) if len(values) else []
        size = ticks[0].label1.get_fontsize() if ticks else 10.0
        horizontal = self.axis.axis_name == "x"
        room = self.spacing * size * self.axis.figure.dpi / 72  # pixels one label needs along the axis
        if horizontal:  # x labels are wider than tall: room for the longest text
            longest = max((len(t.strip("$").replace("^", "").replace("{", "").replace("}", "")) for t in texts),
                          default=1)
            room = max(room, 0.62 * size * longest * self.axis.figure.dpi / 72)
        transform = self.axis.axes.transData
        points = [(v, 1.0) if horizontal else (1.0, v) for v in values]
        pixels = [transform.transform(p)[0 if horizontal else 1] for p in points]
        candidates = [i for i in np.argsort(pixels) if texts[i]]
        last = -np.inf
        for i in candidates:
            if pixels[i] - last < room:
                texts[i] = ""
            else:
                last = pixels[i]
        if sum(bool(t) for t in texts) < MIN_TICKS and len(candidates) >= MIN_TICKS:
            # thinning from the bottom can leave one label on a short panel with large fonts:
            # label the two ends of the view instead when they have room
            first, end = candidates[0], candidates[-1]
            if pixels[end] - pixels[first] >= room:
                labels = [self._text(values[first], decades), self._text(values[end], decades)]
                texts = [""] * len(texts)
                texts[first], texts[end] = labels
        return texts


def log_ticks(axis: matplotlib.axis.Axis) -> None:
    """Put LogTicks and SpacedLogLabels on a log ``axis`` (x or y); minor ticks stay unlabelled.

    An inner panel of a shared grid (seaborn hides its labels one by one) stays unlabelled: its
    labels are switched off for the axis, so ticks the new locator adds do not show stray labels.
    """
    ticks = axis.get_major_ticks()
    if ticks and not (ticks[0].label1.get_visible() or ticks[0].label2.get_visible()):  # new ticks copy the first
        axis.set_tick_params(which="both", label1On=False, label2On=False)
    axis.set_major_locator(LogTicks())
    axis.set_major_formatter(SpacedLogLabels())
    axis.set_minor_formatter(NullFormatter())
