"""Fig. 5: D² against the band size n (fitted power law; the paper reports ~1/n) and
against the chain length N."""

import itertools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from ... import plot
from ...config import ExperimentConfig, TimeGrid
from ...fit import fit_least_squares
from ...models.heat_chain import HeatChain, HeatChainParams, deviation_d2, golden_rule_kappa, random_band_state
from .. import ExperimentResult, register, stage
from .relaxation import _populations_at


class ScalingConfig(ExperimentConfig):
    """D² against band size n (N fixed) and chain length N (n fixed); times in 1/kappa.

    `n_scaling = "fixed_spacing"` keeps the level spacing `band_width / n` (from
    `model`) and lambda fixed, so kappa and both eq. 29 criteria are the same for every
    n; `"fixed_kappa"` keeps `band_width` and rescales lambda to keep kappa, which
    violates `lambda n / delta eps >= 1/2` for small n (warned). The paper does not say
    which it used.
    """

    model: HeatChainParams = HeatChainParams()
    n_values: list[int] = [50, 100, 200, 300, 400, 500]
    n_scaling: Literal["fixed_spacing", "fixed_kappa"] = "fixed_spacing"
    n_subunits_values: list[int] = [2, 3, 4, 5]
    realisations: int = Field(4, ge=2, description="random couplings + initial states per point")
    realisations_vs_N: int = Field(3, ge=1)
    d2_times: TimeGrid = TimeGrid(t_max=5.0, n_times=401)

    def memory_requirements(self):
        from ...models.heat_chain import memory_estimate

        m = self.model
        n_max = max(self.n_values)
        return [("n_values", memory_estimate(m.n_subunits, n_max), f"the largest band, n = {n_max}"),
                ("n_subunits_values", memory_estimate(max(self.n_subunits_values), m.n_levels),
                 f"the longest chain, N = {max(self.n_subunits_values)}")]

    @model_validator(mode="after")
    def _values(self):
        if len(self.n_values) < 2 or min(self.n_values) < 1:
            raise ValueError("n_values needs at least two band sizes >= 1")
        if min(self.n_subunits_values, default=2) < 2:
            raise ValueError("n_subunits_values must all be >= 2")
        return self


def _d2_point(chain: HeatChain, key, ts) -> float:
    psi0 = chain.local_state(random_band_state(key, chain.n_levels), 0)
    p1 = _populations_at(chain, psi0, ts)[:, 0]
    return float(deviation_d2(ts, p1, chain.ham_populations(chain.populations(psi0), ts)[:, 0]))


def _sweep_n(cfg: ScalingConfig, ts, kappa0):
    m = cfg.model
    spacing = m.band_width / m.n_levels
    key = jax.random.key(cfg.seed)
    d2 = np.zeros((len(cfg.n_values), cfg.realisations))
    jobs = list(itertools.product(range(len(cfg.n_values)), range(cfg.realisations)))
    for i, r in tqdm(jobs, desc="D² vs n", disable=not cfg.progress):
        n = cfg.n_values[i]
        if cfg.n_scaling == "fixed_spacing":
            width, lam = spacing * n, m.coupling
        else:
            width, lam = m.band_width, float(np.sqrt(kappa0 * m.band_width / (2 * np.pi * n)))
        kc, ks = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, n), r))
        chain = HeatChain.random(kc, m.n_subunits, n, band_width=width, gap=m.gap, coupling=lam)
        d2[i, r] = _d2_point(chain, ks, ts)
    return {"D2_vs_n": d2}


def _sweep_N(cfg: ScalingConfig, ts):
    m = cfg.model
    key = jax.random.key(cfg.seed)
    d2 = np.zeros((len(cfg.n_subunits_values), cfg.realisations_vs_N))
    jobs = list(itertools.product(range(len(cfg.n_subunits_values)), range(cfg.realisations_vs_N)))
    for i, r in tqdm(jobs, desc="D² vs N", disable=not cfg.progress):
        nsub = cfg.n_subunits_values[i]
        kc, ks = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 10_000 + nsub), r))
        chain = HeatChain.random(kc, nsub, m.n_levels, band_width=m.band_width, gap=m.gap, coupling=m.coupling)
        d2[i, r] = _d2_point(chain, ks, ts)
    return {"D2_vs_N": d2}


def _power_law(n_arr, d2_n):
    """D² = A n^b, weighted least squares on the log of the realisation means (weights:
    their standard errors by the delta method, sem(log x) = sem(x)/x)."""
    mean = d2_n.mean(1)
    sem_log = d2_n.std(1, ddof=1) / np.sqrt(d2_n.shape[1]) / mean
    res = lambda p, y, w: (jnp.log(p["A"]) + p["b"] * jnp.log(n_arr) - y) / w
    return fit_least_squares(
        res, {"A": float(mean[0] * n_arr[0]), "b": -1.0}, positive=["A"], args=(jnp.log(mean), jnp.asarray(sem_log))
    )


def run(cfg: ScalingConfig) -> ExperimentResult:
    kappa0 = float(golden_rule_kappa(cfg.model.coupling, cfg.model.n_levels, cfg.model.band_width))
    ts = cfg.d2_times.times(1.0 / kappa0)
    d2_n = stage("sweep_n", lambda: _sweep_n(cfg, ts, kappa0))["D2_vs_n"]
    d2_N = stage("sweep_N", lambda: _sweep_N(cfg, ts))["D2_vs_N"]
    n_arr = np.asarray(cfg.n_values, float)
    fp = _power_law(n_arr, d2_n).as_dict()
    b, b_err = fp["b"]["value"], fp["b"]["stderr"]
    summary = {
        "n_values": cfg.n_values,
        "n_scaling": cfg.n_scaling,
        "D2_vs_n_mean": d2_n.mean(1).tolist(),
        "n_subunits_values": cfg.n_subunits_values,
        "D2_vs_N_mean": d2_N.mean(1).tolist(),
        "kappa": kappa0,
        "fits": {
            "exponent": {**fp["b"], "theory": -1.0, "z_vs_theory": (b + 1.0) / b_err,
                         "note": "D² ∝ n^b, weighted least squares on log D² (errors scaled by the fit's "
                                 "residual scatter)"},
            "amplitude": fp["A"],
        },
    }
    arrays = {"n_values": n_arr, "D2_vs_n": d2_n, "N_values": np.asarray(cfg.n_subunits_values),
              "D2_vs_N": d2_N, "ts": np.asarray(ts)}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: ScalingConfig):
    a, s = result.arrays, result.summary
    fig, (ax, ax2) = plot.subplots(1, 2, width=4.6, height=3.8)
    n, d2 = a["n_values"], a["D2_vs_n"]
    mean, sem = d2.mean(1), d2.std(1, ddof=1) / np.sqrt(d2.shape[1])
    for r in range(d2.shape[1]):
        ax.plot(n, d2[:, r], ".", color="0.6", ms=4, label="realisations" if r == 0 else None)
    ax.errorbar(n, mean, sem, fmt="o", color="tab:blue", label="mean ± s.e.")
    fit = s["fits"]
    nn = np.geomspace(n.min(), n.max(), 50)
    ax.plot(nn, fit["amplitude"]["value"] * nn ** fit["exponent"]["value"], "k-",
            label=rf"fit $\propto n^{{{fit['exponent']['value']:.2f}\pm{fit['exponent']['stderr']:.2f}}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plot.label_log_axis(ax, n)
    ax.set_xlabel("band size n")
    ax.set_ylabel(r"$D_1^2$")
    ax.set_title(f"N = {cfg.model.n_subunits} ({cfg.n_scaling.replace('_', ' ')})", fontsize=10)
    ax.legend(fontsize=8)
    nN, d2N = a["N_values"], a["D2_vs_N"]
    for r in range(d2N.shape[1]):
        ax2.plot(nN, d2N[:, r], ".", color="0.6", ms=4)
    sem_N = d2N.std(1, ddof=1) / np.sqrt(d2N.shape[1]) if d2N.shape[1] > 1 else None
    ax2.errorbar(nN, d2N.mean(1), sem_N, fmt="o-", color="tab:red", label="mean ± s.e.")
    ax2.legend(fontsize=8)
    ax2.set_xlabel("chain length N")
    ax2.set_ylabel(r"$D_1^2$")
    ax2.set_title(f"n = {cfg.model.n_levels}", fontsize=10)
    ax2.set_xticks(nN)
    return {"d2_scaling": fig}


register(
    "heat_chain_d2_scaling", ScalingConfig, run, plot_result,
    "D² against band size n (power-law fit) and chain length N (paper Fig. 5)",
)
