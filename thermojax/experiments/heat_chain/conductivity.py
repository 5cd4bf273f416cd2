"""Fig. 8: the heat conductivity kappa_th(T) = kappa c(T) (paper eqs. 48, 51), with the
multi-band formula (eq. 47) evaluated alongside as a check."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig
from ...models.heat_chain import (
    HeatChainParams,
    golden_rule_kappa,
    heat_capacity,
    multiband_conductivity,
    single_band_multiband_data,
    thermal_conductivity,
)
from .. import ExperimentResult, register


class ConductivityConfig(ExperimentConfig):
    """kappa_th(T) = kappa c(T) (eqs. 48, 51), with eq. 47 evaluated as a check."""

    model: HeatChainParams = HeatChainParams(n_subunits=2)
    t_min: float = Field(0.02, gt=0, description="k_B T / Delta E")
    t_max: float = Field(10.0, gt=0)
    n_temperatures: int = Field(2000, ge=10)

    @model_validator(mode="after")
    def _range(self):
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must exceed t_min ({self.t_min})")
        return self


def run(cfg: ConductivityConfig) -> ExperimentResult:
    m = cfg.model
    kappa = float(golden_rule_kappa(m.coupling, m.n_levels, m.band_width))
    temps = jnp.linspace(cfg.t_min, cfg.t_max, cfg.n_temperatures)
    c = heat_capacity(temps, m.n_levels, m.gap)
    k_th = thermal_conductivity(temps, kappa, m.n_levels, m.gap)
    k_47 = jax.vmap(
        lambda t: multiband_conductivity(t, *single_band_multiband_data(t, m.n_levels, kappa, m.gap))
    )(temps)
    i = int(jnp.argmax(k_th))
    # refine the peak between the grid neighbours: root of d kappa_th / dT (optimistix)
    slope = lambda t, _: jax.grad(thermal_conductivity)(t, kappa, m.n_levels, m.gap)
    lo, hi = temps[max(i - 1, 0)], temps[min(i + 1, len(temps) - 1)]
    t_peak = optx.root_find(slope, optx.Bisection(rtol=1e-12, atol=1e-12), (lo + hi) / 2,
                            options={"lower": lo, "upper": hi}).value
    hi = temps > 0.5 * cfg.t_max
    slope_hi = float(np.polyfit(np.log(temps[hi]), np.log(k_th[hi]), 1)[0])
    summary = {
        "kappa": kappa,
        "peak_kappa_th": float(thermal_conductivity(t_peak, kappa, m.n_levels, m.gap)),
        "peak_temperature": float(t_peak),
        "high_T_log_slope": slope_hi,
        "max_rel_diff_eq47_vs_eq51": float(jnp.max(jnp.abs(k_47 / k_th - 1))),
        "units": "kappa_th in k_B Delta E / hbar, T in Delta E / k_B",
    }
    arrays = {"temperature": np.asarray(temps), "heat_capacity": np.asarray(c),
              "kappa_th": np.asarray(k_th), "kappa_th_eq47": np.asarray(k_47)}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: ConductivityConfig):
    a, s = result.arrays, result.summary
    fig, (ax, ax2) = plot.subplots(1, 2, width=4.6, height=3.6)
    temps = a["temperature"]
    t_hi = min(float(temps[-1]), 8 * s["peak_temperature"])  # linear panel: around the peak
    ax.plot(temps, 1e3 * a["kappa_th"], lw=2, label="eq. 51: κ c(T)")
    shown = np.flatnonzero(temps <= t_hi)
    step = max(len(shown) // 25, 1)
    ax.plot(temps[shown][::step], 1e3 * a["kappa_th_eq47"][shown][::step], "o", ms=3.5,
            label="eq. 47 (multi-band sum)")
    ax.axvline(s["peak_temperature"], color="0.5", ls=":", lw=1)
    ax.set_xlim(0, t_hi)
    ax.set_xlabel(r"$k_B T\ [\Delta E]$")
    ax.set_ylabel(r"$10^3\,\kappa_{th}\ [k_B \Delta E/\hbar]$")
    ax.legend(fontsize=8)
    ax2.loglog(a["temperature"], a["kappa_th"], lw=2)
    tt = a["temperature"][a["temperature"] > 1]
    ax2.loglog(tt, a["kappa_th"][-1] * (tt / tt[-1]) ** -2.0, "k--", lw=1, label=r"$T^{-2}$")
    ax2.set_xlabel(r"$k_B T\ [\Delta E]$")
    ax2.set_ylabel(r"$\kappa_{th}\ [k_B \Delta E/\hbar]$")
    ax2.set_ylim(a["kappa_th"][-1] / 3, a["kappa_th"].max() * 3)
    ax2.legend(fontsize=8)
    m = cfg.model
    plot.caption(fig, f"n={m.n_levels}, δε={m.band_width}, λ={m.coupling:g}; "
                 f"peak {s['peak_kappa_th']:.3e} at T={s['peak_temperature']:.3f}")
    return {"conductivity": fig}


register(
    "heat_chain_conductivity", ConductivityConfig, run, plot_result,
    "heat conductivity kappa_th(T) = kappa c(T) (paper Fig. 8, eqs. 47, 48, 51)",
)
