r"""`planck_counting`: Planck's law from microcanonical counting (arXiv:1412.1347, §3).

$N$ matter oscillators and one radiation mode, all of unit frequency, share $Q$ quanta.
Counting gives the photon-number distribution $P(n) = g_N(Q-n)/g_{N+1}(Q)$ exactly
(`thermojax.models.solid.photon_distribution`, log space); Planck's law is the geometric
distribution at $\beta = \partial\ln g/\partial E$ with mean
`thermojax.thermal.bose_einstein(1, beta)`. For $N$ growing at fixed occupation
$Q/N$, the relative difference of $\langle n\rangle$ and the total-variation distance of
$P(n)$ are reported and their power laws in $N$ fitted (optax, `thermojax.fit`).
"""

import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig
from ...fit import fit_least_squares
from ...models import solid
from ...thermal import bose_einstein
from .. import ExperimentResult, register, stage

__all__ = ["PlanckCountingConfig", "run", "plot_figures", "compare"]


class PlanckCountingConfig(ExperimentConfig):
    """Config of `planck_counting` (unit frequency, hbar = k_B = 1).

    Attributes:
        n_oscillators: Matter oscillators N of the headline comparison.
        quanta: Total quanta Q of the headline comparison.
        n_values: N of the scaling sweep (each with Q = round(N * quanta / n_oscillators)).
        show_n: N whose P(n) is drawn.
        reservoir: Whose density of states defines beta: "total" (g_{N+1}) or "matter" (g_N).
    """

    experiment: str = "planck_counting"
    n_oscillators: int = Field(1000, ge=1, le=10**7)
    quanta: int = Field(1000, ge=1, le=10**7)
    n_values: list[int] = Field(default_factory=lambda: [10, 100, 1000, 10**4, 10**5, 10**6], min_length=3)
    show_n: list[int] = Field(default_factory=lambda: [10, 100, 10**4])
    reservoir: str = Field("total", pattern="^(total|matter)$")

    @model_validator(mode="after")
    def _check(self):
        if any(n < 1 or n > 10**7 for n in self.n_values + self.show_n):
            raise ValueError("`n_values` and `show_n` must lie in [1, 10^7]")
        if len(set(self.n_values)) != len(self.n_values):
            raise ValueError("`n_values` must be distinct")
        return self


def compare(n: int, q: int, reservoir: str = "total") -> dict:
    """Counting against Planck for one (N, Q): beta, means, relative difference, TV distance."""
    p = np.asarray(solid.photon_distribution(n, q))
    beta = solid.counting_beta(n, q, reservoir=reservoir)
    planck = np.asarray(solid.planck_distribution(beta, q))
    mean_count = float(np.arange(q + 1) @ p)
    mean_planck = float(bose_einstein(1.0, beta))
    tail = 1.0 - planck.sum()  # Planck's probability beyond n = Q
    return {
        "n_oscillators": n,
        "quanta": q,
        "beta": float(beta),
        "counting": mean_count,
        "counting_closed_form": solid.counting_mean_photon_number(n, q),
        "planck": mean_planck,
        "relative_difference": abs(mean_count - mean_planck) / mean_planck,
        "total_variation": float(0.5 * (np.abs(p - planck).sum() + tail)),
        "sum_p": float(p.sum()),
    }


def _line(prm, lx, ly):
    return prm["log_c"] + prm["alpha"] * lx - ly


def _power_law(x, y) -> dict:
    """Fit log y = log c + alpha log x (optax); curvature errors of a deterministic series."""
    lx, ly = jnp.log(jnp.asarray(x, float)), jnp.log(jnp.asarray(y, float))
    fit = fit_least_squares(_line, {"log_c": 0.0, "alpha": -1.0}, args=(lx, ly), positive=[])
    return {
        "value": float(fit.values["alpha"]),
        "stderr": float(fit.stderr["alpha"]),
        "prefactor": float(np.exp(fit.values["log_c"])),
        "theory": -1.0,
        "converged": bool(fit.converged),
    }


def run(cfg: PlanckCountingConfig) -> ExperimentResult:
    occ = cfg.quanta / cfg.n_oscillators
    head = stage("headline", lambda: compare(cfg.n_oscillators, cfg.quanta, cfg.reservoir))
    sweep = stage(
        "sweep",
        lambda: {"rows": [compare(n, max(1, round(occ * n)), cfg.reservoir) for n in sorted(cfg.n_values)]},
    )["rows"]
    ns = np.array([r["n_oscillators"] for r in sweep])
    rel = np.array([r["relative_difference"] for r in sweep])
    tv = np.array([r["total_variation"] for r in sweep])
    shown = {}
    for n in cfg.show_n:
        q = max(1, round(occ * n))
        shown[f"p_counting_N{n}"] = np.asarray(solid.photon_distribution(n, q))
        shown[f"p_planck_N{n}"] = np.asarray(
            solid.planck_distribution(solid.counting_beta(n, q, reservoir=cfg.reservoir), q)
        )
    summary = {
        "mean_photon_number": {"counting": head["counting"], "planck": head["planck"]},
        "headline": head,
        "sweep": sweep,
        "fits": {"alpha_mean_difference": _power_law(ns, rel), "alpha_total_variation": _power_law(ns, tv)},
        "sum_p_max_error": float(np.max(np.abs([r["sum_p"] - 1 for r in sweep]))),
    }
    arrays = {"n_values": ns, "relative_difference": rel, "total_variation": tv, **shown}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_figures(result: ExperimentResult, cfg: PlanckCountingConfig) -> dict:
    a, s = result.arrays, result.summary
    fig, (ax1, ax2) = plot.subplots(1, 2)
    for n in cfg.show_n:
        p, pl = a[f"p_counting_N{n}"], a[f"p_planck_N{n}"]
        k = np.arange(p.size)
        keep = p > 1e-12 * p.max()
        (line,) = ax1.semilogy(k[keep], p[keep], "o", ms=3, label=f"counting N={n}")
        ax1.semilogy(k[keep], pl[keep], "-", color=line.get_color(), lw=1)
    ax1.set_xlim(0, None)
    ax1.set_xlabel("photon number n")
    ax1.set_ylabel("P(n)")
    ax1.set_title("counting (dots) vs Planck (lines)")
    ax1.legend(fontsize=8)
    ns = a["n_values"]
    for key, name, mark in (
        ("relative_difference", "mean_difference", "o"),
        ("total_variation", "total_variation", "s"),
    ):
        fit = s["fits"][f"alpha_{name}"]
        ax2.loglog(ns, a[key], mark, label=f"{key.replace('_', ' ')}: slope {fit['value']:.3f} ± {fit['stderr']:.1g}")
        ax2.loglog(ns, fit["prefactor"] * ns ** fit["value"], "-", lw=0.8, color="0.4")
    ax2.set_xlabel("oscillators N")
    ax2.set_ylabel("counting vs Planck")
    ax2.legend(fontsize=8)
    plot.caption(
        fig, f"Q/N = {cfg.quanta / cfg.n_oscillators:g}, beta from g_{{{'N+1' if cfg.reservoir == 'total' else 'N'}}}"
    )
    return {"planck_counting": fig}


register("planck_counting", PlanckCountingConfig, run, plot_figures, "Planck's law from microcanonical counting vs N")
