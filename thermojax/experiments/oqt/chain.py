r"""`oqt_chain`: OQT against the exact and HAM relaxation of the heat chain; the effective
$\alpha\mathcal N$ beside the golden-rule $\kappa$.

OQT is applied two ways. (i) On the uncoupled bands $H_0 = \sum_{\mu i}\varepsilon_i
|\mu,i\rangle\langle\mu,i|$ (the chain without $\lambda$): energy moves between subunits
only through OQT, towards the microcanonical $\chi$ of $H_0$, whose degenerate levels
span all subunits, so $P_\mu(\chi) = 1/N$ and $P_\mu(t) = 1/N + e^{-\gamma t}(P_\mu(0) -
1/N)$. Its $\gamma$ fitted to the exact $P_\mu(t)$ is the *effective* $\alpha\mathcal N$:
the OQT rate that makes the chain look thermalised as fast as it really does. (With the
full chain Hamiltonian the OQT closed form contains the exact dynamics itself, so the
best fit would trivially be $\gamma = 0$.) (ii) On the full chain with $\gamma$ =
`alpha_N_over_kappa` x $\kappa$, for the figure: OQT on top of the exact dynamics.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, FitOptions, Section, TimeGrid
from ...fit import fit_least_squares
from ...models.heat_chain import HeatChainParams, random_band_state
from ...models.oqt import OQTModel, population_closed_form
from ...spectra import ket_to_dm
from .. import ExperimentResult, register, stage


class ChainOQTParams(Section):
    """OQT rates for the chain comparison."""

    alpha_N_over_kappa: float = Field(1.0, gt=0, description="alpha_N of the OQT-on-the-full-chain curves / kappa")


class ChainFitParams(FitOptions):
    """Effective alpha_N, fitted to the mean exact P_mu(t) of `n_states` random states;
    the fit starts at `start_ratio * kappa`."""

    n_states: int = Field(8, ge=2)
    start_ratio: float = Field(1.0, gt=0)


class ChainConfig(ExperimentConfig):
    """OQT against exact and HAM relaxation of the heat chain; times in 1/kappa."""

    model: HeatChainParams = HeatChainParams(n_levels=80, coupling=3.2e-4)
    times: TimeGrid = TimeGrid(t_max=4.0, n_times=61)
    initial_subunit: int = Field(1, ge=1, description="1-based")
    oqt: ChainOQTParams = ChainOQTParams()
    fit: ChainFitParams = ChainFitParams()

    def memory_requirements(self):
        d = self.model.n_subunits * self.model.n_levels
        # the chain, plus OQT's subunit projectors (N, d, d) and rho(t) (T, d, d) in its eigenbasis
        extra = 16 * d * d * (self.model.n_subunits + self.times.n_times)
        return [("model.n_levels", self.model.memory_bytes() + extra, f"OQT on a chain of dimension {d}")]

    @model_validator(mode="after")
    def _subunit(self):
        if self.initial_subunit > self.model.n_subunits:
            raise ValueError(
                f"key `initial_subunit` ({self.initial_subunit}) exceeds model.n_subunits ({self.model.n_subunits})"
            )
        return self


def _subunit_projectors(model: OQTModel, n_sub: int, n_lev: int):
    """Subunit projectors in the model's eigenbasis, shape `(N, d, d)`."""
    eye = jnp.eye(n_sub * n_lev).reshape(n_sub * n_lev, n_sub, n_lev)
    proj = jnp.einsum("aml,bml->mab", eye, eye).astype(complex)
    return model.eigensystem.op_to_eigenbasis(proj)


def _subunit_pops_closed(model: OQTModel, proj_diag, p0_eig, ts):
    """Subunit populations `(T, N)` of the closed form for a model whose eigenbasis is
    the local basis (bands): `P_mu(t) = sum_i p_(mu,i)(t)`."""
    return population_closed_form(model, p0_eig, ts) @ proj_diag.T


def _chain_residuals(params, model, proj_diag, p0_eig, ts, data):
    m = eqx.tree_at(lambda q: q.alpha_N, model, params["alpha_N"])
    return _subunit_pops_closed(m, proj_diag, p0_eig, ts) - data


def _exact(chain, psis, ts):
    res = chain.eigensystem().evolve(psis, ts, e_ops=chain.populations, save_states=False, kind="ket")
    return {"p_all": jnp.swapaxes(res.expect, -1, -2)}  # (R, T, N)


def _bands(cfg, chain, psis, ts, p_all, p_ham):
    """OQT on the uncoupled bands; the effective alpha_N fitted to the exact populations."""
    kappa = float(chain.kappa)
    h0 = jnp.diag(chain.diagonal()).astype(complex)
    bands = [OQTModel.microcanonical(h0, psi, kappa) for psi in psis]
    proj_diag = jnp.real(jnp.diagonal(_subunit_projectors(bands[0], chain.n_subunits, chain.n_levels), 0, -2, -1))
    p0_eig = [jnp.abs(b.eigensystem.ket_to_eigenbasis(psi)) ** 2 for b, psi in zip(bands, psis)]
    # the population formula is the diagonal of OQTModel.evolve (checked here)
    rho_full = bands[0].evolve(ket_to_dm(bands[0].eigensystem.ket_to_eigenbasis(psis[0])), ts[::10]).states
    check = jnp.max(jnp.abs(jnp.real(jnp.diagonal(rho_full, 0, -2, -1)) @ proj_diag.T
                            - _subunit_pops_closed(bands[0], proj_diag, p0_eig[0], ts[::10])))

    def fit(model, p0e, data):
        return fit_least_squares(
            _chain_residuals, {"alpha_N": cfg.fit.start_ratio * kappa}, positive=["alpha_N"],
            args=(model, proj_diag, p0e, ts, jnp.asarray(data)), max_steps=cfg.fit.max_steps,
        )

    f_mean = fit(bands[0], jnp.mean(jnp.stack(p0_eig), 0), p_all.mean(0)).as_dict(history=True)["alpha_N"]
    singles = np.array([float(fit(b, pe, p).values["alpha_N"]) for b, pe, p in zip(bands, p0_eig, p_all)])
    g_eff = f_mean["value"]
    m_eff = eqx.tree_at(lambda q: q.alpha_N, bands[0], jnp.asarray(g_eff))
    return {
        "fit": f_mean, "singles": singles,
        "g_ham": float(fit(bands[0], p0_eig[0], p_ham).values["alpha_N"]),
        "p_oqt_bands": _subunit_pops_closed(m_eff, proj_diag, p0_eig[0], ts),
        "p_chi": bands[0].chi @ proj_diag.T, "mismatch": float(bands[0].energy_mismatch), "check": float(check),
    }


def _full_chain(cfg, chain, psi0, ts):
    """OQT on top of the exact chain dynamics, gamma = alpha_N_over_kappa * kappa."""
    gamma = cfg.oqt.alpha_N_over_kappa * float(chain.kappa)
    model = OQTModel.microcanonical(chain.eigensystem(), psi0, gamma)
    proj = _subunit_projectors(model, chain.n_subunits, chain.n_levels)
    rho_t = model.evolve(ket_to_dm(model.eigensystem.ket_to_eigenbasis(psi0)), ts).states
    return {"p_oqt_full": jnp.real(jnp.einsum("mab,tba->tm", proj, rho_t)),
            "p_chi": jnp.real(jnp.einsum("mab,ba->m", proj, model.chi_matrix())),
            "mismatch": float(model.energy_mismatch), "gamma": gamma}


def run(cfg: ChainConfig) -> ExperimentResult:
    k_chain, k_state = jax.random.split(jax.random.key(cfg.seed))
    chain = cfg.model.build(k_chain)
    kappa = float(chain.kappa)
    ts = cfg.times.times(1.0 / kappa)
    psis = chain.local_state(random_band_state(k_state, chain.n_levels, (cfg.fit.n_states,)), cfg.initial_subunit - 1)
    p_all = stage("exact_evolution", lambda: _exact(chain, psis, ts))["p_all"]
    p_ham = np.asarray(chain.ham_populations(chain.populations(psis[0]), ts))
    b = stage("oqt_bands", lambda: _bands(cfg, chain, psis, ts, p_all, p_ham))
    full = stage("oqt_full_chain", lambda: _full_chain(cfg, chain, psis[0], ts))
    fit = {k: v for k, v in b["fit"].items() if k != "loss_history"}
    g_eff, singles = fit["value"], np.asarray(b["singles"])
    g_err = float(singles.std(ddof=1) / np.sqrt(len(singles)))
    rms = lambda x, y: float(np.sqrt(np.mean((x - y) ** 2)))
    summary = {
        "kappa_golden_rule": kappa, "validity_eq29": chain.validity(), "P_chi_bands": np.asarray(b["p_chi"]).tolist(),
        "P_chi_full_chain": np.asarray(full["p_chi"]).tolist(), "energy_mismatch_bands": b["mismatch"],
        "energy_mismatch_full_chain": full["mismatch"], "effective_alpha_N_over_kappa": g_eff / kappa,
        "effective_alpha_N_from_HAM_over_kappa": b["g_ham"] / kappa,
        "rms_dev_P_oqt_vs_exact": rms(b["p_oqt_bands"], p_all[0]), "rms_dev_P_ham_vs_exact": rms(p_ham, p_all[0]),
        "population_closed_form_check": b["check"], "alpha_N_full_chain": full["gamma"],
        "fits": {"alpha_N_effective": {
            **fit, "stderr": g_err, "stderr_kind": "resampling", "stderr_curvature": fit["stderr"],
            "compared_with": "golden-rule kappa", "kappa": kappa,
            "ratio_to_kappa": g_eff / kappa, "ratio_stderr": g_err / kappa, "single_state_values": singles.tolist(),
            "from_HAM_curves": b["g_ham"],
            "note": "OQT on the uncoupled bands fitted to the mean exact P_mu(t) of "
                    f"{len(singles)} random states; stderr = std of single-state fits / sqrt(states). OQT has no "
                    "prediction for alpha_N: kappa is what it is compared with, not its theory",
        }},
    }
    arrays = {"ts": np.asarray(ts), "p_exact": p_all[0], "p_exact_mean": p_all.mean(0), "p_ham": p_ham,
              "p_oqt_bands": np.asarray(b["p_oqt_bands"]), "p_oqt_full": np.asarray(full["p_oqt_full"]),
              "effective_single": singles, "loss_history": np.asarray(b["fit"]["loss_history"])}
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: ChainConfig):
    a, s = result.arrays, result.summary
    kappa = s["kappa_golden_rule"]
    tk = a["ts"] * kappa
    fig, axes = plot.subplots(1, 2, width=5.2, height=4.0, sharey=True)
    ax = axes[0]
    for mu in range(a["p_exact"].shape[1]):
        c = f"C{mu}"
        ax.plot(tk, a["p_exact"][:, mu], "o", ms=3, color=c, label=f"exact $P_{mu + 1}$")
        ax.plot(tk, a["p_ham"][:, mu], "-", lw=1.5, color=c)
        ax.plot(tk, a["p_oqt_bands"][:, mu], "--", lw=1.5, color=c)
    n_sub = a["p_exact"].shape[1]
    same = f"; OQT curves of $P_2$…$P_{n_sub}$ coincide (all start at 0)" if n_sub > 2 else ""
    ax.set_title(f"dots exact, — HAM (κ), -- OQT on bands, γ_eff = {s['effective_alpha_N_over_kappa']:.3f} κ"
                 + same, fontsize=8)
    ax.set_xlabel(r"$\kappa t$")
    ax.set_ylabel(r"$P_\mu(t)$")
    ax.legend(fontsize=8)
    ax = axes[1]
    for mu in range(n_sub):
        ax.plot(tk, a["p_exact"][:, mu], "o", ms=3, color=f"C{mu}")
        ax.plot(tk, a["p_oqt_full"][:, mu], "-", lw=1.5, color=f"C{mu}")
    ax.set_title(f"dots exact, — OQT on the full chain, αN = {cfg.oqt.alpha_N_over_kappa:g} κ", fontsize=8)
    ax.set_xlabel(r"$\kappa t$")
    m, f = cfg.model, s["fits"]["alpha_N_effective"]
    plot.caption(fig, f"N={m.n_subunits}, n={m.n_levels}, δε={m.band_width}, λ={m.coupling:g}, κ={kappa:.3g} "
                      f"(golden rule); γ_eff/κ = {f['ratio_to_kappa']:.3f} ± {f['ratio_stderr']:.3f} "
                      f"(fit to HAM curves: {s['effective_alpha_N_from_HAM_over_kappa']:.3f})")
    return {"populations": fig}


register(
    "oqt_chain", ChainConfig, run, plot_result,
    "OQT vs exact and HAM relaxation of the heat chain; effective alpha_N beside kappa",
)
