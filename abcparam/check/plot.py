"""The figure both checks draw: log RMS against log size, one panel per step, dotted lines with the predicted slopes."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .decision import Fit

Key = Tuple[str, str, int]


def slopes_figure(sizes: Sequence[int], rms: Dict[Key, List[List[float]]], fits: Sequence[Fit], steps: Sequence[int],
                  lines: Callable[[int], List[Tuple[str, Key]]], panel_title: Callable[[int], str], xlabel: str,
                  title: str, path: Optional[str] = None) -> Any:
    """A panel per step in ``steps``; in it a line per ``(label, key)`` of ``lines(step)`` that was measured (the mean
    over seeds at each size), dotted through its first point with the fit's predicted slope.  Needs matplotlib
    (``pip install abcparam[plot]``); returns the figure and saves it to ``path``."""
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("report.plot needs matplotlib: pip install 'abcparam[plot]' (or pip install matplotlib)") from None
    fig = plt.figure(figsize=(3.6 * len(steps), 3.4))
    axes = [fig.add_subplot(1, len(steps), k + 1) for k in range(len(steps))]
    cmap = matplotlib.colormaps["viridis"]
    by_key = {(f.layer, f.quantity, f.step): f for f in fits}
    for ax, step in zip(axes, steps):
        wanted = lines(step)  # a line's colour is its place among all of the panel's lines, drawn or not
        for k, (label, key) in enumerate(wanted):
            if key not in rms:
                continue
            vals = [sum(seeds) / len(seeds) for seeds in rms[key]]
            color = "black" if key[0] == "output" else cmap(k / max(1, len(wanted) - 1))
            ax.plot(sizes, vals, "o-", color=color, label=label, ms=3)
            fit = by_key.get(key)
            if fit is not None and fit.predicted is not None and vals[0] > 0 and math.isfinite(vals[0]):
                ax.plot(sizes, [vals[0] * (s / sizes[0]) ** float(fit.predicted) for s in sizes], ":", color=color, lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title(step))
    axes[0].set_ylabel("RMS (dotted: predicted slope)")
    if axes[-1].get_lines():  # (an empty last panel has no legend to show)
        axes[-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
