"""Shared matplotlib helpers: one look for every thermojax figure."""

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

STYLE = {
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 5.0, height: float = 3.6, **kw):
    """`plt.subplots` with the thermojax style and a per-panel size in inches."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained", **kw
        )
    return fig, axes


def caption(fig, text: str) -> None:
    """Small grey parameter line under the figure title."""
    fig.suptitle(text, fontsize=9, color="0.35")


def label_log_axis(ax, values, axis: str = "x") -> None:
    """Ticks of a log axis exactly at `values`, labelled as plain numbers (no minor ticks)."""
    labels = [f"{v:g}" for v in values]
    if axis == "x":
        ax.set_xticks(values, labels)
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_yticks(values, labels)
        ax.yaxis.set_minor_locator(NullLocator())
