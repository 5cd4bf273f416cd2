r"""`driven_coefficient`: the energy-diffusion coefficient of a slowly driven GOE system,
fitted to exact evolution and compared with the golden rule and with eq. 47.

For one drive rate $\varepsilon$ (default in the golden-rule regime) and `realisations`
independent $(H_0, V)$, a batch of eigenstates of $H(0)$ near $E_0$ is evolved
exactly; the variance increase of the energy distribution is fitted with the
Smoluchowski PDE whose diffusion is $c$ times the golden rule (drift and level density
from the GOE closed forms). Reported: $D = c\,\varepsilon^2\pi\Sigma\langle|V_{nm}|^2\rangle$
at $(E_0, t = 0)$ with its jackknife error over realisations; its ratios to the
golden rule and to eq. 47's $\varepsilon^2G_2$, both measured from the realisations'
spectra and matrix elements; a fit of a constant $D$; and what eq. 47's quantum term
does to $\int\eta\,dE$ and to the fit.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

from ... import plot
from ...models import driven as dr
from .. import ExperimentResult, register, stage
from ._common import (
    CORRELATION_TIMES,
    DrivenConfig,
    fit_index_scale,
    fit_with_jackknife,
    goe_pde,
    jackknife,
    realisation_means,
    regime_summary,
    scaled_pde_states,
    simulate,
)

__all__ = ["CoefficientConfig", "run", "plot_coefficient"]

FORMS = ("golden", "eq47_classical", "eq47")


class CoefficientConfig(DrivenConfig):
    """`driven_coefficient` (see the module docstring).

    Attributes:
        epsilon: Drive rate (> 0).
        t_max: Last save time (the run covers lambda = epsilon t in [0, epsilon t_max]).
        realisations: At least 8 (the standard errors are resampled over them).
    """

    epsilon: float = Field(0.01, gt=0, le=10)
    t_max: float = Field(50.0, gt=0)
    realisations: int = Field(12, ge=8, le=1000)


def _fits(cfg: CoefficientConfig, data: dict, tsave) -> dict:
    golden0 = cfg.golden(cfg.epsilon)
    out = {form: fit_with_jackknife(cfg, data, goe_pde(cfg, cfg.epsilon, tsave, form), tsave) for form in FORMS}
    out["constant"] = fit_with_jackknife(
        cfg, data, goe_pde(cfg, cfg.epsilon, tsave, "constant"), tsave, init=golden0
    )
    out["index"] = fit_index_scale(cfg, data, tsave, cfg.epsilon)
    return out


def _pde_curves(cfg: CoefficientConfig, data: dict, tsave, fits: dict) -> dict:
    eta0 = realisation_means(data)["eta0"]
    grid = cfg.grid()
    out = {}
    for name, form, scale in (("fitted", "golden", fits["golden"]["scale"]), ("golden", "golden", 1.0),
                              ("eq47_classical", "eq47_classical", 1.0), ("eq47", "eq47", 1.0)):
        states = np.asarray(scaled_pde_states(scale, goe_pde(cfg, cfg.epsilon, tsave, form), eta0, tsave))
        norm, _, var = (np.asarray(x) for x in dr.distribution_moments(states, grid))
        out[f"{name}_eta"], out[f"{name}_norm"], out[f"{name}_increase"] = states, norm, var - var[0]
    return out


def _ratios(cfg: CoefficientConfig, data: dict, fits: dict) -> dict:
    """D_fit / golden and D_fit / (eps^2 G2), jackknifed together with the fit."""
    n = data["golden"].shape[0]
    closed = cfg.golden(cfg.epsilon) / cfg.epsilon**2
    c_loo = np.asarray(fits["golden"]["leave_one_out"])
    c_full = fits["golden"]["scale"]

    def ratio(name, factor):
        def est(keep):
            c = c_full if keep.all() else c_loo[np.flatnonzero(~keep)[0]]
            return c * closed / (factor * data[name][keep].mean())

        value, se, _ = jackknife(est, n)
        return float(value), float(se)

    rg, rg_se = ratio("golden", 1.0)
    r47, r47_se = ratio("g2", 1.0)
    return {"ratio_golden": rg, "ratio_golden_stderr": rg_se, "ratio_eq47": r47, "ratio_eq47_stderr": r47_se}


def _summary(cfg: CoefficientConfig, data: dict, fits: dict, curves: dict) -> dict:
    eps2, n = cfg.epsilon**2, data["golden"].shape[0]
    sem = lambda x: float(np.std(x, ddof=1) / np.sqrt(n))
    closed = cfg.golden(cfg.epsilon)
    g = fits["golden"]
    ratios = _ratios(cfg, data, fits)
    z_g = (ratios["ratio_golden"] - 1.0) / ratios["ratio_golden_stderr"]
    z_47 = (ratios["ratio_eq47"] - 1.0) / ratios["ratio_eq47_stderr"]
    coefficient = {
        "value": g["scale"] * closed,
        "stderr": g["stderr"] * closed,
        "golden_rule": eps2 * float(np.mean(data["golden"])),
        "golden_rule_stderr": eps2 * sem(data["golden"]),
        "golden_rule_closed_form": closed,
        "eq47": eps2 * float(np.mean(data["g2"])),
        "eq47_stderr": eps2 * sem(data["g2"]),
        **ratios,
        "sigmas_from_golden": float(z_g),
        "sigmas_from_eq47": float(z_47),
        "supported": "golden rule" if abs(z_g) < abs(z_47) else "eq. 47",
        "scale": g["scale"],
        "scale_stderr": g["stderr"],
        "stderr_curvature": g["stderr_curvature"] * closed,
        "fitted_to": "variance increase of the realisation-mean energy distribution",
        "form": "c x golden rule D(E, t) in the divergence-form PDE (GOE closed forms)",
        "error": f"jackknife over {n} realisations",
        "at": {"energy": cfg.energy, "t": 0.0},
    }
    fits_out = {
        "diffusion_coefficient": coefficient,
        "constant_diffusion": {"value": fits["constant"]["scale"], "stderr": fits["constant"]["stderr"],
                               "ratio_golden_closed_form": fits["constant"]["scale"] / closed},
        "level_index_scale": {"value": fits["index"]["scale"], "stderr": fits["index"]["stderr"],
                              "note": "c from the variance of the level index (drift and level wiggles removed)"},
        "eq47_multiplier": {"value": fits["eq47"]["scale"], "stderr": fits["eq47"]["stderr"],
                            "without_quantum_term": fits["eq47_classical"]["scale"],
                            "without_quantum_term_stderr": fits["eq47_classical"]["stderr"]},
    }
    quantum = {
        "norm_change_at_t_max": {k: float(curves[f"{k}_norm"][-1] - 1.0) for k in ("golden", "eq47_classical", "eq47")},
        "fit_multiplier_with_quantum_term": fits["eq47"]["scale"],
        "fit_multiplier_without_quantum_term": fits["eq47_classical"]["scale"],
        "loss_with_quantum_term": fits["eq47"]["loss"],
        "loss_without_quantum_term": fits["eq47_classical"]["loss"],
    }
    return {"fits": fits_out, "quantum_term": quantum}


def run(cfg: CoefficientConfig) -> ExperimentResult:
    """Exact evolution over realisations, the fits and the PDE curves."""
    key = jax.random.key(cfg.seed)
    tsave = np.linspace(0.0, cfg.t_max, cfg.n_times)
    data = simulate(cfg, cfg.epsilon, tsave, key, "exact")
    fits = stage("fits", lambda: {"fits": _fits(cfg, data, tsave)})["fits"]
    curves = stage("pde", lambda: _pde_curves(cfg, data, tsave, fits))
    regime = regime_summary(cfg.epsilon, data)
    means = realisation_means(data)
    inc = data["variance"] - data["variance"][:, :1]
    summary = {
        "epsilon": cfg.epsilon,
        "dim": cfg.dim,
        "realisations": cfg.realisations,
        "regime": regime["regime"],
        "regimes": regime,
        **_summary(cfg, data, fits, curves),
        "checks": {
            "norm_error_max": float(data["norm_error"].max()),
            "sum_rule_error_max": float(data["sum_rule_error"].max()),
            "weight_outside_grid_max": float(data["outside"].max()),
            "ode_steps_mean": float(data["ode_steps"].mean()),
        },
    }
    arrays = {
        "tsave": tsave,
        "centers": np.asarray(cfg.grid().centers),
        "eta_exact": means["eta"],
        "increase_exact": means["increase"],
        "increase_exact_sem": inc.std(0, ddof=1) / np.sqrt(inc.shape[0]),
        "correlation": data["correlation"].mean(0),
        "correlation_s": CORRELATION_TIMES,
        "golden": data["golden"],
        "g2": data["g2"],
        **{k: v for k, v in curves.items()},
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_coefficient(result: ExperimentResult, cfg: CoefficientConfig) -> dict[str, plt.Figure]:
    """Variance increase (exact vs PDE forms), C_E(s), the coefficient against both
    theories, and the integral of eta for each form."""
    a, s = result.arrays, result.summary
    fc = s["fits"]["diffusion_coefficient"]
    fig, ax = plot.subplots(2, 2, width=5.2, height=3.7)
    t = a["tsave"]
    ax[0, 0].errorbar(t, a["increase_exact"], a["increase_exact_sem"], fmt="o", ms=3, color="k", label="exact")
    styles = {"fitted": ("C0", "-", f"PDE, fitted c = {fc['scale']:.3f}"), "golden": ("C1", "--", "PDE, golden rule"),
              "eq47_classical": ("C2", ":", "PDE, eq. 47 without quantum term"), "eq47": ("C3", "-.", "PDE, eq. 47")}
    for k, (col, ls, lab) in styles.items():
        ax[0, 0].plot(t, a[f"{k}_increase"], color=col, ls=ls, label=lab)
    ax[0, 0].set(xlabel="t", ylabel="Var E(t) - Var E(0)", title="energy variance")
    ax[0, 0].legend(fontsize=8)
    ax[0, 1].plot(a["correlation_s"], a["correlation"], color="C0")
    ax[0, 1].axhline(0.0, color="0.5", lw=0.8)
    ax[0, 1].set(xlabel="s", ylabel="Re C_E(s)", title=f"V correlation at E = {cfg.energy:g} (realisation mean)")
    names = ["fitted", "golden rule", "eq. 47 (eps^2 G2)"]
    vals = [fc["value"], fc["golden_rule"], fc["eq47"]]
    errs = [fc["stderr"], fc["golden_rule_stderr"], fc["eq47_stderr"]]
    ax[1, 0].errorbar(range(3), np.array(vals) / cfg.epsilon**2, np.array(errs) / cfg.epsilon**2, fmt="o", capsize=4)
    ax[1, 0].set_xticks(range(3), names)
    title = (f"D/golden = {fc['ratio_golden']:.3f} +- {fc['ratio_golden_stderr']:.3f}, "
             f"D/eq. 47 = {fc['ratio_eq47']:.3f} +- {fc['ratio_eq47_stderr']:.3f}")
    ax[1, 0].set(ylabel="D / eps^2", title=title)
    for k, (col, ls, lab) in styles.items():
        ax[1, 1].plot(t, a[f"{k}_norm"] - 1.0, color=col, ls=ls, label=lab)
    ax[1, 1].set(xlabel="t", ylabel="integral of eta dE - 1", title="probability")
    ax[1, 1].legend(fontsize=8)
    plot.caption(fig, f"d = {cfg.dim}, eps = {cfg.epsilon:g}, E0 = {cfg.energy:g}, {cfg.n_states} states, "
                 f"{cfg.realisations} realisations; regime: {s['regime']}")
    return {"driven_coefficient": fig}


register("driven_coefficient", CoefficientConfig, run, plot_coefficient,
         "energy-diffusion coefficient of a driven GOE system vs golden rule and eq. 47 (paper 004)")
