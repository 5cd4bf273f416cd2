r"""`kms_finite_bath`: every master equation against the exact reduced dynamics of spins coupled
to a random-matrix bath (testing arXiv:2505.20064's error claim rather than assuming it).

The system (`n_system` spins of the Ising chain) couples through $\lambda X_1\otimes B$ to
a GOE bath $H_B$ (dimension `bath_dim`, semicircle radius `bath_radius`) that starts in
its Gibbs state at $\beta$; the whole system evolves exactly (eigensystem propagator,
reduced state without forming $\rho(t)$). The bath's own $\gamma(\omega)$, its delta
peaks smoothed on the scale `sigma` in the KMS-exact way (`FiniteBath.spectrum`), feeds
every generator. Reported per $\lambda$ and generator: the trace distance to the exact
reduced state against time, its growth exponent $p$ in $c\,t^p$ on the window
$[$`growth_t_min`$, t_{\max}]$, the $\lambda^2$ scaling of the error at fixed $t$, and
$\lambda^2_{\rm eff}$ fitted by optax so that each generator best matches the exact
states (curvature standard errors: the residuals are systematic, so they are
optimistic). The window must end before the bath's Heisenberg time
$t_H = 2\pi\rho_B(\bar E)$ (reported).
"""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, TimeGrid
from ...fit import fit_least_squares
from ...models.kms import (
    OpenSystem,
    coupled_hamiltonian,
    goe_bath,
    liouvillian_parts,
    mixed_field_ising,
    reduced_evolution,
    site_operator,
)
from ...spectra import eigh, trace_distance
from .. import ExperimentResult, register, stage
from ._common import ALL_GENERATORS, COLORS, LABELS, GeneratorName, build


class Config(ExperimentConfig):
    """`kms_finite_bath` config."""

    experiment: Literal["kms_finite_bath"] = "kms_finite_bath"
    n_system: int = Field(1, ge=1, le=2, description="spins of the system (Ising chain)")
    bath_dim: int = Field(512, ge=8, le=2048, description="GOE bath dimension")
    bath_radius: float = Field(4.0, gt=0, description="semicircle radius of H_B (J)")
    coupling_radius: float = Field(1.0, gt=0, description="semicircle radius of the bath operator B")
    beta: float = Field(1.0, gt=0, le=20, description="inverse temperature of the bath")
    sigma: float = Field(0.1, gt=0, description="smoothing width of the bath's delta peaks (J)")
    lambdas: list[float] = Field([0.1, 0.2, 0.3], min_length=1, description="coupling strengths lambda")
    tau: float = Field(1.0, gt=0, description="coarse-graining time of the Gaussian generators")
    time: TimeGrid = TimeGrid(t_max=150.0, n_times=76)
    growth_t_min: float = Field(10.0, gt=0, description="growth exponents are fitted on t >= this")
    generators: list[GeneratorName] = Field(list(ALL_GENERATORS), min_length=1)
    fit: bool = Field(True, description="fit lambda^2_eff per generator and coupling (optax)")

    @model_validator(mode="after")
    def _window(self):
        if self.growth_t_min >= self.time.t_max:
            raise ValueError(f"growth_t_min = {self.growth_t_min} must be < time.t_max = {self.time.t_max}")
        if any(lam <= 0 for lam in self.lambdas):
            raise ValueError("lambdas must be > 0")
        return self


def _setup(cfg: Config):
    bath = goe_bath(jax.random.key(cfg.seed), cfg.bath_dim, radius=cfg.bath_radius,
                    coupling_radius=cfg.coupling_radius, beta=cfg.beta)
    hs = mixed_field_ising(cfg.n_system)
    a = site_operator("x", 0, cfg.n_system)
    d = hs.shape[0]
    rho_s = jnp.zeros((d, d)).at[0, 0].set(1.0)  # all spins up
    return bath, hs, a, rho_s


def _exact(cfg: Config, lam: float) -> dict:
    bath, hs, a, rho_s = _setup(cfg)
    es = eigh(coupled_hamiltonian(hs, a, bath, lam))
    rho0 = jnp.kron(rho_s, bath.gibbs_state())
    return {"rho": reduced_evolution(es, rho0, cfg.time.times(), (hs.shape[0], cfg.bath_dim))}


def heisenberg_time(bath) -> float:
    r"""$t_H = 2\pi\rho_B(\bar E)$: levels per unit energy within $\pm0.5$ of the Gibbs mean energy."""
    e = np.asarray(bath.eigensystem.energies)
    p = np.exp(-float(bath.beta) * (e - e.min()))
    mean = float(np.sum(p * e) / p.sum())
    return float(2 * np.pi * np.sum(np.abs(e - mean) < 0.5))


@jax.jit
def _propagate(l0, l1, lam2, rho0, ts):
    r"""$\rho(t_k) = e^{(\mathcal L_0 + \lambda^2\mathcal L_1)t_k}\rho_0$ on a uniform grid $t_k = t_0 + k\Delta t$:
    one matrix exponential and a scan (cheap to compile and to differentiate)."""
    d = rho0.shape[0]
    big = l0 + lam2 * l1
    step = jax.scipy.linalg.expm(big * (ts[1] - ts[0]))
    first = jax.scipy.linalg.expm(big * ts[0]) @ rho0.reshape(d * d)

    def body(v, _):
        return step @ v, v

    _, out = jax.lax.scan(body, first, None, length=ts.shape[0])
    return out.reshape(-1, d, d)


def lambda2_residuals(p, l0, l1, rho0, ts, target):
    r"""Real residuals of $\rho_{\rm ME}(t;\lambda^2) - \rho_{\rm exact}(t)$ (one function object, so
    the compiled fit is reused across generators and couplings)."""
    diff = _propagate(l0, l1, p["lambda2"], rho0, ts) - target
    return jnp.concatenate([diff.real.ravel(), diff.imag.ravel()])


def fit_lambda2(l0, l1, rho0, ts, rho_exact, lam2_start: float, max_steps: int = 100) -> dict:
    r"""$\lambda^2_{\rm eff}$ minimising $\sum_t\|\rho_{\rm ME}(t;\lambda^2) - \rho_{\rm exact}(t)\|_F^2$ (optax)."""

    fit = fit_least_squares(lambda2_residuals, {"lambda2": lam2_start}, args=(l0, l1, rho0, ts, rho_exact),
                            positive=["lambda2"], max_steps=max_steps)
    return {"value": float(fit.values["lambda2"]), "stderr": float(fit.stderr["lambda2"]),
            "converged": bool(fit.converged), "loss": float(fit.loss)}


def _line(p, lx, ly):
    return p["c"] + p["p"] * lx - ly


def _power_fit(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    sel = (x > 0) & (y > 0)
    if sel.sum() < 3:
        return {"value": float("nan"), "stderr": float("nan")}
    lx, ly = jnp.log(x[sel]), jnp.log(y[sel])
    fit = fit_least_squares(_line, {"c": float(ly[0]), "p": 1.0}, args=(lx, ly), positive=[])
    return {"value": float(fit.values["p"]), "stderr": float(fit.stderr["p"]),
            "prefactor": float(jnp.exp(fit.values["c"]))}


def _models(cfg: Config, lam: float, rho_exact) -> dict:
    bath, hs, a, rho_s = _setup(cfg)
    system = OpenSystem(hs, [a], bath.spectrum(cfg.sigma), lam)
    ts = cfg.time.times()
    out = {}
    for name, gen in build(cfg.generators, system, cfg.tau).items():
        l0, l1 = liouvillian_parts(gen)
        rho = _propagate(l0, l1, lam**2, rho_s.astype(complex), ts)
        out[f"error_{name}"] = trace_distance(rho, jnp.asarray(rho_exact))
        if cfg.fit:
            out[f"lambda2_{name}"] = fit_lambda2(l0, l1, rho_s.astype(complex), ts[1:], jnp.asarray(rho_exact)[1:],
                                                 lam**2)
    return out


def run(cfg: Config) -> ExperimentResult:
    ts = np.asarray(cfg.time.times())
    bath = _setup(cfg)[0]
    arrays = {"t": ts, "lambdas": np.asarray(cfg.lambdas)}
    summary = {"heisenberg_time": heisenberg_time(bath), "lambdas": list(cfg.lambdas), "tau": cfg.tau,
               "growth_exponent": {}, "lambda2_exponent": {}, "error_at_t_max": {}, "fits": {}}
    window = ts >= cfg.growth_t_min
    for i, lam in enumerate(cfg.lambdas):
        ex = stage(f"exact_{i}", lambda lam=lam: _exact(cfg, lam))
        arrays[f"exact_{i}"] = np.asarray(ex["rho"])
        me = stage(f"models_{i}", lambda lam=lam, ex=ex: _models(cfg, lam, ex["rho"]))
        for name in cfg.generators:
            err = np.asarray(me[f"error_{name}"])
            arrays[f"error_{name}_{i}"] = err
            summary["growth_exponent"].setdefault(name, []).append(_power_fit(ts[window], err[window]))
            summary["error_at_t_max"].setdefault(name, []).append(float(err[-1]))
            if cfg.fit:
                fit = dict(me[f"lambda2_{name}"])
                fit["ratio"] = fit["value"] / lam**2
                fit["ratio_stderr"] = fit["stderr"] / lam**2
                summary["fits"][f"lambda2_{name}_lam{lam:g}"] = fit
    if len(cfg.lambdas) >= 3:
        for name in cfg.generators:
            mean_err = [float(np.mean(arrays[f"error_{name}_{i}"][window])) for i in range(len(cfg.lambdas))]
            summary["lambda2_exponent"][name] = _power_fit(np.asarray(cfg.lambdas) ** 2, mean_err)
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: Config) -> dict:
    a, s = result.arrays, result.summary
    t = a["t"]
    n_l = len(cfg.lambdas)
    fig, axes = plot.subplots(1, n_l + int(cfg.fit), width=4.0, height=3.4, squeeze=False)
    for i, lam in enumerate(cfg.lambdas):
        ax = axes[0, i]
        for name in cfg.generators:
            p = s["growth_exponent"][name][i]
            ax.plot(t, a[f"error_{name}_{i}"], color=COLORS[name],
                    label=f"{LABELS[name]} (p = {p['value']:.2f})")
        ax.axvspan(cfg.growth_t_min, t[-1], color="0.93", zorder=0)
        ax.set(xlabel="time t (1/J)", title=f"lambda = {lam:g}")
        ax.legend(fontsize=7, title="error ~ t^p on the grey window", title_fontsize=7)
    axes[0, 0].set_ylabel("trace distance to the exact reduced state")
    plot.caption(fig, f"{cfg.n_system} spin(s) + GOE bath d_B = {cfg.bath_dim} (R = {cfg.bath_radius:g}), "
                 f"beta = {cfg.beta:g}, sigma = {cfg.sigma:g}, tau = {cfg.tau:g}; "
                 f"bath Heisenberg time ~ {s['heisenberg_time']:.0f}")
    if not cfg.fit:
        return {"finite_bath": fig}
    ax = axes[0, n_l]
    for k, name in enumerate(cfg.generators):
        fits = [s["fits"][f"lambda2_{name}_lam{lam:g}"] for lam in cfg.lambdas]
        ax.errorbar(np.arange(n_l) + 0.12 * k, [f["ratio"] for f in fits], [f["ratio_stderr"] for f in fits],
                    fmt="o", color=COLORS[name], label=LABELS[name], ms=4, capsize=2)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(n_l) + 0.24, [f"{lam:g}" for lam in cfg.lambdas])
    ax.set(xlabel=r"$\lambda$", ylabel=r"fitted $\lambda^2_{\rm eff}/\lambda^2$", title="best-fit coupling")
    ax.legend(fontsize=7)
    return {"finite_bath": fig}


register("kms_finite_bath", Config, run, plot_result,
         "KMS paper: every generator against an exact finite (GOE) bath, with fitted lambda^2")
