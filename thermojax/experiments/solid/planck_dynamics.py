r"""`planck_dynamics`: Planck's law from dynamics inside a shell of fixed quanta
(arXiv:1412.1347, §3: the time-averaged photon distribution of a "typical" evolving state).

$N$ matter oscillators plus one radiation mode share $Q$ quanta; the state starts cold
(all quanta in the matter, `cold_product_state`) and evolves under one of two random
quanta-conserving couplings (`thermojax.models.solid.ShellHamiltonian`): quadratic hopping
(non-interacting bosons) or the two-body random ensemble. The time-averaged $P(n)$ of the
radiation mode is compared with counting, $g_N(Q-n)/g_{N+1}(Q)$ (the uniform ensemble of
the shell), by the total-variation distance, with an error bar over realisations of the
coupling. Dense shells run on the exact eigendecomposition propagator (with the
infinite-time diagonal ensemble as a check); larger ones on the matrix-free operator
under diffrax (`thermojax.sesolve`).

OQT on top (`thermojax.models.oqt.OQTModel.microcanonical` on the shell Hamiltonian,
dense shells): its stationary state $\chi$ (the microcanonical window of the initial
state) gives $P_\chi(n)$, and the closed form of its master equation gives
$P(n,t) = P_\chi(n) + e^{-\gamma t}[P_U(n,t) - P_\chi(n)]$ (since $\chi$ commutes with
$H$). Relaxation times: the total-variation distance of $P(n,t)$ to its late state
(the time average for unitary dynamics, $P_\chi$ for OQT), averaged over realisations,
is fitted with $d_\infty + (d_0-d_\infty)e^{-t/\tau}$; OQT's distance then keeps falling
as $e^{-\gamma t}$ (its `one_over_gamma` and `distance_at_t_max` are reported with it),
the unitary one stays at the level $d_\infty$ of the temporal fluctuations.

Time is measured in units of $\hbar/\Delta E_0$, the initial state's energy spread
(`energy_spread`), so both couplings run on comparable clocks.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, Section
from ...fit import fit_least_squares
from ...models import solid
from ...models.oqt import OQTModel
from ...options import ODE, Options
from ...solvers import sesolve
from ...spectra import eigh
from .. import ExperimentResult, register, stage

__all__ = ["PlanckDynamicsConfig", "run", "plot_figures", "oqt_radiation_distribution", "shell_realisation"]

KINDS = ("hopping", "two_body")


class ShellTime(Section):
    """Save times linspace(0, t_max, n_times) in units of hbar / Delta E_0; the time
    average runs over t >= average_from * t_max."""

    t_max: float = Field(60.0, gt=0)
    n_times: int = Field(241, ge=10)
    average_from: float = Field(0.5, ge=0, lt=1)


class OQTSection(Section):
    """OQT on top (dense shells): rate gamma = alpha_N * Delta E_0."""

    alpha_N: float = Field(0.1, gt=0)


class PlanckDynamicsConfig(ExperimentConfig):
    """Config of `planck_dynamics`.

    Attributes:
        shells: [N, Q] pairs (matter oscillators, total quanta), dimension C(Q+N, N) each.
        couplings: Any of "hopping", "two_body".
        n_realisations: Random couplings per shell (error bars).
        coupling: Coupling scale J (off-diagonal standard deviation); sets the unit only.
        radiation_coupling: Factor on the couplings of the radiation mode.
        initial: "even" (quanta spread over the matter modes) or "single" (all in one).
        dense_max: Largest dimension run on the dense eigendecomposition; larger shells run
            matrix-free under diffrax (no OQT, no diagonal ensemble there).
        rtol: Relative (and absolute) tolerance of the matrix-free solve (Dopri8).
    """

    experiment: str = "planck_dynamics"
    shells: list[list[int]] = Field(default_factory=lambda: [[3, 3], [4, 4], [5, 5], [6, 6], [7, 7]], min_length=1)
    couplings: list[str] = Field(default_factory=lambda: list(KINDS), min_length=1)
    n_realisations: int = Field(6, ge=2, le=1000)
    coupling: float = Field(1.0, gt=0)
    radiation_coupling: float = Field(1.0, gt=0)
    initial: str = Field("even", pattern="^(even|single)$")
    dense_max: int = Field(1500, ge=2, le=8000)
    rtol: float = Field(1e-9, gt=0, lt=1e-3)
    time: ShellTime = ShellTime()
    oqt: OQTSection = OQTSection()

    @model_validator(mode="after")
    def _check(self):
        for s in self.shells:
            if len(s) != 2 or s[0] < 1 or s[1] < 2:
                raise ValueError(f"each of `shells` must be [N >= 1, Q >= 2], got {s}")
        if any(c not in KINDS for c in self.couplings) or len(set(self.couplings)) != len(self.couplings):
            raise ValueError(f"`couplings` must be distinct names from {KINDS}, got {self.couplings}")
        return self


def oqt_radiation_distribution(p_unitary, p_chi, gamma, t):
    r"""$P(n,t)$ under OQT: $P_\chi + e^{-\gamma t}(P_U(t) - P_\chi)$, from the closed form
    $\rho(t) = \chi + e^{-\gamma t}U(t)(\rho_0-\chi)U(t)^\dagger$ (`OQTModel.evolve`) and
    $[\chi, H] = 0$. Shapes: `p_unitary` `(K, T)`, `p_chi` `(K,)`, `t` `(T,)`."""
    return p_chi[:, None] + jnp.exp(-gamma * t)[None, :] * (p_unitary - p_chi[:, None])


def _dense_run(op, basis, psi0, ts, alpha_n):
    obs = solid.RadiationDistribution(basis)
    es = eigh(op.dense(), name="hamiltonian")
    p_t = es.evolve(psi0, ts, e_ops=obs, save_states=False).expect.real
    w = jnp.abs(es.vectors) ** 2  # (s, mu)
    c2 = jnp.abs(es.ket_to_eigenbasis(psi0)) ** 2
    p_de = obs.onehot.T @ (w @ c2)  # diagonal ensemble (infinite-time average)
    model = OQTModel.microcanonical(es, psi0, alpha_n)
    p_chi = obs.onehot.T @ (w @ model.chi)
    return p_t, p_de, p_chi, int(jnp.sum(model.steady.window))


def _sparse_run(op, basis, psi0, ts, rtol):
    tol = jnp.asarray(rtol)
    method = ODE(dfx.Dopri8(), dfx.PIDController(rtol=tol, atol=tol), max_steps=10**7)
    res = sesolve(
        op,
        psi0.astype(complex),
        ts,
        e_ops=solid.RadiationDistribution(basis),
        method=method,
        options=Options(save_states=False, throw=True),
    )
    return res.expect.real, {k: int(v) for k, v in res.stats.items()}


def shell_realisation(cfg: PlanckDynamicsConfig, basis, op, key) -> dict:
    """One random coupling on one shell: P(n, t) (dimensionless times), its time average,
    the diagonal ensemble and OQT's P_chi (dense only; NaN otherwise)."""
    m = basis.n_modes
    gen = solid.random_hopping if op.kind == "hopping" else solid.random_two_body
    g = gen(key, m, cfg.coupling, radiation_coupling=cfg.radiation_coupling)
    op = eqx.tree_at(lambda o: o.coupling, op, g)
    psi0 = solid.cold_product_state(basis, cfg.initial).astype(complex)
    de = float(solid.energy_spread(op, psi0))
    tau = jnp.linspace(0.0, cfg.time.t_max, cfg.time.n_times)
    nan = jnp.full(basis.quanta + 1, jnp.nan)
    if basis.dim <= cfg.dense_max:
        p_t, p_de, p_chi, width = _dense_run(op, basis, psi0, tau / de, cfg.oqt.alpha_N * de)
        stats = {"window": width}
    else:
        (p_t, stats), p_de, p_chi = _sparse_run(op, basis, psi0, tau / de, cfg.rtol), nan, nan
    late = tau >= cfg.time.average_from * cfg.time.t_max
    p_bar = jnp.mean(p_t[:, late], axis=1)
    return {"p_t": p_t, "p_bar": p_bar, "p_de": p_de, "p_chi": p_chi, "delta_e": de, **stats}


def _shell(cfg, n, q, kind, key) -> dict:
    basis = solid.ShellBasis.build(n, q)
    m = basis.n_modes
    k0 = solid.random_hopping(key, m) if kind == "hopping" else solid.random_two_body(key, m)
    op = solid.ShellHamiltonian(basis, k0, kind)
    rows = [shell_realisation(cfg, basis, op, jax.random.fold_in(key, r)) for r in range(cfg.n_realisations)]
    out = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in ("p_t", "p_bar", "p_de", "p_chi", "delta_e")}
    pc = solid.photon_distribution(n, q)
    out["p_counting"] = np.asarray(pc)
    for name, p in (
        ("time_average", out["p_bar"]),
        ("diagonal_ensemble", out["p_de"]),
        ("oqt_stationary", out["p_chi"]),
    ):
        out[f"tv_{name}"] = np.asarray(solid.total_variation(jnp.asarray(p), pc, tails=False))
    out["tv_time_average_vs_oqt"] = np.asarray(
        solid.total_variation(jnp.asarray(out["p_bar"]), jnp.asarray(out["p_chi"]), tails=False)
    )
    out["dim"] = basis.dim
    out["window"] = [int(r.get("window", 0)) for r in rows]
    return out


def _mean_err(x) -> dict:
    x = np.asarray(x, float)
    if np.all(np.isnan(x)):
        return {"mean": None, "stderr": None}
    return {"mean": float(np.mean(x)), "stderr": float(np.std(x, ddof=1) / np.sqrt(x.size))}


def _plateau_residuals(p, t, d, d0):
    return p["d_inf"] + (d0 - p["d_inf"]) * jnp.exp(-t / p["tau"]) - d


def _relaxation_fit(t, d) -> dict:
    """Fit d(t) = d_inf + (d0 - d_inf) exp(-t/tau) to a realisation-averaged distance curve
    (the unitary dephasing time; d_inf is the level of the temporal fluctuations)."""
    t, d = jnp.asarray(t), jnp.asarray(d)
    init = {"tau": 1.0, "d_inf": float(jnp.maximum(jnp.mean(d[-10:]), 1e-6))}
    fit = fit_least_squares(_plateau_residuals, init, args=(t, d, d[0]), positive=["tau", "d_inf"])
    return {
        "value": float(fit.values["tau"]),
        "stderr": float(fit.stderr["tau"]),
        "d_inf": float(fit.values["d_inf"]),
        "converged": bool(fit.converged),
        "unit": "hbar/Delta E_0",
    }


def _weighted_line(p, ld, lm, w):
    return (p["log_c"] + p["a"] * ld - lm) * w


def _size_exponent(dims, mean, err) -> dict:
    """Weighted fit of TV = c * D^a over shells (errors: curvature, chi^2-scaled)."""
    ld, lm = jnp.log(jnp.asarray(dims, float)), jnp.log(jnp.asarray(mean))
    w = jnp.asarray(mean) / jnp.maximum(jnp.asarray(err), 1e-12)
    fit = fit_least_squares(_weighted_line, {"log_c": 0.0, "a": -0.5}, args=(ld, lm, w), positive=[])
    return {
        "value": float(fit.values["a"]),
        "stderr": float(fit.stderr["a"]),
        "prefactor": float(np.exp(fit.values["log_c"])),
    }


def run(cfg: PlanckDynamicsConfig) -> ExperimentResult:
    key = jax.random.key(cfg.seed)
    arrays, table, fits = {}, {k: [] for k in cfg.couplings}, {}
    tau = np.linspace(0.0, cfg.time.t_max, cfg.time.n_times)
    dense_shells = [s for s in cfg.shells if solid.shell_dimension(s[0] + 1, s[1]) <= cfg.dense_max]
    main = max(dense_shells, key=lambda s: solid.shell_dimension(s[0] + 1, s[1])) if dense_shells else None
    for ki, kind in enumerate(cfg.couplings):
        for n, q in cfg.shells:
            kk = jax.random.fold_in(jax.random.fold_in(key, ki), 1000 * n + q)
            out = stage(f"shell_{kind}_N{n}_Q{q}", lambda: _shell(cfg, n, q, kind, kk))
            row = {"n_oscillators": n, "quanta": q, "dim": int(out["dim"]), "dense": bool(out["dim"] <= cfg.dense_max)}
            for name in ("time_average", "diagonal_ensemble", "oqt_stationary", "time_average_vs_oqt"):
                row[name] = _mean_err(out[f"tv_{name}"])
            row["oqt_window_mean"] = float(np.mean(out["window"]))
            table[kind].append(row)
            tag = f"{kind}_N{n}_Q{q}"
            arrays |= {
                f"p_bar_{tag}": out["p_bar"],
                f"p_chi_{tag}": out["p_chi"],
                f"p_counting_{tag}": out["p_counting"],
                f"tv_{tag}": out["tv_time_average"],
            }
            if [n, q] == main:
                arrays |= _relaxation_curves(cfg, out, tau, kind, fits)
        rows = table[kind]
        if len(rows) >= 2:
            fits[f"size_exponent_{kind}"] = _size_exponent(
                [r["dim"] for r in rows],
                [r["time_average"]["mean"] for r in rows],
                [r["time_average"]["stderr"] for r in rows],
            )
    arrays["tau"] = tau
    largest = {k: v[int(np.argmax([r["dim"] for r in v]))] for k, v in table.items()}
    summary = {"distance": table, "largest_shell": largest, "main_dense_shell": main, "fits": fits}
    return ExperimentResult(arrays=arrays, summary=summary)


def _relaxation_curves(cfg, out, tau, kind, fits) -> dict:
    p_t, p_bar, p_chi = out["p_t"], out["p_bar"], out["p_chi"]
    gamma = cfg.oqt.alpha_N  # in units of Delta E_0, the clock of tau
    d_u = np.asarray(
        solid.total_variation(jnp.moveaxis(jnp.asarray(p_t), 1, 2), jnp.asarray(p_bar)[:, None, :], tails=False)
    )
    p_oqt = jax.vmap(lambda pu, pc: oqt_radiation_distribution(pu, pc, gamma, jnp.asarray(tau)))(
        jnp.asarray(p_t), jnp.asarray(p_chi)
    )
    d_o = np.asarray(solid.total_variation(jnp.moveaxis(p_oqt, 1, 2), jnp.asarray(p_chi)[:, None, :], tails=False))
    fits[f"tau_unitary_{kind}"] = _relaxation_fit(tau, d_u.mean(0))
    fits[f"tau_oqt_{kind}"] = _relaxation_fit(tau, d_o.mean(0)) | {
        "one_over_gamma": 1.0 / gamma,
        "distance_at_t_max": float(d_o.mean(0)[-1]),
    }
    return {f"relax_unitary_{kind}": d_u, f"relax_oqt_{kind}": d_o, f"p_t_{kind}": p_t.mean(0)}


def plot_figures(result: ExperimentResult, cfg: PlanckDynamicsConfig) -> dict:
    a, s = result.arrays, result.summary
    fig, (ax1, ax2, ax3) = plot.subplots(1, 3, width=4.6)
    main = s["main_dense_shell"]
    if main is not None:
        n, q = main
        ks = np.arange(q + 1)
        ax1.plot(ks, a[f"p_counting_{cfg.couplings[0]}_N{n}_Q{q}"], "k-", lw=2, label="counting")
        for i, kind in enumerate(cfg.couplings):
            pb = a[f"p_bar_{kind}_N{n}_Q{q}"]
            ax1.errorbar(
                ks + 0.1 * (i - 0.5),
                pb.mean(0),
                pb.std(0, ddof=1) / np.sqrt(len(pb)),
                fmt="o",
                ms=4,
                capsize=2,
                label=f"{kind}: time average",
            )
            ax1.plot(ks, np.nanmean(a[f"p_chi_{kind}_N{n}_Q{q}"], 0), "--", lw=1, label=f"{kind}: OQT chi")
        ax1.set_yscale("log")
        ax1.set_xlabel("photon number n")
        ax1.set_ylabel("P(n)")
        ax1.set_title(f"N = {n}, Q = {q}")
        ax1.legend(fontsize=7)
    for kind in cfg.couplings:
        rows = s["distance"][kind]
        dims = [r["dim"] for r in rows]
        ax2.errorbar(
            dims,
            [r["time_average"]["mean"] for r in rows],
            [r["time_average"]["stderr"] for r in rows],
            fmt="o-",
            capsize=2,
            label=kind,
        )
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("shell dimension C(Q+N, N)")
    ax2.set_ylabel("TV(time average, counting)")
    ax2.legend(fontsize=8)
    for kind in cfg.couplings:
        if f"relax_unitary_{kind}" in a:
            (line,) = ax3.plot(a["tau"], a[f"relax_unitary_{kind}"].mean(0), lw=1, label=f"{kind}: unitary")
            ax3.plot(a["tau"], a[f"relax_oqt_{kind}"].mean(0), "--", lw=1, color=line.get_color(), label=f"{kind}: OQT")
    ax3.set_yscale("log")
    ax3.set_xlabel("t  [hbar / Delta E_0]")
    ax3.set_ylabel("TV to the late state")
    ax3.legend(fontsize=7)
    plot.caption(
        fig,
        f"{cfg.n_realisations} realisations per shell, initial '{cfg.initial}', "
        f"OQT alpha_N = {cfg.oqt.alpha_N} Delta E_0",
    )
    return {"planck_dynamics": fig}


register(
    "planck_dynamics",
    PlanckDynamicsConfig,
    run,
    plot_figures,
    "time-averaged photon distribution in a shell of fixed quanta vs counting, two couplings, OQT on top",
)
