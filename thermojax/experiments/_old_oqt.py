r"""Objective quantum thermalization (OQT) experiments: GOE relaxation and the heat chain.

Source: A. Mukherjee, "Objective quantum thermalization", arXiv:2504.16197 (seed
``001_72cbdd6588fdbaef.txt``): the stochastic Schrödinger equation (SSE, eq. 5), its
master equation (eq. 6) :math:`\dot\rho = -i[H,\rho] + \gamma(\chi\,\mathrm{Tr}\rho -
\rho)` with :math:`\gamma = \alpha\mathcal N/\hbar` and the decay
:math:`D_\chi(t) = D_\chi(0)e^{-2\gamma t}` (text after eq. 6); PHYSICS.md §1 and §6.
The chain is that of Michel, Gemmer, Mahler, PRE 73, 016101 (2006), cond-mat/0511727
(seed ``002_35d65e6582f938cb.txt``, PHYSICS.md §2).

Two experiments:

* ``oqt_relaxation``: a GOE Hamiltonian, a random pure state, the microcanonical
  :math:`\chi`; a trajectory ensemble of the SSE against the closed-form master
  equation (populations, :math:`D_\chi`, energy, variance, entropy), the norm drift of
  the Euler–Maruyama scheme against ``dt``, and the fit of :math:`\alpha\mathcal N`
  to ensemble data generated with a known value, for several ensemble sizes ``M``.
* ``oqt_chain``: the effective OQT rate that makes the heat chain's subunit
  populations relax like the exact unitary evolution, beside the golden-rule
  :math:`\kappa` of the HAM rate equations.

Two numerical decisions, both measured:

* **Interaction picture.** Euler–Maruyama on the SSE multiplies each eigenbasis
  population by :math:`|1 - iE_\mu dt|^2 = 1 + E_\mu^2dt^2` per step, an ensemble gain
  :math:`dt\,E_\mu^2` per unit time that slows the apparent decay of the populations
  outside the window (which sit at large :math:`|E_\mu|`). Measured at ``d = 16``,
  ``dt = 0.01``, :math:`\gamma = 1`, ``M = 2000``: the fitted rate came out
  :math:`0.973 \pm 0.005` (5 standard errors low). :class:`~thermojax.models.oqt.InteractionPictureSSE`
  integrates the same SSE for :math:`\phi = e^{iHt}\psi` (exact change of variables,
  :math:`H` diagonal in the eigenbasis); its Euler–Maruyama scheme has no
  :math:`E^2dt^2` term, and the same data gave :math:`0.991 \pm 0.005`; the remaining
  bias is :math:`O(\gamma^2 dt)`. ``trajectories.picture = "schrodinger"`` runs the
  library's SSE as is.
* **Batch means.** Ensemble observables at different times come from the same
  trajectories and are strongly correlated, so the curvature error of a least-squares
  fit is far too small (measured 5–20× at ``d = 16…64``). Each ensemble is split into
  ``n_batches`` sub-batches of trajectories; the weights of the fit are the pooled
  within-batch standard errors and its standard error is the sandwich (linearised
  jackknife) estimate over the batch means, see :func:`fit_alpha_n`. Both errors are
  reported.
"""

import dataclasses
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from .. import plot
from ..config import ExperimentConfig, Section
from ..fit import fit_least_squares
from ..io import Stopwatch
from ..models.heat_chain import HeatChain, random_band_state
from ..models.oqt import InteractionPictureSSE, OQTModel, d_chi, diagnostics
from ..spectra import goe_matrix, ket_to_dm, random_ket
from ..trajectories import AbstractSDE, simulate_trajectories, solve_trajectory
from . import ExperimentResult, register
from .heat_chain import ChainParams, TimeGrid

__all__ = [
    "EnsembleBatches",
    "run_ensemble_batches",
    "batch_means",
    "fit_alpha_n",
    "population_closed_form",
]


# ----------------------------------------------------------------------------------
# Interaction-picture SSE
# ----------------------------------------------------------------------------------


def _rotate(rho, energies, ts, sign: int):
    r""":math:`\rho_{ab}\,e^{-i\,\mathrm{sign}\,(E_a-E_b)t}` for ``rho`` of shape ``(T, d, d)``:
    ``sign = +1`` takes an interaction-picture matrix to the Schrödinger picture."""
    omega = energies[:, None] - energies[None, :]
    return rho * jnp.exp(-1j * sign * ts[:, None, None] * omega[None])


# ----------------------------------------------------------------------------------
# Trajectory ensembles with batch structure
# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class EnsembleBatches:
    """Per-trajectory summaries of one SSE ensemble (host arrays).

    Attributes:
        ts: Saving times, shape ``(T,)``.
        obs: ``<psi|A_k|psi>`` for the diagonal operators ``A_k`` (rows of
            ``obs_ops``), shape ``(M, T, K)``.
        norm2: :math:`\\langle\\psi|\\psi\\rangle`, shape ``(M, T)``.
        lin: :math:`\\langle\\psi|B_t|\\psi\\rangle` for the matrices ``B_t`` passed as
            ``lin_ops`` (linearisation of :math:`D_\\chi`), shape ``(M, T)``.
        valid: Not diverged, shape ``(M,)``.
        rho: Ensemble mean of :math:`\\psi\\psi^\\dagger` over valid trajectories in the
            Schrödinger-picture eigenbasis, shape ``(T, d, d)``.
        first: Populations :math:`|\\psi_\\mu|^2` of the first ``n_first``
            trajectories, shape ``(n_first, T, d)``.
    """

    ts: np.ndarray
    obs: np.ndarray
    norm2: np.ndarray
    lin: np.ndarray
    valid: np.ndarray
    rho: np.ndarray
    first: np.ndarray

    @property
    def n_traj(self) -> int:
        return int(self.valid.shape[0])

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())


@eqx.filter_jit
def _ensemble_chunk(sde, psi0, key, idx, n_traj, obs_ops, lin_ops, static):
    ts, dt, n_first = static

    def one(i):
        return solve_trajectory(sde, psi0, ts, jax.random.fold_in(key, i), dt=dt)

    ys, div = jax.vmap(one)(idx)  # (C, T, d), (C,)
    valid = (idx < n_traj) & ~div
    pops = jnp.abs(ys) ** 2
    obs = jnp.einsum("ctd,kd->ctk", pops, obs_ops)
    lin = jnp.real(jnp.einsum("ctd,tde,cte->ct", jnp.conj(ys), lin_ops, ys))
    ysv = jnp.where(valid[:, None, None], ys, 0)
    rho_sum = jnp.einsum("ctd,cte->tde", ysv, jnp.conj(ysv))
    return obs, jnp.sum(pops, axis=-1), lin, rho_sum, valid, pops[:n_first]


def run_ensemble_batches(
    sde: AbstractSDE,
    psi0,
    ts,
    key,
    *,
    n_traj: int,
    dt: float,
    obs_ops,
    lin_ops,
    picture: Literal["interaction", "schrodinger"],
    chunk_size: int = 500,
    n_first: int = 0,
    progress: bool = False,
    desc: str = "trajectories",
) -> EnsembleBatches:
    r"""Run ``n_traj`` SSE trajectories and keep per-trajectory summaries.

    :func:`~thermojax.trajectories.simulate_trajectories` streams whole-ensemble
    statistics; batch-means errors need sums per sub-batch of trajectories, so this
    vmaps :func:`~thermojax.trajectories.solve_trajectory` over chunks of trajectories
    (one compilation for all ensemble sizes) with the same per-trajectory keys
    ``jax.random.fold_in(key, i)``: the same key gives the same trajectories as
    ``simulate_trajectories``. Diverged trajectories are flagged in ``valid`` and left
    out of ``rho``.

    Args:
        sde: The SSE, an :class:`~thermojax.models.oqt.OQTSSE` or
            :class:`~thermojax.models.oqt.InteractionPictureSSE` (then ``picture="interaction"``).
        psi0: Initial ket in the eigenbasis, shape ``(d,)``.
        ts: Saving times, shape ``(T,)`` on the grid ``n * dt``.
        key: PRNG key.
        n_traj: Number of trajectories ``M``.
        dt: Euler–Maruyama step.
        obs_ops: Diagonals of the observables, shape ``(K, d)``.
        lin_ops: Matrices ``B_t`` in the picture of ``sde``, shape ``(T, d, d)``.
        picture: Picture of ``sde``; ``rho`` is returned in the Schrödinger picture.
        chunk_size: Trajectories per compiled call (the last call is padded).
        n_first: Populations of the first ``n_first`` trajectories are kept.
        progress: tqdm bar over chunks.
        desc: Bar label.

    Returns:
        An :class:`EnsembleBatches`.
    """
    ts_np = np.asarray(ts, float)
    static = (tuple(float(t) for t in ts_np), float(dt), int(n_first))
    chunk = int(min(chunk_size, max(n_traj, 1)))
    m, t_len = int(n_traj), len(ts_np)
    obs = np.zeros((m, t_len, np.shape(obs_ops)[0]))
    norm2 = np.zeros((m, t_len))
    lin = np.zeros((m, t_len))
    valid = np.zeros(m, bool)
    d = int(np.shape(psi0)[0])
    rho = np.zeros((t_len, d, d), complex)
    first = None
    obs_ops, lin_ops = jnp.asarray(obs_ops, float), jnp.asarray(lin_ops, complex)
    n_arr = jnp.asarray(m)
    for c0 in tqdm(range(0, m, chunk), desc=desc, disable=not progress, leave=False):
        idx = jnp.arange(c0, c0 + chunk)
        o, n2, li, rs, v, f = _ensemble_chunk(sde, psi0, key, idx, n_arr, obs_ops, lin_ops, static)
        take = min(chunk, m - c0)
        obs[c0 : c0 + take] = np.asarray(o)[:take]
        norm2[c0 : c0 + take] = np.asarray(n2)[:take]
        lin[c0 : c0 + take] = np.asarray(li)[:take]
        valid[c0 : c0 + take] = np.asarray(v)[:take]
        rho += np.asarray(rs)
        if first is None:
            first = np.asarray(f)
    rho = rho / max(int(valid.sum()), 1)
    if picture == "interaction":
        energies = sde.sse.energies
        rho = np.asarray(_rotate(jnp.asarray(rho), energies, jnp.asarray(ts_np), +1))
    return EnsembleBatches(ts_np, obs, norm2, lin, valid, rho, first[: min(n_first, m)])


def batch_means(x: np.ndarray, valid: np.ndarray, n_batches: int):
    """Batch means of per-trajectory data ``x`` (shape ``(M, ...)``), diverged left out.

    Trajectory ``i`` belongs to batch ``i // (M // n_batches)``.

    Returns:
        ``(means_b, counts_b, mean, pooled_var)``: batch means ``(B, ...)``, valid
        trajectories per batch ``(B,)``, overall mean ``(...)`` and the pooled
        within-batch variance of one trajectory ``(...)``.
    """
    m = x.shape[0]
    bs = m // n_batches
    xb = x[: bs * n_batches].reshape((n_batches, bs) + x.shape[1:])
    vb = valid[: bs * n_batches].reshape(n_batches, bs)
    vmask = vb.reshape(vb.shape + (1,) * (x.ndim - 1))
    counts = vb.sum(1)
    cshape = counts.reshape((n_batches,) + (1,) * (x.ndim - 1))
    means_b = np.where(vmask, xb, 0).sum(1) / np.maximum(cshape, 1)
    n_tot = counts.sum()
    mean = (means_b * cshape).sum(0) / n_tot
    ss = np.where(vmask, (xb - means_b[:, None]) ** 2, 0).sum((0, 1))
    pooled = ss / max(n_tot - n_batches, 1)
    return means_b, counts, mean, pooled


def _batch_stderr(values_b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standard error of a count-weighted mean of batch values ``(B, ...)``."""
    b = values_b.shape[0]
    w = (counts / counts.sum()).reshape((b,) + (1,) * (values_b.ndim - 1))
    mean = (w * values_b).sum(0)
    return np.sqrt((w**2 * (values_b - mean) ** 2).sum(0) * b / (b - 1))


# ----------------------------------------------------------------------------------
# Closed forms and the alpha_N fit
# ----------------------------------------------------------------------------------


def population_closed_form(model: OQTModel, p0, ts):
    r"""Eigenbasis populations of the closed form of eq. 6,
    :math:`p_\mu(t) = \chi_\mu + e^{-\gamma t}(p_\mu(0) - \chi_\mu)` (the diagonal of
    :meth:`~thermojax.models.oqt.OQTModel.evolve`; unit trace).

    Args:
        model: Supplies :math:`\chi` and :math:`\gamma` (``alpha_N``).
        p0: Initial populations, shape ``(d,)``.
        ts: Times, shape ``(T,)``.

    Returns:
        Shape ``(T, d)``.
    """
    decay = jnp.exp(-model.alpha_N * jnp.asarray(ts))
    return model.chi[None, :] + decay[:, None] * (jnp.asarray(p0) - model.chi)[None, :]


def _predict_obs(model, alpha_n, rho0, ts, obs_ops):
    m = eqx.tree_at(lambda q: q.alpha_N, model, alpha_n)
    pops = jnp.real(jnp.diagonal(m.evolve(rho0, ts), axis1=-2, axis2=-1))
    return pops @ obs_ops.T


def _alpha_residuals(params, model, rho0, ts, obs_ops, data, inv_s):
    return (data - _predict_obs(model, params["alpha_N"], rho0, ts, obs_ops)) * inv_s


def fit_alpha_n(
    model: OQTModel,
    rho0,
    ens: EnsembleBatches,
    obs_ops,
    *,
    n_batches: int,
    init: float,
    max_steps: int = 100,
    progress: bool = False,
) -> dict:
    r"""Fit :math:`\alpha\mathcal N` of the closed-form master equation to ensemble data.

    Data: ensemble means :math:`\bar O_k(t_j)` of the diagonal observables ``obs_ops``
    at the saving times after ``t = 0``. Model: :math:`\mathrm{Tr}[A_k\rho(t)]` from
    :meth:`~thermojax.models.oqt.OQTModel.evolve` (eq. 6). Residuals are weighted by
    the standard error :math:`s_{jk}` from the pooled within-batch variance (many
    degrees of freedom, so the weights barely depend on the data) and minimised with
    :func:`~thermojax.fit.fit_least_squares`.

    Standard error: the estimate is, to first order,
    :math:`\hat\theta - \theta = a^\top(\bar O - m)` with
    :math:`a = WJ/(J^\top WJ)`, :math:`W = s^{-2}`, :math:`J = \partial m/\partial\theta`;
    its variance is estimated from the ``n_batches`` batch means,
    :math:`\mathrm{Var} = \frac{B}{B-1}\sum_b w_b^2\,[a^\top(\bar O_b - \bar O)]^2`
    (a sandwich/linearised-jackknife estimate that keeps the correlations between
    times and observables of the same trajectories). The curvature error of the fit,
    which assumes independent residuals, is returned beside it.

    Args:
        model: The model the data were generated with (its ``alpha_N`` is replaced).
        rho0: Initial density matrix (eigenbasis), shape ``(d, d)``.
        ens: The ensemble.
        obs_ops: Diagonals of the fitted observables, shape ``(K, d)``; the data are
            the first ``K`` columns of ``ens.obs``.
        n_batches: Number of sub-batches ``B``.
        init: Starting value of the fit.
        max_steps: Optimiser steps.
        progress: tqdm bar.

    Returns:
        JSON-ready dict: ``value``, ``stderr`` (batch means), ``stderr_curvature``,
        ``converged``, ``n_steps``, ``M``, ``n_valid``, ``n_batches``, ``chi2_per_point``.
    """
    obs_ops = jnp.asarray(obs_ops, float)
    k = obs_ops.shape[0]
    x = ens.obs[:, 1:, :k]
    means_b, counts, mean, pooled = batch_means(x, ens.valid, n_batches)
    s = np.sqrt(pooled / counts.sum())
    inv_s = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)  # constant observables drop out
    ts = jnp.asarray(ens.ts[1:])
    args = (model, jnp.asarray(rho0), ts, obs_ops, jnp.asarray(mean), jnp.asarray(inv_s))
    fit = fit_least_squares(
        _alpha_residuals, {"alpha_N": float(init)}, args=args, max_steps=max_steps,
        progress=progress, desc="fit alpha_N",
    )
    value = fit.values["alpha_N"]
    jac = np.asarray(jax.jacfwd(lambda a: _predict_obs(model, a, args[1], ts, obs_ops))(value))
    w = inv_s**2
    a = w * jac / np.sum(w * jac**2)
    u_b = np.sum(a[None] * (means_b - mean[None]), axis=(1, 2))
    stderr = float(_batch_stderr(u_b, counts))
    return {
        "value": float(value),
        "stderr": stderr,
        "stderr_curvature": float(fit.stderr["alpha_N"]),
        "converged": bool(fit.converged),
        "n_steps": int(fit.n_steps),
        "M": ens.n_traj,
        "n_valid": ens.n_valid,
        "n_batches": int(n_batches),
        "chi2_per_point": float(2 * fit.loss / fit.n_data),
    }


def _fit_line(x, y, desc):
    """Least-squares line ``y = a + b x``; returns ``(b, stderr_b, a)``."""
    b0, a0 = np.polyfit(x, y, 1)
    res = lambda p, xx, yy: p["a"] + p["b"] * xx - yy
    f = fit_least_squares(res, {"a": float(a0), "b": float(b0)}, args=(jnp.asarray(x), jnp.asarray(y)),
                          positive=False, desc=desc)
    return float(f.values["b"]), float(f.stderr["b"]), float(f.values["a"])


# ----------------------------------------------------------------------------------
# oqt_relaxation
# ----------------------------------------------------------------------------------


class GOEParams(Section):
    """GOE Hamiltonian (semicircle of radius ``radius``) and the OQT rate."""

    dim: int = Field(64, ge=2, description="Hilbert-space dimension d")
    radius: float = Field(2.0, gt=0, description="semicircle radius (energy)")
    alpha_N: float = Field(1.0, gt=0, description="gamma = alpha N / hbar (1/time)")
    noise: Literal["reduced", "literal"] = "reduced"


class TrajectoryParams(Section):
    """Trajectory ensembles: Euler–Maruyama step, saving grid, picture."""

    dt: float = Field(0.01, gt=0, description="Euler-Maruyama step (time)")
    t_max: float = Field(3.0, gt=0, description="last saving time (time)")
    n_times: int = Field(16, ge=3, description="saving times linspace(0, t_max, n_times)")
    picture: Literal["interaction", "schrodinger"] = "interaction"
    chunk_size: int = Field(500, ge=1, description="trajectories per compiled call")
    n_show: int = Field(3, ge=0, description="single trajectories drawn")

    @model_validator(mode="after")
    def _on_grid(self):
        steps = self.t_max / (self.n_times - 1) / self.dt
        if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ValueError(
                f"t_max / (n_times - 1) = {self.t_max / (self.n_times - 1)!r} must be a positive "
                f"integer multiple of dt = {self.dt!r}"
            )
        return self


class AlphaFitParams(Section):
    """alpha_N fits, one independent ensemble per M; the largest M is the main run."""

    M_values: list[int] = [500, 2000, 8000]
    n_batches: int = Field(50, ge=2, description="sub-batches for the batch-means errors")
    start_ratio: float = Field(0.5, gt=0, description="fit starts at start_ratio * alpha_N")
    max_steps: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _sizes(self):
        if not self.M_values:
            raise ValueError("M_values must list at least one ensemble size")
        for m in self.M_values:
            if m % self.n_batches or m // self.n_batches < 2:
                raise ValueError(
                    f"every M in M_values must be a multiple of n_batches ({self.n_batches}) with "
                    f"at least 2 trajectories per batch, got {m}"
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
    """OQT relaxation of a random pure state of a GOE system (PHYSICS.md §1, §6)."""

    model: GOEParams = GOEParams()
    trajectories: TrajectoryParams = TrajectoryParams()
    fit: AlphaFitParams = AlphaFitParams()
    norm_drift: NormDriftParams = NormDriftParams()


def _shown_states(p0, chi, window) -> list[int]:
    """Up to three eigenstates: the most populated outside the window (relaxes to 0), and
    the most and least populated inside it (relax down/up to 1/|W|)."""
    out, inside = np.flatnonzero(~window), np.flatnonzero(window)
    picks = []
    if out.size:
        picks.append(int(out[np.argmax(p0[out])]))
    picks.append(int(inside[np.argmax(p0[inside])]))
    if inside.size > 1:
        picks.append(int(inside[np.argmin(p0[inside])]))
    return picks


def _sse(model: OQTModel, noise: str, picture: str) -> AbstractSDE:
    sse = model.sse(noise)
    return InteractionPictureSSE(sse) if picture == "interaction" else sse


def _norm_drift_sweep(cfg: RelaxationConfig, model, psi_e, key):
    nd = cfg.norm_drift
    out = {}
    for p_i, picture in enumerate(nd.pictures):
        sde = _sse(model, cfg.model.noise, picture)
        rms, mean_dev, mean_err, max_dev = [], [], [], []
        for j, dt in enumerate(tqdm(nd.dt_values, desc=f"norm drift ({picture})", disable=not cfg.progress)):
            res = simulate_trajectories(
                sde, psi_e, jnp.array([0.0, nd.t_end]), jax.random.fold_in(key, 100 * p_i + j),
                n_traj=nd.n_traj, dt=dt, record_norm=True, progress=False,
            )
            mean, var = float(res.mean["norm"][-1]), float(res.var["norm"][-1])
            rms.append(math.sqrt(var + (mean - 1.0) ** 2))
            mean_dev.append(abs(mean - 1.0))
            mean_err.append(math.sqrt(var / float(res.n)))
            max_dev.append(float(res.norm_drift[-1]))
        slope, slope_err, icpt = _fit_line(np.log(nd.dt_values), np.log(rms), "norm slope")
        out[picture] = {
            "rms": rms, "mean_dev": mean_dev, "mean_err": mean_err, "max_dev": max_dev,
            "slope_rms": slope, "slope_rms_stderr": slope_err, "intercept_rms": icpt,
        }
    return out


def rho_cf_energy(model: OQTModel, rho):
    """Energy :math:`\\mathrm{Tr}(H\\rho)` (unnormalised) of eigenbasis matrices ``(T, d, d)``."""
    return jnp.real(jnp.einsum("tii,i->t", rho, model.energies))


def run_relaxation(cfg: RelaxationConfig) -> ExperimentResult:
    sw = Stopwatch()
    mp, tp, fp = cfg.model, cfg.trajectories, cfg.fit
    k_h, k_psi, k_traj, k_norm = jax.random.split(jax.random.key(cfg.seed), 4)
    with sw("setup"):
        h = goe_matrix(k_h, mp.dim, radius=mp.radius)
        psi0 = random_ket(k_psi, mp.dim)
        model = OQTModel.microcanonical(h, psi0, mp.alpha_N)
        es = model.eigensystem
        psi_e = es.ket_to_eigenbasis(psi0)
        rho0 = ket_to_dm(psi_e)
        energies = np.asarray(model.energies)
        window = np.asarray(model.steady.window)
        chi = np.asarray(model.chi)
        p0 = np.abs(np.asarray(psi_e)) ** 2
        gamma = mp.alpha_N
        ts = jnp.linspace(0.0, tp.t_max, tp.n_times)
        rho_cf = model.evolve(rho0, ts)  # (T, d, d) closed form, eq. 6
        shown = _shown_states(p0, chi, window)
        # rows: fitted observables (P_out, E, E^2), then the shown populations
        fit_ops = np.stack([(~window).astype(float), energies, energies**2])
        obs_ops = np.concatenate([fit_ops, np.eye(mp.dim)[shown]])
        lin = rho_cf - model.chi_matrix()[None]
        if tp.picture == "interaction":
            lin = _rotate(lin, model.energies, ts, -1)
        sde = _sse(model, mp.noise, tp.picture)

    fits_m, main = [], None
    i_main = int(np.argmax(fp.M_values))
    for j, m in enumerate(fp.M_values):
        with sw("trajectories"):
            ens = run_ensemble_batches(
                sde, psi_e, ts, jax.random.fold_in(k_traj, j), n_traj=m, dt=tp.dt,
                obs_ops=obs_ops, lin_ops=lin, picture=tp.picture, chunk_size=tp.chunk_size,
                n_first=tp.n_show, progress=cfg.progress, desc=f"trajectories M={m}",
            )
        with sw("fit_alpha_N"):
            f = fit_alpha_n(model, rho0, ens, fit_ops, n_batches=fp.n_batches,
                            init=fp.start_ratio * gamma, max_steps=fp.max_steps)
        f["true"] = gamma
        f["z"] = (f["value"] - gamma) / f["stderr"]
        fits_m.append(f)
        if j == i_main:
            main = ens

    with sw("analysis"):
        b = fp.n_batches
        means_b, counts, mean_obs, pooled = batch_means(main.obs, main.valid, b)
        obs_err = np.sqrt(pooled / counts.sum())
        d_cf = np.asarray(d_chi(model, rho_cf))
        d0 = float(d_cf[0])
        d_formula = d0 * np.exp(-2 * gamma * np.asarray(ts))
        rho_ens = jnp.asarray(main.rho)
        d_raw = np.asarray(d_chi(model, rho_ens))
        # finite-M bias of Tr[(rho_M - chi)^2]: sample variance of psi psi^dagger / M
        n2 = main.norm2[main.valid]
        purity_ens = np.real(np.einsum("tab,tba->t", main.rho, main.rho))
        floor = (np.mean(n2**2, axis=0) - purity_ens) / (main.n_valid - 1)
        d_hat = d_raw - floor
        # linearised error: D_hat - D = 2 <psi|(rho_cf - chi)|psi> averaged + O(1/M)
        lin_b, lcounts, _, _ = batch_means(main.lin, main.valid, b)
        d_err = 2 * _batch_stderr(lin_b, lcounts)
        # t = 0 is deterministic (all trajectories equal): z over t > 0 only
        z_d = (d_hat[1:] - d_cf[1:]) / d_err[1:]
        diag_cf = diagnostics(model, rho_cf)
        diag_ens = diagnostics(model, rho_ens)
        t_fine = jnp.linspace(0.0, tp.t_max, 121)
        rho_fine = model.evolve(rho0, t_fine)
        diag_fine = diagnostics(model, rho_fine)
        pops_fine = np.asarray(population_closed_form(model, p0, t_fine))
        check_pop = float(np.max(np.abs(
            np.real(np.diagonal(np.asarray(rho_fine), axis1=-2, axis2=-1)) - pops_fine)))
        energy_err = _batch_stderr(means_b[..., 1], counts)

    with sw("norm_drift"):
        nd = _norm_drift_sweep(cfg, model, psi_e, k_norm)

    main_fit = dict(fits_m[i_main])
    ms = np.asarray(fp.M_values, float)
    errs = np.asarray([f["stderr"] for f in fits_m])
    order = np.argsort(ms)
    m_summary = {
        "M": [int(v) for v in ms],
        "value": [f["value"] for f in fits_m],
        "stderr": errs.tolist(),
        "stderr_curvature": [f["stderr_curvature"] for f in fits_m],
        "z": [f["z"] for f in fits_m],
        "stderr_times_sqrtM": (errs * np.sqrt(ms)).tolist(),
        "stderr_ratios_consecutive": (errs[order][:-1] / errs[order][1:]).tolist(),
        "expected_ratios_consecutive": np.sqrt(ms[order][1:] / ms[order][:-1]).tolist(),
    }
    if len(ms) >= 2:
        slope, slope_err, _ = _fit_line(np.log(ms), np.log(errs), "stderr slope")
        m_summary.update(slope_log_stderr_vs_log_M=slope, slope_stderr=slope_err, expected_slope=-0.5)
    t_last = -1
    summary = {
        "dim": mp.dim,
        "gamma": gamma,
        "window_size": int(window.sum()),
        "E0": float(model.steady.energy),
        "V0": float(model.steady.energy_variance),
        "energy_mismatch": float(model.energy_mismatch),
        "energy_mismatch_definition": "Tr(chi H) - E0; dE/dt = gamma (Tr(chi H) - E)",
        "dt": tp.dt,
        "picture": tp.picture,
        "noise": mp.noise,
        "M_main": int(main.n_traj),
        "n_diverged_main": int(main.n_traj - main.n_valid),
        "shown_eigenstates": shown,
        "d_chi": {
            "D0": d0,
            "closed_form_vs_formula_max_rel": float(np.max(np.abs(d_cf / d_formula - 1))),
            "ensemble_max_abs_z": float(np.max(np.abs(z_d))),
            "ensemble_rel_err_at_t_max": float(d_hat[t_last] / d_cf[t_last] - 1),
            "finite_M_floor_at_t_max": float(floor[t_last]),
            "note": "ensemble D_chi corrected by its finite-M bias; z uses the linearised "
                    "batch-means error",
        },
        "energy": {
            "closed_form_t_max": float(diag_cf.energy[t_last]),
            "ensemble_t_max": float(diag_ens.energy[t_last]),
            "ensemble_minus_closed_max_z": float(np.max(np.abs(
                (mean_obs[1:, 1] - np.asarray(rho_cf_energy(model, rho_cf))[1:]) / energy_err[1:]))),
        },
        "entropy": {
            "closed_form_t_max": float(diag_cf.entropy[t_last]),
            "ensemble_t_max": float(diag_ens.entropy[t_last]),
            "chi": float(np.sum(-chi[chi > 0] * np.log(chi[chi > 0]))),
        },
        "population_closed_form_check": check_pop,
        "norm_drift": {
            "t_end": cfg.norm_drift.t_end,
            "expected_slope_rms": 0.5,
            "expected_slope_mean": 1.0,
            **{p: {k: v for k, v in r.items()} for p, r in nd.items()},
        },
        "ensemble_mean_norm_t_max": float(np.mean(main.norm2[main.valid, t_last])),
        "fits": {"alpha_N": {**main_fit, "note": f"main run = largest M ({int(main.n_traj)}); "
                             "stderr from batch means (sandwich), stderr_curvature for comparison"}},
        "alpha_N_vs_M": m_summary,
        "timings_s": sw.seconds,
    }
    arrays = {
        "ts": np.asarray(ts),
        "t_fine": np.asarray(t_fine),
        "energies": energies,
        "chi": chi,
        "p0": p0,
        "shown": np.asarray(shown),
        "obs_mean": mean_obs,
        "obs_stderr": obs_err,
        "single_pops": main.first,
        "pops_fine": pops_fine,
        "d_chi_closed": d_cf,
        "d_chi_formula": d_formula,
        "d_chi_ens_raw": d_raw,
        "d_chi_ens": d_hat,
        "d_chi_ens_err": d_err,
        "d_chi_floor": floor,
        "d_chi_fine": np.asarray(d_chi(model, rho_fine)),
        "energy_ens": np.asarray(diag_ens.energy),
        "energy_ens_err": energy_err,
        "variance_ens": np.asarray(diag_ens.energy_variance),
        "entropy_ens": np.asarray(diag_ens.entropy),
        "energy_fine": np.asarray(diag_fine.energy),
        "variance_fine": np.asarray(diag_fine.energy_variance),
        "entropy_fine": np.asarray(diag_fine.entropy),
        "norm_dt": np.asarray(cfg.norm_drift.dt_values),
        "alpha_M": ms,
        "alpha_value": np.asarray([f["value"] for f in fits_m]),
        "alpha_stderr": errs,
        "alpha_stderr_curvature": np.asarray([f["stderr_curvature"] for f in fits_m]),
    }
    for p, r in nd.items():
        for k in ("rms", "mean_dev", "mean_err", "max_dev"):
            arrays[f"norm_{k}_{p}"] = np.asarray(r[k])
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_relaxation(result: ExperimentResult, cfg: RelaxationConfig):
    a, s = result.arrays, result.summary
    gamma = s["gamma"]
    cap = (f"GOE d={s['dim']}, γ=αN={gamma:g}, |W|={s['window_size']}, M={s['M_main']}, "
           f"dt={s['dt']:g} ({s['picture']} picture, {s['noise']} noise)")
    figs = {}
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
    figs["populations"] = fig

    fig, ax = plot.subplots(width=5.8, height=4.0)
    ax.semilogy(tf, a["d_chi_fine"], color="k", lw=1.6, label="closed form (eq. 6)")
    ax.semilogy(ts, a["d_chi_formula"], "x", color="C3", ms=7, label=r"$D_\chi(0)e^{-2\gamma t}$")
    ax.errorbar(ts, a["d_chi_ens"], yerr=a["d_chi_ens_err"], fmt="o", ms=4, color="C0", capsize=2,
                label="ensemble (finite-M bias removed)")
    ax.semilogy(ts, a["d_chi_ens_raw"], "s", ms=3, mfc="none", color="C0", alpha=0.6,
                label=r"ensemble, raw $\mathrm{Tr}[(\bar\rho-\chi)^2]$")
    ax.semilogy(ts, a["d_chi_floor"], ":", color="0.5", label="finite-M floor")
    ax.set_xlabel(r"$t$")
    ax.set_ylabel(r"$D_\chi(t) = \mathrm{Tr}[(\rho-\chi)^2]$")
    ax.legend(fontsize=8)
    plot.caption(fig, cap)
    figs["d_chi"] = fig

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
        ax.set_xlabel(r"$t$")
    plot.caption(fig, cap)
    figs["energy_entropy"] = fig

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
    figs["norm_drift"] = fig

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
    figs["alpha_n_fit"] = fig
    return figs


register(
    "oqt_relaxation", RelaxationConfig, run_relaxation, plot_relaxation,
    "OQT on a GOE system: SSE ensemble vs closed-form master equation, norm drift, alpha_N fit",
)


# ----------------------------------------------------------------------------------
# oqt_chain
# ----------------------------------------------------------------------------------


class ChainOQTParams(Section):
    """OQT rates for the chain comparison."""

    alpha_N_over_kappa: float = Field(
        1.0, gt=0, description="alpha_N of the OQT-on-the-full-chain curves, in units of kappa"
    )


class ChainFitParams(Section):
    """Effective alpha_N: fitted to the mean exact P_mu(t) of ``n_states`` random states."""

    n_states: int = Field(8, ge=2)
    start_ratio: float = Field(1.0, gt=0, description="fit starts at start_ratio * kappa")
    max_steps: int = Field(100, ge=1)


class ChainConfig(ExperimentConfig):
    """OQT against exact and HAM relaxation of the heat chain (PHYSICS.md §1, §2, §6)."""

    model: ChainParams = ChainParams(n_levels=80, coupling=3.2e-4)
    times: TimeGrid = TimeGrid(t_max_kappa=4.0, n_times=61)
    initial_subunit: int = Field(1, ge=1, description="1-based")
    oqt: ChainOQTParams = ChainOQTParams()
    fit: ChainFitParams = ChainFitParams()

    @model_validator(mode="after")
    def _subunit(self):
        if self.initial_subunit > self.model.n_subunits:
            raise ValueError(
                f"key `initial_subunit` ({self.initial_subunit}) exceeds model.n_subunits "
                f"({self.model.n_subunits})"
            )
        return self


def _subunit_projectors(model: OQTModel, n_sub: int, n_lev: int):
    """Subunit projectors in the model's eigenbasis, shape ``(N, d, d)``."""
    eye = jnp.eye(n_sub * n_lev).reshape(n_sub * n_lev, n_sub, n_lev)
    proj = jnp.einsum("aml,bml->mab", eye, eye).astype(complex)
    return model.eigensystem.to_eigenbasis(proj)


def _subunit_pops_closed(model: OQTModel, proj_diag, p0_eig, ts):
    """Subunit populations of the closed form for a model whose eigenbasis is the local
    basis (bands): ``P_mu(t) = sum_i p_(mu,i)(t)``, shape ``(T, N)``."""
    return population_closed_form(model, p0_eig, ts) @ proj_diag.T


def _chain_residuals(params, model, proj_diag, p0_eig, ts, data):
    m = eqx.tree_at(lambda q: q.alpha_N, model, params["alpha_N"])
    return _subunit_pops_closed(m, proj_diag, p0_eig, ts) - data


def run_chain(cfg: ChainConfig) -> ExperimentResult:
    r"""Exact, HAM and OQT subunit populations; effective :math:`\alpha\mathcal N`.

    OQT is applied in two ways. (i) On the uncoupled bands :math:`H_0 = \sum_{\mu i}
    \varepsilon_i|\mu,i\rangle\langle\mu,i|` (the chain without :math:`\lambda`): energy
    moves between subunits only through OQT, towards the microcanonical :math:`\chi`
    of :math:`H_0`, whose degenerate levels span all subunits, so
    :math:`P_\mu(\chi) = 1/N`; the closed form is
    :math:`P_\mu(t) = 1/N + e^{-\gamma t}(P_\mu(0) - 1/N)`. Its :math:`\gamma` fitted to
    the exact :math:`P_\mu(t)` is the *effective* :math:`\alpha\mathcal N` — the OQT rate
    that makes the chain look thermalized as fast as it really does. (With the full
    chain Hamiltonian the OQT closed form contains the exact dynamics itself, so the
    best fit would trivially be :math:`\gamma = 0`.) (ii) On the full chain with
    :math:`\gamma` = ``alpha_N_over_kappa`` × κ, for the figure: OQT on top of the
    exact dynamics.
    """
    sw = Stopwatch()
    k_chain, k_state = jax.random.split(jax.random.key(cfg.seed))
    chain: HeatChain = cfg.model.build(k_chain)
    n_sub, n_lev = chain.n_subunits, chain.n_levels
    kappa = float(chain.kappa)
    ts = cfg.times.times(kappa)
    mu0 = cfg.initial_subunit - 1
    psis = chain.local_state(random_band_state(k_state, n_lev, (cfg.fit.n_states,)), mu0)
    psi0 = psis[0]
    p0 = chain.populations(psi0)

    with sw("exact_evolution"):
        prop = chain.propagator()
        p_all = np.asarray(prop.evolve(psis, ts, chain.populations).ys)  # (R, T, N)
    p_exact, p_mean = p_all[0], p_all.mean(0)
    p_ham = np.asarray(chain.ham_populations(p0, ts))

    with sw("oqt_bands"):
        h0 = jnp.diag(chain.diagonal()).astype(complex)
        bands = [OQTModel.microcanonical(h0, psi, kappa) for psi in psis]
        proj_diag = jnp.real(jnp.diagonal(_subunit_projectors(bands[0], n_sub, n_lev), axis1=-2, axis2=-1))
        p0_eig = [jnp.abs(b.eigensystem.ket_to_eigenbasis(psi)) ** 2 for b, psi in zip(bands, psis)]
        p_chi = np.asarray(bands[0].chi @ proj_diag.T)
        # the population formula is the diagonal of OQTModel.evolve (checked here)
        rho0_b = ket_to_dm(bands[0].eigensystem.ket_to_eigenbasis(psi0))
        full = bands[0].evolve(rho0_b, ts[::10])
        pops_full = jnp.real(jnp.diagonal(full, axis1=-2, axis2=-1)) @ proj_diag.T
        formula = _subunit_pops_closed(bands[0], proj_diag, p0_eig[0], ts[::10])
        check = float(jnp.max(jnp.abs(pops_full - formula)))

    def fit(model, p0e, data, progress):
        return fit_least_squares(
            _chain_residuals, {"alpha_N": cfg.fit.start_ratio * kappa},
            args=(model, proj_diag, p0e, ts, jnp.asarray(data)),
            max_steps=cfg.fit.max_steps, progress=progress, desc="fit effective alpha_N",
        )

    with sw("fit"):
        f_mean = fit(bands[0], jnp.mean(jnp.stack(p0_eig), 0), p_mean, cfg.progress)
        singles = np.array([float(fit(b, pe, p, False).values["alpha_N"])
                            for b, pe, p in zip(bands, p0_eig, p_all)])
        f_ham = fit(bands[0], p0_eig[0], p_ham, False)
    g_eff = float(f_mean.values["alpha_N"])
    g_err = float(singles.std(ddof=1) / np.sqrt(len(singles)))
    g_ham = float(f_ham.values["alpha_N"])
    m_eff = eqx.tree_at(lambda q: q.alpha_N, bands[0], jnp.asarray(g_eff))
    p_oqt_bands = np.asarray(_subunit_pops_closed(m_eff, proj_diag, p0_eig[0], ts))

    with sw("oqt_full_chain"):
        gamma_full = cfg.oqt.alpha_N_over_kappa * kappa
        # reuse the propagator's eigendecomposition (an Eigensystem of the same H)
        full_model = OQTModel.microcanonical((prop.energies, prop.basis), psi0, gamma_full)
        proj_full = _subunit_projectors(full_model, n_sub, n_lev)
        rho0_f = ket_to_dm(full_model.eigensystem.ket_to_eigenbasis(psi0))
        rho_t = full_model.evolve(rho0_f, ts)
        p_oqt_full = np.asarray(jnp.real(jnp.einsum("mab,tba->tm", proj_full, rho_t)))
        p_chi_full = np.asarray(jnp.real(jnp.einsum("mab,ba->m", proj_full, full_model.chi_matrix())))

    rms = lambda x, y: float(np.sqrt(np.mean((x - y) ** 2)))
    summary = {
        "kappa_theory": kappa,
        "validity_eq29": chain.validity(),
        "P_chi_bands": p_chi.tolist(),
        "P_chi_full_chain": p_chi_full.tolist(),
        "energy_mismatch_bands": float(bands[0].energy_mismatch),
        "energy_mismatch_full_chain": float(full_model.energy_mismatch),
        "effective_alpha_N": g_eff,
        "effective_alpha_N_over_kappa": g_eff / kappa,
        "effective_alpha_N_from_HAM_over_kappa": g_ham / kappa,
        "rms_dev_P_oqt_vs_exact": rms(p_oqt_bands, p_exact),
        "rms_dev_P_ham_vs_exact": rms(p_ham, p_exact),
        "population_closed_form_check": check,
        "alpha_N_full_chain": gamma_full,
        "fits": {
            "alpha_N_effective": {
                "value": g_eff, "stderr": g_err, "theory": kappa,
                "ratio_to_kappa": g_eff / kappa, "ratio_stderr": g_err / kappa,
                "converged": bool(f_mean.converged),
                "stderr_curvature": float(f_mean.stderr["alpha_N"]),
                "single_state_values": singles.tolist(),
                "from_HAM_curves": g_ham,
                "note": "OQT on the uncoupled bands fitted to the mean exact P_mu(t) of "
                        f"{len(singles)} random states; stderr = std of single-state fits / "
                        "sqrt(states); 'theory' is the golden-rule kappa it is compared with",
            }
        },
        "timings_s": sw.seconds,
    }
    arrays = {
        "ts": np.asarray(ts), "p_exact": p_exact, "p_exact_mean": p_mean, "p_ham": p_ham,
        "p_oqt_bands": p_oqt_bands, "p_oqt_full": p_oqt_full, "effective_single": singles,
        "loss_history": np.asarray(f_mean.loss_history),
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_chain(result: ExperimentResult, cfg: ChainConfig):
    a, s = result.arrays, result.summary
    kappa = s["kappa_theory"]
    tk = a["ts"] * kappa
    fig, axes = plot.subplots(1, 2, width=5.2, height=4.0, sharey=True)
    ax = axes[0]
    for mu in range(a["p_exact"].shape[1]):
        c = f"C{mu}"
        ax.plot(tk, a["p_exact"][:, mu], "o", ms=3, color=c, label=f"exact $P_{mu + 1}$")
        ax.plot(tk, a["p_ham"][:, mu], "-", lw=1.5, color=c)
        ax.plot(tk, a["p_oqt_bands"][:, mu], "--", lw=1.5, color=c)
    ax.set_title(f"dots exact, — HAM (κ), -- OQT on bands, γ_eff = {s['effective_alpha_N_over_kappa']:.3f} κ",
                 fontsize=8)
    ax.set_xlabel(r"$\kappa t$")
    ax.set_ylabel(r"$P_\mu(t)$")
    ax.legend(fontsize=8)
    ax = axes[1]
    for mu in range(a["p_exact"].shape[1]):
        c = f"C{mu}"
        ax.plot(tk, a["p_exact"][:, mu], "o", ms=3, color=c)
        ax.plot(tk, a["p_oqt_full"][:, mu], "-", lw=1.5, color=c)
    ax.set_title(f"dots exact, — OQT on the full chain, αN = {cfg.oqt.alpha_N_over_kappa:g} κ", fontsize=8)
    ax.set_xlabel(r"$\kappa t$")
    m = cfg.model
    f = s["fits"]["alpha_N_effective"]
    plot.caption(fig, f"N={m.n_subunits}, n={m.n_levels}, δε={m.band_width}, λ={m.coupling:g}, "
                      f"κ={kappa:.3g};  γ_eff/κ = {f['ratio_to_kappa']:.3f} ± {f['ratio_stderr']:.3f} "
                      f"(HAM curves: {s['effective_alpha_N_from_HAM_over_kappa']:.3f})")
    return {"populations": fig}


register(
    "oqt_chain", ChainConfig, run_chain, plot_chain,
    "OQT vs exact and HAM relaxation of the heat chain; effective alpha_N beside kappa",
)
