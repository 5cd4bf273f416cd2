"""Heat-conduction chain experiments: paper Figs. 2, 3, 4, 5 and 8.

Source: Michel, Gemmer, Mahler, PRE 73, 016101 (2006), cond-mat/0511727
(seed ``002_35d65e6582f938cb.txt``); PHYSICS.md §2 and §6.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from .. import plot
from ..config import ExperimentConfig, Section
from ..fit import fit_least_squares
from ..io import Stopwatch
from ..models.heat_chain import (
    HeatChain,
    deviation_d2,
    golden_rule_kappa,
    ham_populations,
    heat_capacity,
    multiband_conductivity,
    random_band_state,
    single_band_multiband_data,
    thermal_conductivity,
)
from ..sweep import batch_multiple, shard_batch
from . import ExperimentResult, register


class ChainParams(Section):
    """The chain (paper values by default)."""

    n_subunits: int = Field(3, ge=2, description="N")
    n_levels: int = Field(500, ge=1, description="n, levels per band")
    band_width: float = Field(0.05, gt=0, description="delta epsilon")
    gap: float = Field(1.0, gt=0, description="Delta E")
    coupling: float = Field(5e-5, gt=0, description="lambda")

    @model_validator(mode="after")
    def _band_below_gap(self):
        if self.band_width >= 2 * self.gap:
            raise ValueError(f"band_width ({self.band_width}) must be < 2 * gap ({2 * self.gap})")
        return self

    def build(self, key, warn=True) -> HeatChain:
        return HeatChain.random(
            key, self.n_subunits, self.n_levels, band_width=self.band_width, gap=self.gap,
            coupling=self.coupling, warn=warn,
        )


class TimeGrid(Section):
    """Save times ``linspace(0, t_max_kappa / kappa, n_times)`` in units of ``1/kappa``."""

    t_max_kappa: float = Field(2.0, gt=0)
    n_times: int = Field(41, ge=3)

    def times(self, kappa) -> jax.Array:
        return jnp.linspace(0.0, self.t_max_kappa / float(kappa), self.n_times)


class FitOptions(Section):
    """Fits of the relaxation run.

    ``kappa`` fits the HAM rate to the mean exact ``P_mu(t)`` of ``n_states`` random
    pure initial states (state 0 is the one plotted): a single pure state carries
    fluctuations that move its best-fit kappa by about 7% (n = 500), so one state
    alone is a noisy estimator. ``lambda_direct`` fits lambda to state 0 by
    differentiating the exact evolution, from ``lambda_start_ratio * lambda``.
    """

    kappa: bool = True
    n_states: int = Field(8, ge=2)
    lambda_direct: bool = True
    lambda_start_ratio: float = Field(0.5, gt=0, description="lambda_0 / lambda")
    max_steps: int = Field(100, ge=1)


# ----------------------------------------------------------------------------- Figs. 2 and 3


class RelaxationConfig(ExperimentConfig):
    """Exact relaxation vs HAM from an excitation in subunit ``initial_subunit``."""

    model: ChainParams = ChainParams()
    times: TimeGrid = TimeGrid()
    initial_subunit: int = Field(1, ge=1, description="1-based, as in the paper")
    d2_times: TimeGrid = TimeGrid(t_max_kappa=5.0, n_times=501)
    fit: FitOptions = FitOptions()

    @model_validator(mode="after")
    def _subunit_in_chain(self):
        if self.initial_subunit > self.model.n_subunits:
            raise ValueError(
                f"initial_subunit ({self.initial_subunit}) exceeds model.n_subunits "
                f"({self.model.n_subunits})"
            )
        return self


@eqx.filter_jit
def _populations_at(chain: HeatChain, psi0, ts):
    return chain.propagator().evolve(psi0, ts, chain.populations).ys


def _lambda_residuals(params, chain, psi0, ts, data):
    c = eqx.tree_at(lambda m: m.coupling, chain, params["lambda"])
    return _populations_at(c, psi0, ts) - data


def run_relaxation(cfg: RelaxationConfig) -> ExperimentResult:
    sw = Stopwatch()
    k_chain, k_state = jax.random.split(jax.random.key(cfg.seed))
    chain = cfg.model.build(k_chain)
    kappa_theory = float(chain.kappa)
    ts = cfg.times.times(kappa_theory)
    mu0 = cfg.initial_subunit - 1
    # State 0 is the one plotted; all n_states feed the kappa fit (see FitOptions).
    psis = chain.local_state(random_band_state(k_state, chain.n_levels, (cfg.fit.n_states,)), mu0)
    psi0, p0 = psis[0], chain.populations(psis[0])

    with sw("exact_evolution"):
        prop = chain.propagator()
        p_all = np.asarray(prop.evolve(psis, ts, chain.populations).ys)  # (R, T, N)
    p_exact = p_all[0]
    p_ham = np.asarray(chain.ham_populations(p0, ts))

    with sw("d2"):
        ts_d2 = cfg.d2_times.times(kappa_theory)
        p1 = prop.evolve(psi0, ts_d2, chain.populations).ys[:, mu0]
        p1_ham = chain.ham_populations(p0, ts_d2)[:, mu0]
        d2 = float(deviation_d2(ts_d2, p1, p1_ham))

    fits, arrays = {}, {}
    lam = cfg.model.coupling
    if cfg.fit.kappa:
        res = lambda p, data: ham_populations(p["kappa"], p0, ts) - data
        fit_kappa = lambda data, progress: fit_least_squares(
            res, {"kappa": 0.5 * kappa_theory}, args=(jnp.asarray(data),),
            max_steps=cfg.fit.max_steps, progress=progress, desc="fit kappa",
        )
        with sw("fit_kappa"):
            fk = fit_kappa(p_all.mean(0), cfg.progress)
            singles = np.array([float(fit_kappa(p, False).values["kappa"]) for p in p_all])
        k_fit = float(fk.values["kappa"])
        # Resampling error: spread of the single-state fits over sqrt(R). The curvature
        # error treats the correlated pure-state fluctuations as independent noise and
        # is far too small; it is reported beside it.
        k_err = float(singles.std(ddof=1) / np.sqrt(len(singles)))
        # kappa = 2 pi lambda^2 n / delta_eps  =>  lambda = sqrt(kappa delta_eps / (2 pi n))
        lam_fit = float(np.sqrt(k_fit * cfg.model.band_width / (2 * np.pi * cfg.model.n_levels)))
        fits["kappa"] = {
            "value": k_fit, "stderr": k_err, "theory": kappa_theory,
            "rel_error": k_fit / kappa_theory - 1, "converged": fk.converged,
            "stderr_curvature": float(fk.stderr["kappa"]),
            "single_state_values": singles.tolist(),
            "note": f"fitted to the mean P_mu(t) of {len(singles)} random pure states; "
                    "stderr = std of single-state fits / sqrt(states)",
        }
        fits["lambda"] = {
            "value": lam_fit, "stderr": lam_fit * k_err / (2 * k_fit), "true": lam,
            "rel_error": lam_fit / lam - 1, "derived_from": "kappa",
        }
        arrays["loss_history_kappa"] = np.asarray(fk.loss_history)
        arrays["p_exact_mean"] = p_all.mean(0)
    if cfg.fit.lambda_direct:
        with sw("fit_lambda_direct"):
            fl = fit_least_squares(
                _lambda_residuals, {"lambda": cfg.fit.lambda_start_ratio * lam},
                args=(chain, psi0, ts, jnp.asarray(p_exact)),
                max_steps=cfg.fit.max_steps, progress=cfg.progress, desc="fit lambda (exact)",
            )
        lv = float(fl.values["lambda"])
        fits["lambda_direct"] = {
            "value": lv, "stderr": float(fl.stderr["lambda"]), "true": lam,
            "start": cfg.fit.lambda_start_ratio * lam, "rel_error": lv / lam - 1,
            "converged": fl.converged, "n_steps": fl.n_steps,
            "note": "fitted to the plotted state's exact P_mu(t) by differentiating the "
                    "eigendecomposition; noise-free data, so stderr reflects round-off only",
        }
        arrays["loss_history_lambda_direct"] = np.asarray(fl.loss_history)

    arrays.update(ts=np.asarray(ts), p_exact=p_exact, p_ham=p_ham)
    summary = {
        "kappa_theory": kappa_theory,
        "max_abs_deviation_P": float(np.abs(p_exact - p_ham).max()),
        "D2": d2,
        "D2_definition": "(1/T) int_0^T (P1_HAM - P1_exact)^2 dt, T = 5 tau, tau = 1/kappa",
        "validity_eq29": chain.validity(),
        "fits": fits,
        "timings_s": sw.seconds,
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_relaxation(result: ExperimentResult, cfg: RelaxationConfig):
    a, s = result.arrays, result.summary
    kappa = s["kappa_theory"]
    fig, ax = plot.subplots(width=6.0, height=4.0)
    tk = a["ts"] * kappa
    for mu in range(a["p_exact"].shape[1]):
        (line,) = ax.plot(tk, a["p_ham"][:, mu], lw=1.5, label=f"HAM $P_{mu + 1}$")
        ax.plot(tk, a["p_exact"][:, mu], "o", ms=3.5, color=line.get_color())
    ax.set_xlabel(r"$\kappa t$  ($1/\kappa$ = %.4g $\hbar/\Delta E$)" % (1 / kappa))
    ax.set_ylabel(r"$P_\mu(t)$")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(title="lines: HAM, dots: exact", ncols=2, fontsize=8)
    m = cfg.model
    plot.caption(
        fig, f"N={m.n_subunits}, n={m.n_levels}, δε={m.band_width}, λ={m.coupling:g};  "
        f"D²={s['D2']:.2e}",
    )
    figs = {"populations": fig}
    losses = {k[len("loss_history_"):]: v for k, v in a.items() if k.startswith("loss_history_")}
    if losses:
        fig2, ax2 = plot.subplots(width=5.0, height=3.2)
        for name, hist in losses.items():
            ax2.semilogy(np.arange(1, len(hist) + 1), hist, "o-", ms=3, label=name)
        ax2.set_xlabel("optimiser step")
        ax2.set_ylabel("loss ½Σr²")
        ax2.legend()
        figs["fit_loss"] = fig2
    return figs


register(
    "heat_chain_relaxation", RelaxationConfig, run_relaxation, plot_relaxation,
    "chain relaxation, exact vs HAM, with kappa and lambda fits (paper Figs. 2/3)",
)


# ----------------------------------------------------------------------------- Fig. 4


class HistogramConfig(ExperimentConfig):
    """D² over many random initial states of subunit 1 (paper Fig. 4)."""

    model: ChainParams = ChainParams(n_subunits=2)
    n_states_cpu: int = Field(2000, ge=1)
    n_states_gpu: int = Field(15000, ge=1)
    chunk_size: int = Field(250, ge=1)
    d2_times: TimeGrid = TimeGrid(t_max_kappa=5.0, n_times=201)
    bins: int = Field(60, ge=2)


@eqx.filter_jit
def _d2_batch(prop, chain: HeatChain, psi_band, ts):
    """D² of P_1 for a batch of band states of subunit 1 (only subunit 1's rows formed)."""
    psi0 = chain.local_state(psi_band, 0)
    p1 = prop.evolve(psi0, ts, lambda x: jnp.sum(jnp.abs(x) ** 2, -1), rows=slice(0, chain.n_levels),
                     time_batch=8).ys
    p0 = jnp.zeros(chain.n_subunits).at[0].set(1.0)
    p1_ham = ham_populations(chain.kappa, p0, ts)[:, 0]
    return deviation_d2(ts, p1, jnp.broadcast_to(p1_ham, p1.shape))


def run_histogram(cfg: HistogramConfig) -> ExperimentResult:
    sw = Stopwatch()
    k_chain, k_states = jax.random.split(jax.random.key(cfg.seed))
    chain = cfg.model.build(k_chain)
    on_gpu = jax.default_backend() == "gpu"
    n_states = cfg.n_states_gpu if on_gpu else cfg.n_states_cpu
    ts = cfg.d2_times.times(chain.kappa)
    with sw("diagonalisation"):
        prop = chain.propagator()
        prop.energies.block_until_ready()
    d2 = []
    # Chunks are a multiple of the device count and sharded across devices (a no-op on
    # one device); the last chunk is padded with repeated indices and trimmed.
    chunk = -(-cfg.chunk_size // batch_multiple()) * batch_multiple()
    with sw("batch_evolution"):
        starts = range(0, n_states, chunk)
        for start in tqdm(starts, desc="D² batches", disable=not cfg.progress):
            size = min(chunk, n_states - start)
            # keys by state index: the same seed gives the same states whatever the chunk size
            idx = jnp.minimum(jnp.arange(start, start + chunk), n_states - 1)
            keys = jax.vmap(lambda i: jax.random.fold_in(k_states, i))(idx)
            psi = shard_batch(jax.vmap(lambda k: random_band_state(k, chain.n_levels))(keys))
            d2.append(np.asarray(_d2_batch(prop, chain, psi, ts))[:size])
    d2 = np.concatenate(d2)
    med = float(np.median(d2))
    summary = {
        "n_states": int(n_states),
        "device": jax.default_backend(),
        "n_devices": jax.device_count(),
        "D2_mean": float(d2.mean()),
        "D2_median": med,
        "D2_std": float(d2.std()),
        "D2_min": float(d2.min()),
        "D2_max": float(d2.max()),
        "fraction_within_2x_median": float(np.mean(d2 < 2 * med)),
        "kappa_theory": float(chain.kappa),
        "timings_s": sw.seconds,
    }
    return ExperimentResult(arrays={"D2": d2, "ts": np.asarray(ts)}, summary=summary)


def plot_histogram(result: ExperimentResult, cfg: HistogramConfig):
    d2, s = result.arrays["D2"], result.summary
    fig, ax = plot.subplots(width=5.5, height=3.8)
    ax.hist(1e3 * d2, bins=cfg.bins, color="tab:blue", alpha=0.8)
    ax.axvline(1e3 * s["D2_median"], color="k", ls="--", lw=1, label="median")
    ax.set_xlabel(r"$10^3 D_1^2$")
    ax.set_ylabel("number of initial states")
    ax.legend()
    m = cfg.model
    plot.caption(
        fig, f"{s['n_states']} random states of subunit 1; N={m.n_subunits}, n={m.n_levels}, "
        f"δε={m.band_width}, λ={m.coupling:g}",
    )
    return {"d2_histogram": fig}


register(
    "heat_chain_d2_histogram", HistogramConfig, run_histogram, plot_histogram,
    "histogram of D² over random initial states, batched exact propagation (paper Fig. 4)",
)


# ----------------------------------------------------------------------------- Fig. 5


class ScalingConfig(ExperimentConfig):
    """D² against band size n (N fixed) and against chain length N (n fixed), paper Fig. 5.

    ``n_scaling = "fixed_spacing"`` keeps the level spacing ``band_width / n`` (taken
    from ``model``) and lambda fixed, so kappa and both eq. 29 criteria are the same
    for every n; ``"fixed_kappa"`` keeps ``band_width`` and rescales lambda to keep
    kappa, which violates ``lambda n / delta eps >= 1/2`` for small n (warned). The
    paper does not say which it used.
    """

    model: ChainParams = ChainParams()
    n_values: list[int] = [50, 100, 200, 300, 400, 500]
    n_scaling: Literal["fixed_spacing", "fixed_kappa"] = "fixed_spacing"
    n_subunits_values: list[int] = [2, 3, 4, 5]
    realisations: int = Field(4, ge=2, description="random couplings + initial states per point")
    realisations_vs_N: int = Field(3, ge=1)
    d2_times: TimeGrid = TimeGrid(t_max_kappa=5.0, n_times=401)

    @model_validator(mode="after")
    def _values(self):
        if len(self.n_values) < 2 or min(self.n_values) < 1:
            raise ValueError("n_values needs at least two band sizes >= 1")
        if min(self.n_subunits_values, default=2) < 2:
            raise ValueError("n_subunits_values must all be >= 2")
        return self


def _d2_point(chain: HeatChain, key, ts) -> float:
    psi0 = chain.local_state(random_band_state(key, chain.n_levels), 0)
    p0 = chain.populations(psi0)
    p1 = _populations_at(chain, psi0, ts)[:, 0]
    return float(deviation_d2(ts, p1, chain.ham_populations(p0, ts)[:, 0]))


def run_scaling(cfg: ScalingConfig) -> ExperimentResult:
    sw = Stopwatch()
    m = cfg.model
    spacing = m.band_width / m.n_levels
    kappa0 = float(golden_rule_kappa(m.coupling, m.n_levels, m.band_width))
    ts = cfg.d2_times.times(kappa0)
    key = jax.random.key(cfg.seed)
    d2_n = np.zeros((len(cfg.n_values), cfg.realisations))
    with sw("sweep_n"):
        jobs = [(i, r) for i in range(len(cfg.n_values)) for r in range(cfg.realisations)]
        for i, r in tqdm(jobs, desc="D² vs n", disable=not cfg.progress):
            n = cfg.n_values[i]
            if cfg.n_scaling == "fixed_spacing":
                width, lam = spacing * n, m.coupling
            else:
                width, lam = m.band_width, float(np.sqrt(kappa0 * m.band_width / (2 * np.pi * n)))
            kc, ks = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, n), r))
            chain = HeatChain.random(
                kc, m.n_subunits, n, band_width=width, gap=m.gap, coupling=lam
            )
            d2_n[i, r] = _d2_point(chain, ks, ts)
    d2_N = np.zeros((len(cfg.n_subunits_values), cfg.realisations_vs_N))
    with sw("sweep_N"):
        jobs = [(i, r) for i in range(len(cfg.n_subunits_values)) for r in range(cfg.realisations_vs_N)]
        for i, r in tqdm(jobs, desc="D² vs N", disable=not cfg.progress):
            nsub = cfg.n_subunits_values[i]
            kc, ks = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 10_000 + nsub), r))
            chain = HeatChain.random(
                kc, nsub, m.n_levels, band_width=m.band_width, gap=m.gap, coupling=m.coupling
            )
            d2_N[i, r] = _d2_point(chain, ks, ts)

    # Power law D² = A n^b fitted to log of the realisation means, weighted by their
    # standard errors (delta method: sem(log x) = sem(x) / x).
    n_arr = np.asarray(cfg.n_values, float)
    mean = d2_n.mean(1)
    sem_log = d2_n.std(1, ddof=1) / np.sqrt(cfg.realisations) / mean
    res = lambda p, y, w: (jnp.log(p["A"]) + p["b"] * jnp.log(n_arr) - y) / w
    with sw("fit_power_law"):
        fp = fit_least_squares(
            res, {"A": float(mean[0] * n_arr[0]), "b": -1.0}, positive=["A"],
            args=(jnp.log(mean), jnp.asarray(sem_log)),
        )
    b, b_err = float(fp.values["b"]), float(fp.stderr["b"])
    summary = {
        "n_values": cfg.n_values,
        "n_scaling": cfg.n_scaling,
        "D2_vs_n_mean": mean.tolist(),
        "n_subunits_values": cfg.n_subunits_values,
        "D2_vs_N_mean": d2_N.mean(1).tolist(),
        "kappa": kappa0,
        "fits": {
            "exponent": {"value": b, "stderr": b_err, "theory": -1.0,
                         "note": "D² ∝ n^b, weighted least squares on log D²"},
            "amplitude": {"value": float(fp.values["A"]), "stderr": float(fp.stderr["A"])},
        },
        "timings_s": sw.seconds,
    }
    arrays = {"n_values": n_arr, "D2_vs_n": d2_n, "N_values": np.asarray(cfg.n_subunits_values),
              "D2_vs_N": d2_N, "ts": np.asarray(ts)}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_scaling(result: ExperimentResult, cfg: ScalingConfig):
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
    "heat_chain_d2_scaling", ScalingConfig, run_scaling, plot_scaling,
    "D² against band size n (power-law fit) and chain length N (paper Fig. 5)",
)


# ----------------------------------------------------------------------------- Fig. 8


class ConductivityConfig(ExperimentConfig):
    """kappa_th(T) = kappa c(T) (eqs. 48, 51), with eq. 47 evaluated as a check."""

    model: ChainParams = ChainParams(n_subunits=2)
    t_min: float = Field(0.02, gt=0, description="k_B T / Delta E")
    t_max: float = Field(10.0, gt=0)
    n_temperatures: int = Field(2000, ge=10)

    @model_validator(mode="after")
    def _range(self):
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must exceed t_min ({self.t_min})")
        return self


def run_conductivity(cfg: ConductivityConfig) -> ExperimentResult:
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


def plot_conductivity(result: ExperimentResult, cfg: ConductivityConfig):
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
    ax2.set_ylabel(r"$\kappa_{th}$")
    ax2.set_ylim(a["kappa_th"][-1] / 3, a["kappa_th"].max() * 3)
    ax2.legend(fontsize=8)
    m = cfg.model
    plot.caption(fig, f"n={m.n_levels}, δε={m.band_width}, λ={m.coupling:g}; "
                 f"peak {s['peak_kappa_th']:.3e} at T={s['peak_temperature']:.3f}")
    return {"conductivity": fig}


register(
    "heat_chain_conductivity", ConductivityConfig, run_conductivity, plot_conductivity,
    "heat conductivity kappa_th(T) = kappa c(T) (paper Fig. 8, eqs. 47, 48, 51)",
)
