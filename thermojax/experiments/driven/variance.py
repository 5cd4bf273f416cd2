r"""`driven_variance`: the growth of the energy variance for drive rates spanning the
adiabatic, golden-rule and sudden regimes.

For each $\varepsilon$ the same `realisations` $(H_0, V)$ are driven over the same range
of the parameter, $\lambda = \varepsilon t \in [0, \lambda_{\max}]$ (so $t_{\max} =
\lambda_{\max}/\varepsilon$). Two estimates of the diffusion coefficient per rate:

* a straight line $\mathrm{Var}\,E(t) = a + 2D_{\rm lin}t$ (the naive estimate; it
  also counts the spreading of the spectrum by the drift $u(E) \propto E$);
* $D = c\,\varepsilon^2\pi\Sigma\langle|V_{nm}|^2\rangle$ at $(E_0, t = 0)$ from the
  PDE fit of `driven_coefficient` (drift and level density included);
* the same multiplier from the variance of the level index $n$
  (`thermojax.experiments.driven._common.fit_index_scale`): the unfolded spectrum
  removes the drift and the wiggles of single levels, which move the energy of an
  occupation without any transition.

Rates whose window $t_{\max}$ is shorter than $5t_c$, or whose distribution leaves the
grid, are marked: the spreading has not become diffusive there (at a fixed range of
$\lambda$ the window shrinks as $1/\varepsilon$) and a diffusion fit underestimates
$D$.

$D/\varepsilon^2$ against $\varepsilon$ is drawn with the regime boundaries
$\varepsilon_{\rm LZ}$, $\varepsilon_{\rm prt}$ measured from the spectra
(`thermojax.models.driven.regime_boundaries`) shaded.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, field_validator

from ... import plot
from ...fit import fit_least_squares
from .. import ExperimentResult, register, stage
from ._common import DrivenConfig, fit_index_scale, fit_with_jackknife, goe_pde, jackknife, regime_summary, simulate

__all__ = ["VarianceConfig", "run", "plot_variance"]


class VarianceConfig(DrivenConfig):
    """`driven_variance` (see the module docstring).

    Attributes:
        epsilons: Drive rates (> 0, ascending; the default spans three decades).
        lambda_max: Range of lambda = eps t covered at every rate.
    """

    epsilons: list[float] = Field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0], min_length=2)
    lambda_max: float = Field(0.5, gt=0, le=5.0)
    grid_half_width: float = Field(1.2, gt=0)
    cells: int = Field(60, ge=8, le=4000)

    @field_validator("epsilons")
    @classmethod
    def _ascending(cls, v):
        if any(e <= 0 for e in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"epsilons must be > 0 and strictly ascending, got {v}")
        return v


def _line(params, t, y):
    return params["a"] + 2.0 * params["d"] * t - y


def _linear_fit(data: dict, tsave) -> tuple[float, float, float]:
    """`(D_lin, its jackknife error, a - Var E(0))` from Var E(t) = a + 2 D t on the
    realisation mean."""
    t = jnp.asarray(tsave)

    def est(keep):
        y = jnp.asarray(data["variance"][keep].mean(0))
        init = {"a": float(y[0]), "d": float(max((y[-1] - y[0]) / (2 * t[-1]), 1e-12))}
        fit = fit_least_squares(_line, init, args=(t, y), positive=False)
        return np.array([float(fit.values["d"]), float(fit.values["a"] - y[0])])

    value, se, _ = jackknife(est, data["variance"].shape[0])
    return float(value[0]), float(se[0]), float(value[1])


def _one_rate(cfg: VarianceConfig, i: int, eps: float, key) -> dict:
    tsave = np.linspace(0.0, cfg.lambda_max / eps, cfg.n_times)
    data = simulate(cfg, eps, tsave, key, f"eps{i}")

    def fits():
        fit = fit_with_jackknife(cfg, data, goe_pde(cfg, eps, tsave, "golden"), tsave)
        d_lin, d_lin_se, offset = _linear_fit(data, tsave)
        index = fit_index_scale(cfg, data, tsave, eps)
        return {"fit": fit, "d_lin": d_lin, "d_lin_se": d_lin_se, "offset": offset, "index": index}

    f = stage(f"fit{i}", fits)
    golden = cfg.golden(eps) / eps**2
    inc = data["variance"] - data["variance"][:, :1]
    regime = regime_summary(eps, data)
    return {
        "epsilon": eps,
        "t_max": float(tsave[-1]),
        "t_max_over_tc": float(tsave[-1] / regime["correlation_time"]),
        **{k: v for k, v in regime.items() if k in ("regime", "eps_lz", "eps_prt")},
        "scale": f["fit"]["scale"],
        "scale_stderr": f["fit"]["stderr"],
        "D_over_eps2": f["fit"]["scale"] * golden,
        "D_over_eps2_stderr": f["fit"]["stderr"] * golden,
        "D_linear_over_eps2": f["d_lin"] / eps**2,
        "D_linear_over_eps2_stderr": f["d_lin_se"] / eps**2,
        "D_index_over_eps2": f["index"]["scale"] * golden,
        "D_index_over_eps2_stderr": f["index"]["stderr"] * golden,
        "golden_over_eps2_data": float(np.mean(data["golden"])),
        "g2_data": float(np.mean(data["g2"])),
        "norm_error_max": float(data["norm_error"].max()),
        "weight_outside_grid_max": float(data["outside"].max()),
        "_t": tsave,
        "_increase": inc.mean(0),
        "_increase_sem": inc.std(0, ddof=1) / np.sqrt(inc.shape[0]),
        "_offset": f["offset"],
    }


def run(cfg: VarianceConfig) -> ExperimentResult:
    """Exact evolution at every rate, the two fits per rate, the regimes."""
    key = jax.random.key(cfg.seed)
    rows = [_one_rate(cfg, i, eps, key) for i, eps in enumerate(cfg.epsilons)]
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    mid = public[len(public) // 2]
    summary = {
        "dim": cfg.dim,
        "realisations": cfg.realisations,
        "regime": {str(r["epsilon"]): r["regime"] for r in public},
        "eps_lz": float(np.mean([r["eps_lz"] for r in public])),
        "eps_prt": float(np.mean([r["eps_prt"] for r in public])),
        "golden_over_eps2_closed_form": cfg.golden(1.0),
        "rates": public,
        "fits": {
            f"D_over_eps2[eps={r['epsilon']:g}]": {"value": r["D_over_eps2"], "stderr": r["D_over_eps2_stderr"],
                                                  "golden_rule": r["golden_over_eps2_data"],
                                                  "eq47": r["g2_data"], "regime": r["regime"]}
            for r in public
        },
        "error": f"jackknife over {cfg.realisations} realisations",
        "middle_rate": mid["epsilon"],
    }
    arrays = {"epsilons": np.asarray(cfg.epsilons)}
    for i, r in enumerate(rows):
        for name in ("t", "increase", "increase_sem", "offset"):
            arrays[f"{name}_{i}"] = np.asarray(r[f"_{name}"])
    for k in ("D_over_eps2", "D_over_eps2_stderr", "D_linear_over_eps2", "D_linear_over_eps2_stderr",
              "D_index_over_eps2", "D_index_over_eps2_stderr", "scale", "t_max_over_tc"):
        arrays[k] = np.array([r[k] for r in public])
    arrays["outside"] = np.array([r["weight_outside_grid_max"] for r in public])
    return ExperimentResult(arrays=arrays, summary=summary)


def _shade_regimes(ax, eps_lz: float, eps_prt: float, lo: float, hi: float) -> None:
    spans = ((lo, eps_lz, "0.85", "adiabatic\n(Landau-Zener)"),
             (eps_lz, eps_prt, "white", "linear response\n(golden rule)"),
             (eps_prt, hi, "0.75", "sudden"))
    for a, b, col, lab in spans:
        if b > a:
            ax.axvspan(a, b, color=col, alpha=0.5, lw=0)
            ax.text(np.sqrt(max(a, lo) * min(b, hi)), 0.02, lab, transform=ax.get_xaxis_transform(), ha="center",
                    fontsize=7, color="0.3")


def plot_variance(result: ExperimentResult, cfg: VarianceConfig) -> dict[str, plt.Figure]:
    """Var E / eps against eps t (all rates; dashed: the straight-line fits) and D / eps^2
    against eps with the regimes shaded."""
    a, s = result.arrays, result.summary
    fig, ax = plot.subplots(1, 2, width=5.4, height=3.9)
    for i, eps in enumerate(a["epsilons"]):
        lam = a[f"t_{i}"] * eps
        ax[0].errorbar(lam, a[f"increase_{i}"] / eps, a[f"increase_sem_{i}"] / eps, fmt="o", ms=2.5, color=f"C{i}",
                       label=f"eps = {eps:g}")
        line = a[f"offset_{i}"] / eps + 2 * a["D_linear_over_eps2"][i] * lam  # (a - Var0 + 2 D t) / eps
        ax[0].plot(lam, line, color=f"C{i}", ls="--", lw=0.8)
    ax[0].set(xlabel="lambda = eps t", ylabel="(Var E(t) - Var E(0)) / eps", title="energy variance (dashed: lines)")
    ax[0].legend(fontsize=7)
    eps = a["epsilons"]
    lo, hi = eps.min() / 3, eps.max() * 3
    _shade_regimes(ax[1], s["eps_lz"], s["eps_prt"], lo, hi)
    ax[1].errorbar(eps, a["D_over_eps2"], a["D_over_eps2_stderr"], fmt="o", color="C0", capsize=3,
                   label="PDE fit (drift and Sigma included)")
    ax[1].errorbar(eps * 1.08, a["D_linear_over_eps2"], a["D_linear_over_eps2_stderr"], fmt="s", mfc="none",
                   color="C1", capsize=3, label="straight line")
    ax[1].errorbar(eps / 1.08, a["D_index_over_eps2"], a["D_index_over_eps2_stderr"], fmt="^", color="C2", capsize=3,
                   label="level-index variance (no drift, no level wiggles)")
    short = (a["t_max_over_tc"] < 5) | (a["outside"] > 1e-3)
    if short.any():
        ax[1].plot(eps[short], a["D_over_eps2"][short], "x", color="C3", ms=9,
                   label="t_max < 5 t_c or eta leaves the grid: not diffusive here")
    g = s["golden_over_eps2_closed_form"]
    ax[1].axhline(g, color="k", lw=1, label="golden rule pi Sigma <|V_nm|^2>")
    ax[1].axhline(2 * g, color="C3", lw=1, ls="--", label="eq. 47: G2")
    ax[1].set_xscale("log")
    ax[1].set(xlim=(lo, hi), xlabel="eps", ylabel="D / eps^2 at (E0, t = 0)", title="diffusion coefficient")
    ax[1].legend(fontsize=7, loc="upper left")
    plot.caption(fig, f"d = {cfg.dim}, E0 = {cfg.energy:g}, {cfg.n_states} states, {cfg.realisations} realisations, "
                 f"lambda_max = {cfg.lambda_max:g}; eps_LZ = {s['eps_lz']:.2g}, eps_prt = {s['eps_prt']:.2g}")
    return {"driven_variance": fig}


register("driven_variance", VarianceConfig, run, plot_variance,
         "energy variance against t for several drive rates; D/eps^2 across the three regimes (paper 004)")
