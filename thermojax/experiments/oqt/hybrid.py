r"""`sui_hybrid`: the stationary state $\rho_\infty$ of the hybrid generator (arXiv:2504.16197,
eq. 8) as $\Gamma/\gamma$ sweeps over decades, for $H = 0$ (against the closed form
`hybrid_stationary_h0`) and for a GOE $H$ (against the Zeno limit `zeno_stationary`),
with independent checks by a long ODE solve and a trajectory ensemble, and the
$\gamma = 0$ limit, which remembers $\rho_0$ (the limits do not commute)."""

from typing import Literal

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, Section
from ...models.oqt import (
    OQTModel,
    canonical_steady_state,
    dephase,
    hybrid_stationary_h0,
    microcanonical_steady_state,
    sector_projectors,
    zeno_stationary,
)
from ...options import ODE, EulerMaruyama, Options
from ...solvers import mesolve
from ...spectra import Eigensystem, eigh, goe_matrix, ket_to_dm, random_ket, trace_distance
from ...trajectories import simulate_trajectories
from .. import ExperimentResult, register, stage
from .born_rule import SectorParams


class RatioSweep(Section):
    """Gamma / gamma on a log grid `logspace(log10_min, log10_max, n)`."""

    log10_min: float = -3.0
    log10_max: float = 3.0
    n: int = Field(25, ge=3)

    @model_validator(mode="after")
    def _range(self):
        if self.log10_max <= self.log10_min:
            raise ValueError(f"log10_max ({self.log10_max}) must exceed log10_min ({self.log10_min})")
        return self


class CheckOptions(Section):
    """Independent confirmations at one ratio `Gamma / gamma = ratio` (with H != 0)."""

    ratio: float = Field(1.0, gt=0)
    ode: bool = Field(True, description="long diffrax solve of the master equation from rho0")
    gamma_t_ode: float = Field(40.0, gt=0, description="gamma * t of the ODE solve")
    n_traj: int = Field(1000, ge=0, description="trajectory ensemble (0: off)")
    dt: float = Field(0.004, gt=0)
    gamma_t_traj: float = Field(10.0, gt=0, description="gamma * t of the trajectories")


class HybridConfig(ExperimentConfig):
    """Stationary state of the hybrid generator (eq. 8) as Gamma / gamma sweeps."""

    system: SectorParams = SectorParams(dim=8, sector_sizes=[4, 2, 2])
    alpha_N: float = Field(1.0, gt=0, description="gamma = alpha N / hbar (fixed)")
    hamiltonian_radius: float = Field(2.0, gt=0, description="GOE semicircle radius of H")
    chi: Literal["microcanonical", "canonical"] = "microcanonical"
    ratios: RatioSweep = RatioSweep()
    check: CheckOptions = CheckOptions()

    def memory_requirements(self):
        d = self.system.dim
        # the dense Liouvillian (d^2 x d^2) and its SVD workspace
        return [("system.dim", 16 * d**4 * 4, f"the dense Liouvillian of dimension {d}^2")]


def _models(cfg: HybridConfig, key):
    """(eigensystem of H, chi SteadyState, projectors (orig basis), psi0 (orig basis))."""
    d = cfg.system.dim
    k_h, k_psi, k_basis = jax.random.split(key, 3)
    es = eigh(goe_matrix(k_h, d, radius=cfg.hamiltonian_radius))
    psi0 = random_ket(k_psi, d)
    state = es.ket_to_eigenbasis(psi0)
    if cfg.chi == "microcanonical":
        steady = microcanonical_steady_state(es.energies, state)
    else:
        steady = canonical_steady_state(es.energies, state)
    proj = sector_projectors(cfg.system.sector_sizes, k_basis if cfg.system.random_basis else None)
    return es, steady, proj, psi0


def _sweep(cfg, es, steady, proj, gamma):
    """Stationary state at every Gamma/gamma for H = 0 and H (same eigenvectors, so the
    same chi and coordinates)."""
    d = cfg.system.dim
    es0 = Eigensystem(jnp.zeros(d), es.vectors)
    chi_m = OQTModel(es, steady, gamma, Gamma=1.0, projectors=proj).chi_matrix()
    out = {name: {k: [] for k in ("residual", "null_dim", "td_chi", "td_zeno", "min_eig", "trace_err")}
           for name in ("H=0", "H")}
    closed_err, rho_h = [], []
    ratios = np.logspace(cfg.ratios.log10_min, cfg.ratios.log10_max, cfg.ratios.n)
    for r in ratios:
        for name, e in (("H=0", es0), ("H", es)):
            m = OQTModel(e, steady, gamma, Gamma=r * gamma, projectors=proj)
            st = m.stationary_state()
            zeno = zeno_stationary(m.hamiltonian_eig(), chi_m, m.projectors, gamma)
            o = out[name]
            o["residual"].append(float(st.residual))
            o["null_dim"].append(int(st.null_dim))
            o["td_chi"].append(float(trace_distance(st.rho, chi_m)))
            o["td_zeno"].append(float(trace_distance(st.rho, zeno)))
            o["min_eig"].append(float(jnp.linalg.eigvalsh(st.rho)[0]))
            o["trace_err"].append(float(jnp.abs(jnp.trace(st.rho) - 1.0)))
            if name == "H=0":
                closed_err.append(float(jnp.max(jnp.abs(st.rho - hybrid_stationary_h0(chi_m, m.projectors, gamma,
                                                                                        r * gamma)))))
            else:
                rho_h.append(np.asarray(st.rho))
    arrays = {f"{'h0' if name == 'H=0' else 'h'}_{k}": np.asarray(v) for name, o in out.items() for k, v in o.items()}
    return {"ratios": ratios, "h0_closed_form_err": np.asarray(closed_err), "rho_inf_H": np.stack(rho_h), **arrays}


def _gamma_zero(es, steady, proj, gamma, psi0):
    """gamma = 0 exactly, H = 0: the long-time state is the Born state of rho0."""
    es0 = Eigensystem(jnp.zeros(es.dim), es.vectors)
    rho0 = ket_to_dm(es.ket_to_eigenbasis(psi0))
    m00 = OQTModel(es0, steady, 0.0, Gamma=gamma, projectors=proj)
    st00 = m00.stationary_state(rho0)
    born = dephase(rho0, m00.projectors)
    dchi = dephase(m00.chi_matrix(), m00.projectors)
    return {"born_state_max_abs_err": float(jnp.max(jnp.abs(st00.rho - born))), "null_dim": int(st00.null_dim),
            "residual": float(st00.residual), "td_born_to_D_chi": float(trace_distance(born, dchi)),
            "note": "gamma = 0, H = 0: the rho0-projection onto the null space is the Born state of rho0; for any "
                    "gamma > 0 the state is unique and tends to D(chi) instead (the limits do not commute)"}


def _checks(cfg, es, steady, proj, gamma, psi0, key):
    """At Gamma/gamma = check.ratio: a long ODE solve and a trajectory ensemble against
    the Liouvillian null vector."""
    c = cfg.check
    m = OQTModel(es, steady, gamma, Gamma=c.ratio * gamma, projectors=proj)
    rho_inf = m.stationary_state().rho
    rho0 = ket_to_dm(es.ket_to_eigenbasis(psi0))
    out = {}
    if c.ode:
        t_end = c.gamma_t_ode / gamma
        ode = ODE(dfx.Tsit5(), dfx.PIDController(rtol=1e-10, atol=1e-12))
        rho_t = mesolve(m, [], rho0, jnp.array([0.0, t_end]), method=ode).states[-1]
        out["ode"] = {"ratio": c.ratio, "t": t_end, "max_abs_diff": float(jnp.max(jnp.abs(rho_t - rho_inf))),
                      "transient_bound_exp_minus_gamma_t": float(np.exp(-c.gamma_t_ode))}
    if c.n_traj > 0:
        t_end = max(int(round(c.gamma_t_traj / gamma / c.dt)), 1) * c.dt
        obs = {"rho_re": lambda t, y: jnp.real(ket_to_dm(y)), "rho_im": lambda t, y: jnp.imag(ket_to_dm(y))}
        res = simulate_trajectories(m.sse(), es.ket_to_eigenbasis(psi0), np.array([0.0, t_end]), key,
                                    ntraj=c.n_traj, method=EulerMaruyama(c.dt), observables=obs,
                                    options=Options(record_norm=True, progress=cfg.progress))
        e = res.ensemble
        mean = e.mean["rho_re"][-1] + 1j * e.mean["rho_im"][-1]
        z_re = np.abs(np.asarray(e.mean["rho_re"][-1] - jnp.real(rho_inf))) / np.asarray(e.stderr("rho_re")[-1])
        off = ~np.eye(es.dim, dtype=bool)
        z_im = (np.abs(np.asarray(e.mean["rho_im"][-1] - jnp.imag(rho_inf)))[off]
                / np.asarray(e.stderr("rho_im")[-1])[off])
        out["trajectories"] = {
            "ratio": c.ratio, "t": t_end, "n_traj": c.n_traj, "dt": c.dt, "n_diverged": int(e.n_diverged),
            "max_abs_diff": float(jnp.max(jnp.abs(mean - rho_inf))), "max_z_re": float(z_re.max()),
            "max_z_im": float(z_im.max()), "max_norm_drift": float(np.max(np.asarray(e.norm_drift))),
            "note": "z = |mean - rho_inf| / stderr per entry; Euler-Maruyama bias O(dt) not included in the stderr",
        }
    return out


def run(cfg: HybridConfig) -> ExperimentResult:
    """rho_inf(Gamma/gamma) for H = 0 and H != 0, the gamma = 0 limit, and checks."""
    k_model, k_traj = jax.random.split(jax.random.key(cfg.seed))
    es, steady, proj, psi0 = _models(cfg, k_model)
    gamma = cfg.alpha_N
    a = stage("stationary_sweep", lambda: _sweep(cfg, es, steady, proj, gamma))
    g0 = stage("gamma_zero", lambda: _gamma_zero(es, steady, proj, gamma, psi0))
    checks = stage("checks", lambda: _checks(cfg, es, steady, proj, gamma, psi0, k_traj))
    m = OQTModel(es, steady, gamma, Gamma=1.0, projectors=proj)
    chi_m = m.chi_matrix()
    refs = {"H=0": dephase(chi_m, m.projectors), "H": zeno_stationary(m.hamiltonian_eig(), chi_m, m.projectors, gamma)}
    pre = {"H=0": "h0", "H": "h"}
    summary = {
        "gamma": gamma, "ratios": np.asarray(a["ratios"]).tolist(), "chi_kind": cfg.chi,
        "max_residual": float(max(np.max(a[f"{p}_residual"]) for p in pre.values())),
        "null_dim": sorted({int(x) for p in pre.values() for x in a[f"{p}_null_dim"]}),
        "max_trace_error": float(max(np.max(a[f"{p}_trace_err"]) for p in pre.values())),
        "min_eigenvalue": float(min(np.min(a[f"{p}_min_eig"]) for p in pre.values())),
        "h0_closed_form_max_abs_err": float(np.max(a["h0_closed_form_err"])),
        "limits": {name: {"td_chi_at_min_ratio": float(a[f"{p}_td_chi"][0]),
                          "td_gamma_ref_at_max_ratio": float(a[f"{p}_td_zeno"][-1]),
                          "td_chi_to_gamma_ref": float(trace_distance(chi_m, refs[name]))} for name, p in pre.items()},
        "gamma_reference": "H=0: D(chi) = sum_k P_k chi P_k; H: Zeno state, stationary state of -i[H_D, rho] + "
                           "gamma (D(chi) - rho), H_D = sum_k P_k H P_k",
        "gamma_zero": g0, "checks": checks,
    }
    return ExperimentResult(arrays={k: np.asarray(v) for k, v in a.items()}, summary=summary)


def plot_result(result: ExperimentResult, cfg: HybridConfig):
    a, s = result.arrays, result.summary
    r = a["ratios"]
    fig, axes = plot.subplots(1, 3, width=4.2, height=3.6)
    rr = np.geomspace(r.min(), r.max(), 200)
    for ax, key_, title in ((axes[0], "h0", "H = 0"), (axes[1], "h", "H ≠ 0 (GOE)")):
        ax.loglog(r, a[f"{key_}_td_chi"], "o", ms=4, color="tab:blue", label=r"$T(\rho_\infty, \chi)$")
        ref_label = r"$T(\rho_\infty, \mathcal{D}(\chi))$" if key_ == "h0" else r"$T(\rho_\infty, \rho_Z)$"
        ax.loglog(r, a[f"{key_}_td_zeno"], "s", ms=4, color="tab:red", label=ref_label)
        if key_ == "h0":
            # closed form: rho_inf - chi = Gamma/(gamma+Gamma) (D chi - chi), etc.
            t0 = s["limits"]["H=0"]["td_chi_to_gamma_ref"]
            ax.loglog(rr, t0 * rr / (1 + rr), "-", color="tab:blue", lw=1, label="closed form")
            ax.loglog(rr, t0 / (1 + rr), "-", color="tab:red", lw=1)
        else:
            # Zeno corrections O(|H|^2 / Gamma): a 1/Gamma guide through the last point
            y_end = a["h_td_zeno"][-1]
            ax.loglog(rr[rr > 10], y_end * r[-1] / rr[rr > 10], "k--", lw=0.8, label=r"$\propto 1/\Gamma$")
            ax.loglog(rr[rr < 0.1], a["h_td_chi"][0] * rr[rr < 0.1] / r[0], "k:", lw=0.8,
                      label=r"$\propto \Gamma$")
        ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(r"$\Gamma/\gamma$")
        ax.set_ylabel("trace distance")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[2]
    ax.loglog(r, np.maximum(a["h0_residual"], 1e-18), "o", ms=4,
              label=r"residual $\|\mathcal{L}\rho_\infty\|$, H = 0")
    ax.loglog(r, np.maximum(a["h_residual"], 1e-18), "s", ms=4, label=r"residual, H ≠ 0")
    ax.loglog(r, np.maximum(a["h0_closed_form_err"], 1e-18), "^", ms=4,
              label="max|ρ∞ − closed form|, H = 0")
    ax.set_xlabel(r"$\Gamma/\gamma$")
    ax.set_ylabel("error")
    ax.set_title("stationary solver accuracy", fontsize=10)
    ax.legend(fontsize=7)
    plot.caption(
        fig, f"d = {cfg.system.dim}, sectors {cfg.system.sector_sizes}, γ = {cfg.alpha_N}, "
        f"{cfg.chi} χ, GOE radius {cfg.hamiltonian_radius};  ρ_Z: Zeno limit Γ→∞ "
        "(stationary state of −i[H_D,ρ] + γ(D(χ) − ρ))",
    )
    return {"hybrid_stationary": fig}

register(
    "sui_hybrid", HybridConfig, run, plot_result,
    "SUI hybrid stationary state vs Gamma/gamma: chi (Gamma -> 0) to the collapse limit (eq. 8)",
)
