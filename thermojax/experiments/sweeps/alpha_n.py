r"""`sweep_alpha_n`: OQT $\alpha\mathcal N$ fitted to trajectory ensembles over a grid of
$\alpha\mathcal N$ × dimension × seeds, fitted/true ± error per point.

One point is `oqt_relaxation`'s fit at one ensemble size `fit.n_traj`: a GOE
Hamiltonian and a random pure state from the point's seed (the keys of
`oqt_relaxation`), the microcanonical $\chi$, `n_traj` Euler–Maruyama trajectories of
the SSE (arXiv:2504.16197, eq. 5) in the chosen picture, trajectory $i$ keyed as
`simulate_trajectories` keys it; $\alpha\mathcal N$ fitted to the ensemble means of
$P_{out}$, $E$, $E^2$ against the closed form (eq. 6), with batch-means (sandwich)
errors (`thermojax.experiments.oqt.common.fit_alpha_n`). The same config gives the
same trajectories and fit as `oqt_relaxation` with `fit.M_values = [n_traj]`.

$\alpha\mathcal N$ and the seed enter the compiled computation as arrays: points that
differ only in them are one vmapped group; each dimension is its own group. Inside a
point the trajectories run through `jax.lax.map` in batches of
`trajectories.chunk_size`.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, FitOptions
from ...models.oqt import OQTModel
from ...spectra import goe_matrix, random_ket
from ...stats import batch_means
from ...sweep import Point, PointKernel, PointResult, SweepTable, register_kernel
from ...trajectories import solve_trajectory
from .. import ExperimentResult, register
from ..oqt.common import fit_alpha_n, sse_for
from ..oqt.relaxation import GOEParams, GridTrajectories
from . import run_single_point


class AlphaTrajectories(GridTrajectories):
    """Trajectories of one point: step, save grid (times in hbar/energy), picture."""


class AlphaFit(FitOptions):
    """The alpha_N fit of one point."""

    n_traj: int = Field(2000, ge=4, description="trajectories per point")
    n_batches: int = Field(50, ge=2, description="batches for the batch-means errors")

    @model_validator(mode="after")
    def _sizes(self):
        if self.n_traj % self.n_batches or self.n_traj // self.n_batches < 2:
            raise ValueError(
                f"fit.n_traj ({self.n_traj}) must be a multiple of fit.n_batches ({self.n_batches}) with at least 2 "
                "trajectories per batch"
            )
        return self


class AlphaNConfig(ExperimentConfig):
    """One point of the alpha_N sweep: a GOE system, an SSE ensemble, one fit."""

    model: GOEParams = GOEParams(dim=32)
    trajectories: AlphaTrajectories = AlphaTrajectories()
    fit: AlphaFit = AlphaFit()
    sweep: SweepTable | None = None

    def memory_requirements(self):
        d, t, m = self.model.dim, self.trajectories.n_times, self.fit.n_traj
        return [("model.dim", 16 * d * d * 6, f"a GOE system of dimension {d} and its eigendecomposition"),
                ("fit.n_traj", 2 * 8 * 3 * t * m, f"the observables of {m} trajectories at {t} times")]


def _ops(model):
    e = model.energies
    return jnp.stack([(~model.steady.window).astype(e.dtype), e, e**2])  # P_out, E, E^2


def _compute(g: AlphaNConfig, inp):
    """One point (traced, vmapped over points): the system from the seed as in
    `oqt_relaxation`, `n_traj` trajectories, their observables per save time."""
    mp, tp = g.model, g.trajectories
    k_h, k_psi, k_traj, _ = jax.random.split(jax.random.wrap_key_data(inp["key"]), 4)
    psi0 = random_ket(k_psi, mp.dim)
    model = OQTModel.microcanonical(goe_matrix(k_h, mp.dim, radius=mp.radius), psi0, inp["model.alpha_N"])
    psi_e = model.eigensystem.ket_to_eigenbasis(psi0)
    sse = sse_for(model, mp.noise, tp.picture)
    ts = np.linspace(0.0, tp.t_max, tp.n_times)
    ops = _ops(model)
    key = jax.random.fold_in(k_traj, 0)  # oqt_relaxation's ensemble of its first M value

    def one(i):
        ys, diverged = solve_trajectory(sse, psi_e, ts, jax.random.fold_in(key, i), method=tp.method())
        return (jnp.abs(ys) ** 2) @ ops.T, diverged

    obs, diverged = jax.lax.map(one, jnp.arange(g.fit.n_traj), batch_size=tp.chunk_size)
    return {"obs": obs, "diverged": diverged, "energies": model.energies, "chi": model.chi,
            "p0": jnp.abs(psi_e) ** 2, "window": model.steady.window}


def _finish(cfg: AlphaNConfig, a) -> PointResult:
    valid = ~a["diverged"]
    x = a["obs"]
    means_b, counts, mean, _ = batch_means(x, valid, cfg.fit.n_batches)
    ens = types.SimpleNamespace(  # the EnsembleStats fields fit_alpha_n reads
        mean={"obs": mean}, batch_mean={"obs": means_b}, batch_n=counts, var={"obs": x[valid].var(0, ddof=1)},
        n=int(valid.sum()), ntraj=cfg.fit.n_traj,
    )
    d, true = cfg.model.dim, cfg.model.alpha_N
    model = OQTModel((jnp.asarray(a["energies"]), jnp.eye(d)), jnp.asarray(a["chi"]), true)
    rho0 = jnp.diag(jnp.asarray(a["p0"])).astype(complex)  # the fit sees populations only
    ts = np.linspace(0.0, cfg.trajectories.t_max, cfg.trajectories.n_times)
    fit = fit_alpha_n(model, rho0, ens, ts, _ops(model), init=cfg.fit.start_ratio * true,
                      max_steps=cfg.fit.max_steps)
    z = (fit["value"] - true) / fit["stderr"]
    headline = {"alpha_N": {"value": fit["value"], "stderr": fit["stderr"], "true": true, "z": z,
                            "ratio": fit["value"] / true, "ratio_stderr": fit["stderr"] / true,
                            "stderr_kind": fit.get("stderr_kind", "batch means (sandwich)")}}
    pops = np.real(np.diagonal(np.asarray(model.evolve(rho0, ts).states), axis1=-2, axis2=-1))
    arrays = {"ts": ts, "obs_mean": mean, "obs_batch_mean": means_b, "batch_n": counts,
              "obs_closed_form": pops @ np.asarray(_ops(model)).T, "energies": a["energies"], "chi": a["chi"]}
    summary = {**{k: v for k, v in fit.items() if k not in ("value", "stderr")}, "window_size": int(a["window"].sum()),
               "n_diverged": int(cfg.fit.n_traj - valid.sum())}
    return PointResult(arrays, headline, summary)


def _summarize(points: list[Point], results: list[PointResult]):
    z = np.array([r.headline["alpha_N"]["z"] for r in results])
    dims = sorted({p.config.model.dim for p in points})
    by_dim = {str(d): float(np.mean([zi for zi, p in zip(z, points) if p.config.model.dim == d])) for d in dims}
    out = {"max_abs_z": float(np.max(np.abs(z))), "all_within_3_stderr": bool(np.all(np.abs(z) < 3)),
           "mean_z": float(z.mean()), "mean_z_by_dim": by_dim,
           "n_diverged_total": int(sum(r.summary["n_diverged"] for r in results)),
           "note": "z = (fitted - true) / batch-means stderr per point; points with the same seed and dimension "
                   "share their trajectories' noise (common random numbers), so their z are correlated"}
    return out, {"alpha_n_fits": _figure(points, results)}


def _figure(points, results):
    fig, ax = plot.subplots(width=6.0, height=3.8)
    dims = sorted({p.config.model.dim for p in points})
    alphas = sorted({p.config.model.alpha_N for p in points})
    for i, d in enumerate(dims):
        sel = [(p, r) for p, r in zip(points, results) if p.config.model.dim == d]
        xs = np.array([alphas.index(p.config.model.alpha_N) for p, _ in sel], float)
        jitter = 0.25 * (i - (len(dims) - 1) / 2) / max(len(dims), 1) + 0.03 * np.array(
            [p.config.seed % 5 for p, _ in sel])
        ratio = np.array([r.headline["alpha_N"]["ratio"] for _, r in sel])
        err = np.array([r.headline["alpha_N"]["ratio_stderr"] for _, r in sel])
        ax.errorbar(xs + jitter, ratio, err, fmt="o", ms=4, capsize=2, color=f"C{i}", label=f"d = {d}")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel(r"true $\alpha\mathcal{N}$ (seeds side by side)")
    ax.set_ylabel(r"fitted / true $\alpha\mathcal{N}$ ± s.e.")
    ax.legend(fontsize=8)
    z = np.array([r.headline["alpha_N"]["z"] for r in results])
    plot.caption(fig, f"{len(points)} points; max |z| = {np.max(np.abs(z)):.2f} (batch-means errors)")
    return fig


KERNEL = PointKernel(
    batched=("model.alpha_N",), compute=_compute, finish=_finish,
    point_bytes=lambda c: 16 * c.model.dim**2 * 6 + 16 * (c.trajectories.chunk_size or c.fit.n_traj) * c.model.dim
    * (c.trajectories.n_times + 12) + 2 * 8 * 3 * c.trajectories.n_times * c.fit.n_traj,
    summarize=_summarize, headline_name="alpha_N",
)


def run(cfg: AlphaNConfig) -> ExperimentResult:
    """One point (the config as given; `thermojax sweep` runs the grid)."""
    return run_single_point(KERNEL, cfg)


def plot_result(result: ExperimentResult, cfg: AlphaNConfig):
    a, s = result.arrays, result.summary
    fig, axes = plot.subplots(1, 3, width=3.4, height=3.2)
    for j, (ax, name) in enumerate(zip(axes, (r"$P_{out}$", r"$E$", r"$E^2$"))):
        bm, n = a["obs_batch_mean"][..., j], a["batch_n"]
        err = np.sqrt(((n[:, None] / n.sum()) ** 2 * (bm - a["obs_mean"][:, j]) ** 2).sum(0) * len(n) / (len(n) - 1))
        ax.errorbar(a["ts"], a["obs_mean"][:, j], err, fmt="o", ms=3.5, capsize=2, label="ensemble ± s.e.")
        ax.plot(a["ts"], a["obs_closed_form"][:, j], "k-", lw=1.2, label="eq. 6, true αN")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(r"$t$ ($\hbar$/energy)")
    axes[0].legend(fontsize=7)
    f = s["fits"]["alpha_N"]
    plot.caption(fig, f"d={cfg.model.dim}, M={cfg.fit.n_traj}: fitted αN = {f['value']:.4f} ± {f['stderr']:.4f} "
                      f"(true {f['true']:g}, z = {f['z']:+.2f})")
    return {"ensemble": fig}


register("sweep_alpha_n", AlphaNConfig, run, plot_result,
         "OQT alpha_N fitted to SSE ensembles over an alpha_N x d x seeds grid (use `thermojax sweep`)")
register_kernel("sweep_alpha_n", KERNEL)
