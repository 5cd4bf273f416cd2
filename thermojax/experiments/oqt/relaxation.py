r"""`oqt_relaxation`: a GOE system relaxing under OQT — the SSE trajectory ensemble against
the closed-form master equation (populations, $D_\chi$, energy, variance, entropy), the
norm drift of Euler–Maruyama against `dt`, and $\alpha\mathcal N$ fitted to ensembles
generated with a known value, for several ensemble sizes `M`."""

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from ... import plot
from ...config import ExperimentConfig, FitOptions, Section, TrajectoryOptions
from ...models.oqt import OQTModel, d_chi, diagnostics, population_closed_form
from ...options import Options
from ...spectra import goe_matrix, ket_to_dm, random_ket
from ...stats import batch_stderr, fit_line
from ...trajectories import simulate_trajectories
from .. import ExperimentResult, register, stage
from .common import fit_alpha_n, pooled_variance, sse_for, to_schrodinger


class GOEParams(Section):
    """GOE Hamiltonian (semicircle of radius `radius`) and the OQT rate."""

    dim: int = Field(64, ge=2, description="Hilbert-space dimension d")
    radius: float = Field(2.0, gt=0, description="semicircle radius (energy)")
    alpha_N: float = Field(1.0, gt=0, description="gamma = alpha N / hbar (1/time)")
    noise: Literal["reduced", "literal"] = "reduced"


class GridTrajectories(TrajectoryOptions):
    """Trajectory ensembles saved on a grid of whole steps: step, save grid (times in
    hbar/energy), picture."""

    t_max: float = Field(3.0, gt=0, description="last save time")
    n_times: int = Field(16, ge=3, description="save times linspace(0, t_max, n_times)")
    picture: Literal["interaction", "schrodinger"] = "interaction"
    chunk_size: int | None = Field(500, ge=1, description="trajectories per compiled chunk")

    @model_validator(mode="after")
    def _on_grid(self):
        steps = self.t_max / (self.n_times - 1) / self.dt
        if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ValueError(
                f"t_max / (n_times - 1) = {self.t_max / (self.n_times - 1)!r} must be a positive integer "
                f"multiple of dt = {self.dt!r}"
            )
        return self


class RelaxationTrajectories(GridTrajectories):
    """Trajectory ensembles: step, save grid (times in hbar/energy), picture, what is drawn."""

    n_show: int = Field(3, ge=0, description="single trajectories drawn")


class AlphaFitParams(FitOptions):
    """alpha_N fits, one independent ensemble per M; the largest M is the main run."""

    M_values: list[int] = [500, 2000, 8000]
    n_batches: int = Field(50, ge=2, description="batches for the batch-means errors")

    @model_validator(mode="after")
    def _sizes(self):
        if not self.M_values:
            raise ValueError("M_values must list at least one ensemble size")
        for m in self.M_values:
            if m % self.n_batches or m // self.n_batches < 2:
                raise ValueError(
                    f"every M in M_values must be a multiple of n_batches ({self.n_batches}) with at least 2 "
                    f"trajectories per batch, got {m}"
                )
        return self


class NormDriftParams(Section):
    """Norm drift of the Euler–Maruyama scheme at t_end for several dt."""

    dt_values: list[float] = [0.04, 0.02, 0.01, 0.005]
    t_end: float = Field(1.0, gt=0)
    n_traj: int = Field(256, ge=2)
    pictures: list[Literal["interaction", "schrodinger"]] = ["interaction", "schrodinger"]

    @model_validator(mode="after")
    def _grid(self):
        if len(self.dt_values) < 2:
            raise ValueError("dt_values needs at least two step sizes")
        for dt in self.dt_values:
            steps = self.t_end / dt
            if not dt > 0 or abs(steps - round(steps)) > 1e-6:
                raise ValueError(f"t_end ({self.t_end}) must be a positive multiple of each dt, got {dt}")
        return self


class RelaxationConfig(ExperimentConfig):
    """OQT relaxation of a random pure state of a GOE system."""

    model: GOEParams = GOEParams()
    trajectories: RelaxationTrajectories = RelaxationTrajectories()
    fit: AlphaFitParams = AlphaFitParams()
    norm_drift: NormDriftParams = NormDriftParams()

    def memory_requirements(self):
        d, t = self.model.dim, self.trajectories.n_times
        # H, its eigenvectors, rho(t) closed form and ensemble (T + 121 fine times, x3 for temporaries)
        return [("model.dim", 16 * d * d * (3 + 3 * (t + 121)), f"a GOE system of dimension {d} with rho(t)")]


def _shown_states(p0, chi, window) -> list[int]:
    """Up to three eigenstates: the most populated outside the window (relaxes to 0), and
    the most and least populated inside it (relax down/up to 1/|W|)."""
    out, inside = np.flatnonzero(~window), np.flatnonzero(window)
    picks = [int(out[np.argmax(p0[out])])] if out.size else []
    picks.append(int(inside[np.argmax(p0[inside])]))
    if inside.size > 1:
        picks.append(int(inside[np.argmin(p0[inside])]))
    return picks


class _Setup:
    """The model, its initial state and the observables the ensembles record."""

    def __init__(self, cfg: RelaxationConfig):
        mp, tp = cfg.model, cfg.trajectories
        self.k_h, k_psi, self.k_traj, self.k_norm = jax.random.split(jax.random.key(cfg.seed), 4)
        psi0 = random_ket(k_psi, mp.dim)
        self.model = OQTModel.microcanonical(goe_matrix(self.k_h, mp.dim, radius=mp.radius), psi0, mp.alpha_N)
        self.psi_e = self.model.eigensystem.ket_to_eigenbasis(psi0)
        self.rho0 = ket_to_dm(self.psi_e)
        self.energies = np.asarray(self.model.energies)
        self.window = np.asarray(self.model.steady.window)
        self.chi = np.asarray(self.model.chi)
        self.p0 = np.abs(np.asarray(self.psi_e)) ** 2
        self.ts = jnp.linspace(0.0, tp.t_max, tp.n_times)
        self.rho_cf = self.model.evolve(self.rho0, self.ts).states  # (T, d, d), eq. 6
        self.shown = _shown_states(self.p0, self.chi, self.window)
        # rows: fitted observables (P_out, E, E^2), then the shown populations
        self.fit_ops = np.stack([(~self.window).astype(float), self.energies, self.energies**2])
        self.obs_ops = np.concatenate([self.fit_ops, np.eye(mp.dim)[self.shown]])
        lin = self.rho_cf - self.model.chi_matrix()[None]
        if tp.picture == "interaction":
            lin = to_schrodinger(lin, self.model.energies, self.ts, -1)
        self.lin_ops = lin
        self.sde = sse_for(self.model, mp.noise, tp.picture)

    def observables(self):
        ops, lin, ts = jnp.asarray(self.obs_ops), jnp.asarray(self.lin_ops), self.ts

        def lin_obs(t, y):
            b = lin[jnp.argmin(jnp.abs(ts - t))]
            return jnp.real(jnp.conj(y) @ b @ y)

        return {
            "obs": lambda t, y: ops @ (jnp.abs(y) ** 2),
            "n2": lambda t, y: jnp.sum(jnp.abs(y) ** 2),
            "n2sq": lambda t, y: jnp.sum(jnp.abs(y) ** 2) ** 2,
            "lin": lin_obs,
        }


def _ensemble(cfg: RelaxationConfig, st: _Setup, m: int, key):
    tp = cfg.trajectories
    res = simulate_trajectories(
        st.sde, st.psi_e, st.ts, key, ntraj=m, method=tp.method(), observables=st.observables(),
        accumulate_outer=True, n_batches=cfg.fit.n_batches,
        options=tp.options(progress=cfg.progress),
    )
    rho = res.states
    if tp.picture == "interaction":
        rho = to_schrodinger(rho, st.model.energies, st.ts, +1)
    ens = res.ensemble
    fit = fit_alpha_n(st.model, st.rho0, ens, np.asarray(st.ts), st.fit_ops,
                      init=cfg.fit.start_ratio * cfg.model.alpha_N, max_steps=cfg.fit.max_steps)
    return {
        "fit": fit, "rho": rho, "obs_mean": ens.mean["obs"],
        "obs_stderr": np.sqrt(pooled_variance(ens, "obs") / float(ens.n)),
        "obs_batch": ens.batch_mean["obs"], "lin_batch": ens.batch_mean["lin"], "batch_n": ens.batch_n,
        "n2_mean": ens.mean["n2"], "n2sq_mean": ens.mean["n2sq"], "n_valid": int(ens.n),
    }


def _single(cfg: RelaxationConfig, st: _Setup, key):
    """The first `n_show` trajectories of the main ensemble (same keys), stored."""
    tp = cfg.trajectories
    if tp.n_show == 0:
        return {"pops": np.zeros((0, len(st.ts), cfg.model.dim))}
    res = simulate_trajectories(st.sde, st.psi_e, st.ts, key, ntraj=tp.n_show, method=tp.method(),
                                options=Options(store_trajectories=True))
    return {"pops": np.abs(np.asarray(res.ensemble.trajectories)) ** 2}


def _norm_drift(cfg: RelaxationConfig, st: _Setup):
    nd, out = cfg.norm_drift, {}
    for p_i, picture in enumerate(nd.pictures):
        sde = sse_for(st.model, cfg.model.noise, picture)
        rows = []
        for j, dt in enumerate(tqdm(nd.dt_values, desc=f"norm drift ({picture})", disable=not cfg.progress)):
            res = simulate_trajectories(
                sde, st.psi_e, jnp.array([0.0, nd.t_end]), jax.random.fold_in(st.k_norm, 100 * p_i + j),
                ntraj=nd.n_traj, method=RelaxationTrajectories(dt=dt).method(), options=Options(record_norm=True),
            )
            e = res.ensemble
            mean, var = float(e.mean["norm"][-1]), float(e.var["norm"][-1])
            rows.append([math.sqrt(var + (mean - 1.0) ** 2), abs(mean - 1.0), math.sqrt(var / float(e.n)),
                         float(e.norm_drift[-1])])
        rows = np.asarray(rows)
        line = fit_line(np.log(nd.dt_values), np.log(rows[:, 0]))
        out[picture] = {"rms": rows[:, 0], "mean_dev": rows[:, 1], "mean_err": rows[:, 2], "max_dev": rows[:, 3],
                        "slope_rms": line["slope"], "slope_rms_stderr": line["slope_stderr"],
                        "intercept_rms": line["intercept"]}
    return out


def _d_chi_analysis(cfg, st: _Setup, main):
    """Ensemble D_chi with its finite-M bias removed, and its linearised batch-means error."""
    model = st.model
    d_cf = np.asarray(d_chi(model, st.rho_cf))
    d_raw = np.asarray(d_chi(model, jnp.asarray(main["rho"])))
    # finite-M bias of Tr[(rho_M - chi)^2]: the sample variance of psi psi^dagger over M
    purity_ens = np.real(np.einsum("tab,tba->t", main["rho"], main["rho"]))
    floor = (main["n2sq_mean"] - purity_ens) / (main["n_valid"] - 1)
    d_hat = d_raw - floor
    # D_hat - D = 2 <psi|(rho_cf - chi)|psi> averaged + O(1/M): batch means of that
    d_err = 2 * batch_stderr(main["lin_batch"], main["batch_n"])
    return {"closed": d_cf, "raw": d_raw, "hat": d_hat, "err": d_err, "floor": floor,
            "formula": d_cf[0] * np.exp(-2 * cfg.model.alpha_N * np.asarray(st.ts))}


def _alpha_vs_m(cfg, fits):
    ms = np.asarray(cfg.fit.M_values, float)
    errs = np.asarray([f["stderr"] for f in fits])
    order = np.argsort(ms)
    out = {
        "M": [int(v) for v in ms], "value": [f["value"] for f in fits], "stderr": errs.tolist(),
        "stderr_curvature": [f["stderr_curvature"] for f in fits], "z": [f["z"] for f in fits],
        "stderr_times_sqrtM": (errs * np.sqrt(ms)).tolist(),
        "stderr_ratios_consecutive": (errs[order][:-1] / errs[order][1:]).tolist(),
        "expected_ratios_consecutive": np.sqrt(ms[order][1:] / ms[order][:-1]).tolist(),
    }
    if len(ms) >= 2:
        line = fit_line(np.log(ms), np.log(errs))
        out.update(slope_log_stderr_vs_log_M=line["slope"], slope_stderr=line["slope_stderr"], expected_slope=-0.5)
    return out


def run(cfg: RelaxationConfig) -> ExperimentResult:
    st = _Setup(cfg)
    gamma = cfg.model.alpha_N
    fits = []
    i_main = int(np.argmax(cfg.fit.M_values))
    for j, m in enumerate(cfg.fit.M_values):
        out = stage(f"ensemble_M{m}", lambda m=m, j=j: _ensemble(cfg, st, m, jax.random.fold_in(st.k_traj, j)))
        fit = dict(out["fit"], true=gamma)
        fit["z"] = (fit["value"] - gamma) / fit["stderr"]
        fits.append(fit)
        if j == i_main:
            main = out
    key_main = jax.random.fold_in(st.k_traj, i_main)
    single = stage("single_trajectories", lambda: _single(cfg, st, key_main))["pops"]
    nd = stage("norm_drift", lambda: _norm_drift(cfg, st))
    dc = _d_chi_analysis(cfg, st, main)
    t_fine = jnp.linspace(0.0, cfg.trajectories.t_max, 121)
    rho_fine = st.model.evolve(st.rho0, t_fine).states
    diag_cf, diag_ens = diagnostics(st.model, st.rho_cf), diagnostics(st.model, jnp.asarray(main["rho"]))
    diag_fine = diagnostics(st.model, rho_fine)
    pops_fine = np.asarray(population_closed_form(st.model, st.p0, t_fine))
    energy_err = batch_stderr(main["obs_batch"][..., 1], main["batch_n"])
    energy_cf = np.real(np.einsum("tii,i->t", np.asarray(st.rho_cf), st.energies))
    summary = {
        "dim": cfg.model.dim, "gamma": gamma, "window_size": int(st.window.sum()),
        "E0": float(st.model.steady.energy), "V0": float(st.model.steady.energy_variance),
        "energy_mismatch": float(st.model.energy_mismatch),
        "energy_mismatch_definition": "Tr(chi H) - E0; dE/dt = gamma (Tr(chi H) - E)",
        "dt": cfg.trajectories.dt, "picture": cfg.trajectories.picture, "noise": cfg.model.noise,
        "M_main": int(cfg.fit.M_values[i_main]), "n_diverged_main": int(cfg.fit.M_values[i_main] - main["n_valid"]),
        "shown_eigenstates": st.shown,
        "d_chi": {
            "D0": float(dc["closed"][0]),
            "closed_form_vs_formula_max_rel": float(np.max(np.abs(dc["closed"] / dc["formula"] - 1))),
            # t = 0 is deterministic (all trajectories equal): z over t > 0 only
            "ensemble_max_abs_z": float(np.max(np.abs((dc["hat"][1:] - dc["closed"][1:]) / dc["err"][1:]))),
            "ensemble_rel_err_at_t_max": float(dc["hat"][-1] / dc["closed"][-1] - 1),
            "finite_M_floor_at_t_max": float(dc["floor"][-1]),
            "note": "ensemble D_chi corrected by its finite-M bias; z uses the linearised batch-means error",
        },
        "energy": {
            "closed_form_t_max": float(diag_cf.energy[-1]), "ensemble_t_max": float(diag_ens.energy[-1]),
            "ensemble_minus_closed_max_z": float(np.max(np.abs((main["obs_mean"][1:, 1] - energy_cf[1:])
                                                               / energy_err[1:]))),
        },
        "entropy": {"closed_form_t_max": float(diag_cf.entropy[-1]), "ensemble_t_max": float(diag_ens.entropy[-1]),
                    "chi": float(np.sum(-st.chi[st.chi > 0] * np.log(st.chi[st.chi > 0])))},
        "population_closed_form_check": float(np.max(np.abs(
            np.real(np.diagonal(np.asarray(rho_fine), axis1=-2, axis2=-1)) - pops_fine))),
        "norm_drift": {"t_end": cfg.norm_drift.t_end, "expected_slope_rms": 0.5, "expected_slope_mean": 1.0,
                       **{p: {k: np.asarray(v).tolist() if np.ndim(v) else v for k, v in r.items()}
                          for p, r in nd.items()}},
        "ensemble_mean_norm_t_max": float(main["n2_mean"][-1]),
        "fits": {"alpha_N": {**fits[i_main], "note": f"main run = largest M ({cfg.fit.M_values[i_main]}); "
                             "stderr from batch means (sandwich), stderr_curvature for comparison"}},
        "alpha_N_vs_M": _alpha_vs_m(cfg, fits),
    }
    arrays = {
        "ts": np.asarray(st.ts), "t_fine": np.asarray(t_fine), "energies": st.energies, "chi": st.chi, "p0": st.p0,
        "shown": np.asarray(st.shown), "obs_mean": main["obs_mean"], "obs_stderr": main["obs_stderr"],
        "single_pops": single, "pops_fine": pops_fine, "d_chi_closed": dc["closed"], "d_chi_formula": dc["formula"],
        "d_chi_ens_raw": dc["raw"], "d_chi_ens": dc["hat"], "d_chi_ens_err": dc["err"], "d_chi_floor": dc["floor"],
        "d_chi_fine": np.asarray(d_chi(st.model, rho_fine)), "energy_ens": np.asarray(diag_ens.energy),
        "energy_ens_err": energy_err, "variance_ens": np.asarray(diag_ens.energy_variance),
        "entropy_ens": np.asarray(diag_ens.entropy), "energy_fine": np.asarray(diag_fine.energy),
        "variance_fine": np.asarray(diag_fine.energy_variance), "entropy_fine": np.asarray(diag_fine.entropy),
        "norm_dt": np.asarray(cfg.norm_drift.dt_values), "alpha_M": np.asarray(cfg.fit.M_values, float),
        "alpha_value": np.asarray([f["value"] for f in fits]), "alpha_stderr": np.asarray([f["stderr"] for f in fits]),
        "alpha_stderr_curvature": np.asarray([f["stderr_curvature"] for f in fits]),
    }
    for p, r in nd.items():
        for k in ("rms", "mean_dev", "mean_err", "max_dev"):
            arrays[f"norm_{k}_{p}"] = np.asarray(r[k])
    return ExperimentResult(arrays=arrays, summary=summary)


def _plot_populations(a, s, cfg, cap):
    ts, tf = a["ts"], a["t_fine"]
    fig, ax = plot.subplots(width=6.2, height=4.0)
    for i, mu in enumerate(a["shown"]):
        color = f"C{i}"
        for tr in a["single_pops"]:
            ax.plot(ts, tr[:, mu], color=color, lw=0.7, alpha=0.45)
        where = " (in W)" if a["chi"][mu] > 0 else ""
        ax.plot(tf, a["pops_fine"][:, mu], color=color, lw=1.8,
                label=rf"$p_{{{mu}}}$, $E={a['energies'][mu]:+.2f}$" + where)
        ax.errorbar(ts, a["obs_mean"][:, 3 + i], yerr=a["obs_stderr"][:, 3 + i], fmt="o", ms=3.5,
                    color=color, capsize=2)
    ax.set_xlabel(r"$t$  ($\hbar/$energy)")
    ax.set_ylabel(r"population $|\langle\mu|\psi\rangle|^2$")
    ax.set_yscale("log")
    ax.legend(title="thin: single trajectories, dots: ensemble ± s.e., lines: eq. 6", fontsize=7,
              title_fontsize=7)
    plot.caption(fig, cap)
    return fig


def _plot_d_chi(a, s, cfg, cap):
    ts, tf = a["ts"], a["t_fine"]
    fig, ax = plot.subplots(width=5.8, height=4.0)
    ax.semilogy(tf, a["d_chi_fine"], color="k", lw=1.6, label="closed form (eq. 6)")
    ax.semilogy(ts, a["d_chi_formula"], "x", color="C3", ms=7, label=r"$D_\chi(0)e^{-2\gamma t}$")
    ax.errorbar(ts, a["d_chi_ens"], yerr=a["d_chi_ens_err"], fmt="o", ms=4, color="C0", capsize=2,
                label="ensemble (finite-M bias removed)")
    ax.semilogy(ts, a["d_chi_ens_raw"], "s", ms=3, mfc="none", color="C0", alpha=0.6,
                label=r"ensemble, raw $\mathrm{Tr}[(\bar\rho-\chi)^2]$")
    ax.semilogy(ts, a["d_chi_floor"], ":", color="0.5", label="finite-M floor")
    ax.set_xlabel(r"$t$  ($\hbar/$energy)")
    ax.set_ylabel(r"$D_\chi(t) = \mathrm{Tr}[(\rho-\chi)^2]$")
    ax.legend(fontsize=8)
    plot.caption(fig, cap)
    return fig


def _plot_energy_entropy(a, s, cfg, cap):
    ts, tf = a["ts"], a["t_fine"]
    fig, axes = plot.subplots(1, 3, width=3.6, height=3.4)
    ax = axes[0]
    ax.plot(tf, a["energy_fine"], "k", lw=1.5, label="closed form")
    ax.errorbar(ts, a["energy_ens"], yerr=a["energy_ens_err"], fmt="o", ms=3.5, capsize=2, label="ensemble")
    ax.axhline(s["E0"], color="0.5", ls=":", label=r"$E_0$")
    ax.axhline(s["E0"] + s["energy_mismatch"], color="C3", ls="--", lw=1, label=r"Tr$(\chi H)$")
    ax.set_title(f"energy; Tr(χH) − E0 = {s['energy_mismatch']:+.3g}", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(tf, a["variance_fine"], "k", lw=1.5, label="closed form")
    ax.plot(ts, a["variance_ens"], "o", ms=3.5, label="ensemble")
    ax.set_title("energy variance", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(tf, a["entropy_fine"], "k", lw=1.5, label="closed form")
    ax.plot(ts, a["entropy_ens"], "o", ms=3.5, label="ensemble ρ")
    ax.axhline(s["entropy"]["chi"], color="C3", ls="--", lw=1, label=r"$S(\chi)=\ln|W|$")
    ax.set_title("von Neumann entropy (nats)", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel(r"$t$  ($\hbar/$energy)")
    plot.caption(fig, cap)
    return fig


def _plot_norm_drift(a, s, cfg, cap):
    gamma = s["gamma"]
    fig, ax = plot.subplots(width=5.6, height=4.0)
    dts = a["norm_dt"]
    nd = s["norm_drift"]
    for i, p in enumerate(cfg.norm_drift.pictures):
        r = nd[p]
        ax.loglog(dts, a[f"norm_rms_{p}"], "o", color=f"C{i}",
                  label=f"rms {p}: slope {r['slope_rms']:.3f} ± {r['slope_rms_stderr']:.3f}")
        ax.loglog(dts, np.exp(r["intercept_rms"]) * dts ** r["slope_rms"], "-", color=f"C{i}", lw=0.8)
        ax.errorbar(dts, a[f"norm_mean_dev_{p}"], yerr=a[f"norm_mean_err_{p}"], fmt="^", ms=4,
                    color=f"C{i}", mfc="none", capsize=2, label=f"|mean − 1| {p}")
    ref = a[f"norm_rms_{cfg.norm_drift.pictures[0]}"][-1] * (dts / dts[-1]) ** 0.5
    ax.loglog(dts, ref, "k--", lw=1, label=r"EM strong: $\propto dt^{1/2}$")
    ref1 = 0.5 * a[f"norm_rms_{cfg.norm_drift.pictures[0]}"][-1] * (dts / dts[-1])
    ax.loglog(dts, ref1, "k:", lw=1, label=r"EM weak: $\propto dt$")
    ax.set_xlabel(r"$dt$")
    ax.set_ylabel(r"$\|\psi(t_{end})\| - 1$")
    ax.legend(fontsize=7)
    plot.caption(fig, f"norm drift at t={nd['t_end']:g}, {cfg.norm_drift.n_traj} trajectories; "
                      f"d={s['dim']}, γ={gamma:g}")
    return fig


def _plot_alpha(a, s, cfg, cap):
    gamma = s["gamma"]
    fig, axes = plot.subplots(1, 2, width=4.6, height=3.6)
    ms, val, err = a["alpha_M"], a["alpha_value"], a["alpha_stderr"]
    ax = axes[0]
    ax.errorbar(ms, val, yerr=err, fmt="o", capsize=3, label="fit ± batch-means s.e.")
    ax.axhline(gamma, color="k", ls="--", lw=1, label="true")
    ax.set_xscale("log")
    plot.label_log_axis(ax, ms)
    ax.set_xlabel("trajectories M")
    ax.set_ylabel(r"fitted $\alpha\mathcal{N}$")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.loglog(ms, err, "o", label="batch-means s.e.")
    ax.loglog(ms, a["alpha_stderr_curvature"], "s", mfc="none", label="curvature s.e. (assumes independence)")
    c = np.exp(np.mean(np.log(err * np.sqrt(ms))))
    ax.loglog(ms, c / np.sqrt(ms), "k--", lw=1, label=r"$\propto 1/\sqrt{M}$")
    plot.label_log_axis(ax, ms)
    ax.set_xlabel("trajectories M")
    ax.set_ylabel("standard error")
    ax.legend(fontsize=7)
    slope = s["alpha_N_vs_M"].get("slope_log_stderr_vs_log_M", float("nan"))
    plot.caption(fig, f"αN fit from P_out, E, E² (t>0); true {gamma:g}; "
                      f"s.e. slope vs M {slope:.3f} (expected −0.5)")
    return fig


def plot_result(result: ExperimentResult, cfg: RelaxationConfig):
    a, s = result.arrays, result.summary
    cap = (f"GOE d={s['dim']}, γ=αN={s['gamma']:g}, |W|={s['window_size']}, M={s['M_main']}, "
           f"dt={s['dt']:g} ({s['picture']} picture, {s['noise']} noise); t in ħ/energy")
    plots = (_plot_populations, _plot_d_chi, _plot_energy_entropy, _plot_norm_drift, _plot_alpha)
    names = ("populations", "d_chi", "energy_entropy", "norm_drift", "alpha_n_fit")
    return {name: fn(a, s, cfg, cap) for name, fn in zip(names, plots)}


register(
    "oqt_relaxation", RelaxationConfig, run, plot_result,
    "OQT on a GOE system: SSE ensemble vs closed-form master equation, norm drift, alpha_N fit",
)
