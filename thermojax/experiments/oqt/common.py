r"""Pieces the OQT experiments share: the SSE in either picture, and the $\alpha\mathcal N$ fit
with batch-means errors.

**Interaction picture.** Euler–Maruyama on the SSE multiplies each eigenbasis
population by $|1 - iE_\mu dt|^2 = 1 + E_\mu^2dt^2$ per step, an ensemble gain
$dt\,E_\mu^2$ per unit time that slows the apparent decay of the populations outside
the window. Measured at `d = 16`, `dt = 0.01`, $\gamma = 1$, `M = 2000`: the fitted rate
came out $0.973 \pm 0.005$ (5 standard errors low). `InteractionPictureSSE` integrates
the same SSE for $\phi = e^{iHt}\psi$ (exact change of variables); its scheme has no
$E^2dt^2$ term and the same data gave $0.991 \pm 0.005$; the remaining bias is
$O(\gamma^2 dt)$.

**Batch means.** Ensemble observables at different times come from the same
trajectories and are correlated, so the curvature error of a least-squares fit is far
too small (5–20x at `d = 16…64`). The ensemble is split into `n_batches` batches; the
fit's weights are the pooled within-batch standard errors and its error is the
sandwich estimate over the batch means (`thermojax.stats.sandwich_stderr`).
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...fit import fit_least_squares
from ...models.oqt import InteractionPictureSSE, OQTModel
from ...stats import sandwich_stderr
from ...trajectories import AbstractSDE

__all__ = ["sse_for", "to_schrodinger", "pooled_variance", "fit_alpha_n"]


def sse_for(model: OQTModel, noise: str, picture: Literal["interaction", "schrodinger"]) -> AbstractSDE:
    """The model's SSE in the requested picture."""
    sse = model.sse(noise)
    return InteractionPictureSSE(sse) if picture == "interaction" else sse


def to_schrodinger(rho, energies, ts, sign: int = 1):
    r"""$\rho_{ab}\,e^{-i\,\mathrm{sign}\,(E_a-E_b)t}$ for `rho` of shape `(T, d, d)`:
    `sign = +1` takes an interaction-picture matrix to the Schrödinger picture."""
    omega = energies[:, None] - energies[None, :]
    return rho * jnp.exp(-1j * sign * jnp.asarray(ts)[:, None, None] * omega[None])


def pooled_variance(ens, name: str) -> np.ndarray:
    """Pooled within-batch variance of one trajectory's value of observable `name`,
    from the ensemble's total spread minus the spread of its batch means."""
    n = float(ens.n)
    mean = np.asarray(ens.mean[name])
    mb = np.asarray(ens.batch_mean[name])
    nb = np.asarray(ens.batch_n).reshape((-1,) + (1,) * mean.ndim)
    between = (nb * (mb - mean) ** 2).sum(0)
    pooled = (np.asarray(ens.var[name]) * (n - 1) - between) / (n - mb.shape[0])
    return np.clip(pooled, 0.0, None)  # rounding can leave -1e-18 where every trajectory agrees (t = 0)


def _predict_obs(model, alpha_n, rho0, ts, obs_ops):
    m = eqx.tree_at(lambda q: q.alpha_N, model, alpha_n)
    pops = jnp.real(jnp.diagonal(m.evolve(rho0, ts).states, axis1=-2, axis2=-1))
    return pops @ obs_ops.T


def _alpha_residuals(params, model, rho0, ts, obs_ops, data, inv_s):
    return (data - _predict_obs(model, params["alpha_N"], rho0, ts, obs_ops)) * inv_s


def fit_alpha_n(model: OQTModel, rho0, ens, ts, obs_ops, *, init: float, max_steps: int = 100) -> dict:
    r"""Fit $\alpha\mathcal N$ of the closed-form master equation to ensemble means.

    Data: the ensemble means of the diagonal observables `obs_ops` (first columns of
    the observable `"obs"`) at the save times after `t = 0`, weighted by their pooled
    within-batch standard errors. Model: `OQTModel.evolve` (eq. 6). Error: batch means
    (sandwich); the curvature error of the fit, which assumes independent residuals, is
    returned beside it.

    Returns:
        JSON-ready dict: `value`, `stderr`, `stderr_curvature`, `converged`, `n_steps`,
        `M`, `n_valid`, `n_batches`, `chi2_per_point`.
    """
    obs_ops = jnp.asarray(obs_ops, float)
    k = obs_ops.shape[0]
    mean = np.asarray(ens.mean["obs"])[1:, :k]
    means_b = np.asarray(ens.batch_mean["obs"])[:, 1:, :k]
    counts = np.asarray(ens.batch_n)
    s = np.sqrt(pooled_variance(ens, "obs")[1:, :k] / counts.sum())
    inv_s = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)  # constant observables drop out
    t_fit = jnp.asarray(ts[1:])
    args = (model, jnp.asarray(rho0), t_fit, obs_ops, jnp.asarray(mean), jnp.asarray(inv_s))
    fit = fit_least_squares(
        _alpha_residuals, {"alpha_N": float(init)}, args=args, positive=["alpha_N"], max_steps=max_steps
    )
    value = fit.values["alpha_N"]
    jac = np.asarray(jax.jacfwd(lambda a: _predict_obs(model, a, args[1], t_fit, obs_ops))(value))
    stderr = sandwich_stderr(jac.reshape(-1), (inv_s**2).reshape(-1), means_b.reshape(len(counts), -1), counts)
    out = fit.as_dict()["alpha_N"]
    return {
        **out, "stderr": float(stderr[0]), "stderr_kind": "batch means (sandwich)",
        "stderr_curvature": out["stderr"], "M": int(ens.ntraj), "n_valid": int(ens.n),
        "n_batches": int(len(counts)), "chi2_per_point": float(2 * fit.loss / fit.n_data),
    }
