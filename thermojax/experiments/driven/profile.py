r"""`driven_profile`: snapshots of the energy distribution $\eta(E, t)$, exact against the
Smoluchowski PDE with the fitted coefficient and with eq. 47's.

The initial window sits off the band centre (default $E_0 = 1$), where the level
density and $G_2$ have slopes: the drift $u(E) = \langle V_{nn}\rangle_E$ moves the
distribution, and eq. 47's quantum term $\tfrac{\varepsilon^2}{2}\Sigma\,\partial_EG_2\,
\partial_E(\eta/\Sigma)$ acts at first order. The multiplier $c$ of the golden rule is
fitted to the whole profile (all cells, all times after the first); the PDE is also
run with eq. 47 as written (coefficient $\varepsilon^2G_2$ and the quantum term) and
with its coefficient alone. For each form: $\int\eta\,dE$ over time and the
$L^1$ distance to the exact profile.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

from ... import plot
from ...models import driven as dr
from .. import ExperimentResult, register, stage
from ._common import DrivenConfig, fit_with_jackknife, goe_pde, realisation_means, regime_summary, scaled_pde_states
from ._common import simulate as simulate_realisations

__all__ = ["ProfileConfig", "run", "plot_profile"]

FORMS = {"fitted": "golden", "golden": "golden", "eq47_classical": "eq47_classical", "eq47": "eq47"}
LABELS = {"fitted": "PDE, fitted c x golden rule", "golden": "PDE, golden rule",
          "eq47_classical": "PDE, eq. 47 coefficient only", "eq47": "PDE, eq. 47 (with quantum term)"}


class ProfileConfig(DrivenConfig):
    """`driven_profile` (see the module docstring).

    Attributes:
        epsilon: Drive rate (> 0).
        t_max: Last save time.
        snapshots: Times drawn (evenly among the save times, the first included).
        fit_profile: Also fit the multiplier to the whole profile (else only to the
            variance; the profile fit compiles a second residual function).
    """

    epsilon: float = Field(0.01, gt=0, le=10)
    t_max: float = Field(50.0, gt=0)
    energy: float = Field(1.0, ge=-1.8, le=1.8)
    grid_half_width: float = Field(0.6, gt=0)
    snapshots: int = Field(4, ge=2, le=12)
    fit_profile: bool = True


def excess_kurtosis(eta: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Excess kurtosis of histograms `eta (..., J)` on cell centres (0 for a Gaussian)."""
    w = eta / eta.sum(-1, keepdims=True)
    mean = (w * centers).sum(-1, keepdims=True)
    var = (w * (centers - mean) ** 2).sum(-1)
    return (w * (centers - mean) ** 4).sum(-1) / var**2 - 3.0


def _curves(cfg: ProfileConfig, data: dict, tsave, scale: float) -> dict:
    means = realisation_means(data)
    grid = cfg.grid()
    out = {}
    for name, form in FORMS.items():
        c = scale if name == "fitted" else 1.0
        states = np.asarray(scaled_pde_states(c, goe_pde(cfg, cfg.epsilon, tsave, form), means["eta0"], tsave))
        norm, mean, var = (np.asarray(x) for x in dr.distribution_moments(states, grid))
        out[f"{name}_eta"], out[f"{name}_norm"], out[f"{name}_mean"], out[f"{name}_var"] = states, norm, mean, var
        out[f"{name}_l1"] = grid.width * np.abs(states - means["eta"]).sum(-1)
        out[f"{name}_kurtosis"] = excess_kurtosis(states, np.asarray(grid.centers))
    out["exact_kurtosis"] = excess_kurtosis(means["eta"], np.asarray(grid.centers))
    return out


def run(cfg: ProfileConfig) -> ExperimentResult:
    """Exact evolution over realisations, the profile fit and the PDE forms."""
    key = jax.random.key(cfg.seed)
    tsave = np.linspace(0.0, cfg.t_max, cfg.n_times)
    data = simulate_realisations(cfg, cfg.epsilon, tsave, key, "exact")
    pde = goe_pde(cfg, cfg.epsilon, tsave, "golden")
    def fit_both():
        out = {"variance": fit_with_jackknife(cfg, data, pde, tsave, kind="variance")}
        if cfg.fit_profile:
            out["profile"] = fit_with_jackknife(cfg, data, pde, tsave, kind="profile")
        return out

    fits = stage("fit", fit_both)
    fit = fits.get("profile", fits["variance"])
    curves = stage("pde", lambda: _curves(cfg, data, tsave, fit["scale"]))
    means = realisation_means(data)
    closed = cfg.golden(cfg.epsilon)
    eps2 = cfg.epsilon**2
    summary = {
        "epsilon": cfg.epsilon,
        "energy": cfg.energy,
        "dim": cfg.dim,
        "realisations": cfg.realisations,
        "regime": regime_summary(cfg.epsilon, data)["regime"],
        "fits": {
            "profile_scale": {"value": fit["scale"], "stderr": fit["stderr"],
                              "stderr_curvature": fit["stderr_curvature"], "fitted_to": ("profile" if cfg.fit_profile
                                                                                         else "variance"),
                              "error": f"jackknife over {cfg.realisations} realisations"},
            "variance_scale": {"value": fits["variance"]["scale"], "stderr": fits["variance"]["stderr"],
                               "note": "c fitted to the variance increase, as in driven_coefficient"},
            "diffusion_coefficient": {"value": fit["scale"] * closed, "stderr": fit["stderr"] * closed,
                                      "golden_rule": eps2 * float(np.mean(data["golden"])),
                                      "eq47": eps2 * float(np.mean(data["g2"]))},
        },
        "norm_change_at_t_max": {k: float(curves[f"{k}_norm"][-1] - 1.0) for k in FORMS},
        "l1_distance_at_t_max": {k: float(curves[f"{k}_l1"][-1]) for k in FORMS},
        "excess_kurtosis": {"t": [float(x) for x in tsave[1::max(1, len(tsave) // 5)]],
                            **{k: [float(x) for x in curves[f"{k}_kurtosis"][1::max(1, len(tsave) // 5)]]
                               for k in ("exact", "fitted", "golden")}},
        "exact_mean_shift": float(data["mean"].mean(0)[-1] - data["mean"].mean(0)[0]),
        "pde_mean_shift": {k: float(curves[f"{k}_mean"][-1] - curves[f"{k}_mean"][0]) for k in FORMS},
        "weight_outside_grid_max": float(data["outside"].max()),
        "norm_error_max": float(data["norm_error"].max()),
    }
    arrays = {"tsave": tsave, "centers": np.asarray(cfg.grid().centers), "eta_exact": means["eta"],
              "mean_exact": data["mean"].mean(0), **curves}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_profile(result: ExperimentResult, cfg: ProfileConfig) -> dict[str, plt.Figure]:
    """Snapshots of eta (exact histogram, PDE forms), the mean energy and the integral of
    eta over time."""
    a, s = result.arrays, result.summary
    t = a["tsave"]
    picks = np.unique(np.linspace(0, t.size - 1, cfg.snapshots).round().astype(int))
    ncol = 3
    nrow = -(-(len(picks) + 2) // ncol)
    fig, axes = plot.subplots(nrow, ncol, width=3.9, height=3.2)
    ax = list(np.ravel(axes))
    for extra in ax[len(picks) + 2:]:
        extra.set_axis_off()
    styles = {"fitted": ("C0", "-"), "golden": ("C1", "--"), "eq47_classical": ("C2", ":"), "eq47": ("C3", "-.")}
    for j, k in enumerate(picks):
        ax[j].step(a["centers"], a["eta_exact"][k], where="mid", color="k", lw=1, label="exact (histogram)")
        for name, (col, ls) in styles.items():
            ax[j].plot(a["centers"], a[f"{name}_eta"][k], color=col, ls=ls, lw=1.2, label=LABELS[name])
        ax[j].set(xlabel="E", title=f"t = {t[k]:.3g}")
    ax[0].set_ylabel("eta(E, t)")
    ax[0].legend(fontsize=6, loc="upper left")
    p_ax, m_ax = ax[len(picks)], ax[len(picks) + 1]
    m_ax.plot(t, a["mean_exact"], "o", ms=3, color="k", label="exact")
    for name, (col, ls) in styles.items():
        p_ax.plot(t, a[f"{name}_norm"] - 1.0, color=col, ls=ls, label=LABELS[name])
        m_ax.plot(t, a[f"{name}_mean"], color=col, ls=ls)
    p_ax.set(xlabel="t", ylabel="integral of eta dE - 1", title="probability")
    m_ax.set(xlabel="t", ylabel="<E>", title="mean energy (drift u = <V_nn>_E)")
    fc = s["fits"]["profile_scale"]
    plot.caption(fig, f"d = {cfg.dim}, eps = {cfg.epsilon:g}, E0 = {cfg.energy:g}, {cfg.realisations} realisations; "
                 f"fitted c = {fc['value']:.3f} +- {fc['stderr']:.3f}; regime: {s['regime']}")
    return {"driven_profile": fig}


register("driven_profile", ProfileConfig, run, plot_profile,
         "snapshots of eta(E, t): exact evolution against the Smoluchowski PDE and eq. 47 (paper 004)")
