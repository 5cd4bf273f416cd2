"""Shared matplotlib helpers: one look for every thermojax figure."""

import matplotlib.pyplot as plt

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
    """``plt.subplots`` with the thermojax style and a per-panel size in inches."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained", **kw
        )
    return fig, axes


def caption(fig, text: str) -> None:
    """Small grey parameter line under the figure title."""
    fig.suptitle(text, fontsize=9, color="0.35")
