r"""Statistics shared by every experiment: batch means, goodness of fit, straight-line fits.

Ensemble observables at different times come from the same trajectories and are
correlated, so an error bar that assumes independent residuals is too small. The
honest errors here are batch means: split the ensemble into `B` batches of
trajectories, take each batch's mean, and use the spread of those means.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .fit import fit_least_squares

__all__ = ["batch_means", "batch_stderr", "chi_square_test", "fit_line", "sandwich_stderr"]


def batch_means(x: np.ndarray, valid: np.ndarray, n_batches: int):
    r"""Batch means of per-trajectory data, diverged trajectories left out.

    Trajectory `i` belongs to batch `i // (M // n_batches)` (a remainder of
    `M mod n_batches` trajectories is dropped).

    Args:
        x: Per-trajectory data, shape `(M, ...)`.
        valid: Which trajectories count, shape `(M,)`.
        n_batches: Number of batches `B` (>= 2).

    Returns:
        `(means_b, counts_b, mean, pooled_var)`: batch means `(B, ...)`, valid
        trajectories per batch `(B,)`, the overall mean `(...)` and the pooled
        within-batch variance of one trajectory `(...)`.

    Raises:
        ValueError: If `n_batches < 2` or exceeds `M`.

    Example:
        >>> x = np.arange(8.0)
        >>> mb, cb, m, _ = batch_means(x, np.ones(8, bool), 2)
        >>> mb.tolist(), cb.tolist(), float(m)
        ([1.5, 5.5], [4, 4], 3.5)
    """
    x = np.asarray(x)
    valid = np.asarray(valid, bool)
    m = x.shape[0]
    if not 2 <= n_batches <= m:
        raise ValueError(f"Argument `n_batches` must be in [2, {m}], got {n_batches}.")
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


def batch_stderr(values_b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    r"""Standard error of a count-weighted mean of batch values `(B, ...)`:
    $\sqrt{\frac{B}{B-1}\sum_b w_b^2(v_b - \bar v)^2}$, $w_b = n_b/\sum n$.

    Example:
        >>> round(float(batch_stderr(np.array([1.0, 3.0]), np.array([5, 5]))), 6)
        1.0
    """
    values_b = np.asarray(values_b)
    b = values_b.shape[0]
    w = (np.asarray(counts) / np.sum(counts)).reshape((b,) + (1,) * (values_b.ndim - 1))
    mean = (w * values_b).sum(0)
    return np.sqrt((w**2 * (values_b - mean) ** 2).sum(0) * b / (b - 1))


def chi_square_test(counts, probabilities) -> dict[str, float]:
    r"""Pearson chi-square goodness of fit of `counts` against `probabilities`.

    $$
    \chi^2 = \sum_k \frac{(O_k - np_k)^2}{np_k},\qquad p = Q\big(\tfrac{\nu}{2}, \tfrac{\chi^2}{2}\big),
    \quad \nu = K' - 1,
    $$

    with $n = \sum_k O_k$, $K'$ the bins with $p_k > 0$ and $Q$ the regularised upper
    incomplete gamma function (the chi-square survival function). A count in a bin of
    probability 0 gives $\chi^2 = \infty$, $p = 0$. The asymptotic distribution needs
    expected counts $np_k \gtrsim 5$; `min_expected` is returned so a caller can check.

    Args:
        counts: Observed counts, shape `(K,)`, nonnegative.
        probabilities: Expected probabilities, shape `(K,)`, nonnegative, summing to 1
            within 1e-8.

    Returns:
        `{"chi2", "dof", "p_value", "n", "min_expected"}`.

    Raises:
        ValueError: On mismatched shapes, negative counts, probabilities that are
            negative or do not sum to 1, fewer than two populated bins, or no counts.

    Example:
        >>> r = chi_square_test([48, 52], [0.5, 0.5])
        >>> r["dof"], round(r["chi2"], 3), r["p_value"] > 0.5
        (1, 0.16, True)
    """
    o = np.asarray(counts, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if o.ndim != 1 or o.shape != p.shape:
        raise ValueError(f"Arguments `counts` {o.shape} and `probabilities` {p.shape} must be 1-D of one length.")
    if np.any(o < 0) or not np.all(np.isfinite(o)):
        raise ValueError(f"Argument `counts` must be finite and >= 0, got {o}.")
    if np.any(p < 0) or abs(p.sum() - 1.0) > 1e-8:
        raise ValueError(f"Argument `probabilities` must be >= 0 and sum to 1, got {p}.")
    n = o.sum()
    if n <= 0:
        raise ValueError("Argument `counts` must contain at least one observation.")
    live = p > 0
    dof = int(live.sum()) - 1
    if dof < 1:
        raise ValueError("chi_square_test needs at least two bins with probability > 0.")
    if np.any(o[~live] > 0):
        chi2 = np.inf
    else:
        e = n * p[live]
        chi2 = float(np.sum((o[live] - e) ** 2 / e))
    pval = 0.0 if not np.isfinite(chi2) else float(jax.scipy.special.gammaincc(dof / 2.0, chi2 / 2.0))
    return {"chi2": float(chi2), "dof": dof, "p_value": pval, "n": int(n), "min_expected": float(n * p[live].min())}


def fit_line(x, y, sigma=None) -> dict[str, float]:
    r"""Least-squares line $y = a + b x$ (optax through `fit_least_squares`).

    Args:
        x: Abscissae, shape `(n,)`.
        y: Ordinates, shape `(n,)`.
        sigma: Optional standard errors of `y` (weights $1/\sigma$); without them the
            residual scatter sets the error.

    Returns:
        `{"slope", "slope_stderr", "intercept", "intercept_stderr"}`.

    Example:
        >>> r = fit_line(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
        >>> round(r["slope"], 8), round(r["intercept"], 8)
        (2.0, 1.0)
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = np.ones_like(y) if sigma is None else 1.0 / np.asarray(sigma, float)
    b0, a0 = np.polyfit(x, y, 1, w=w)
    res = lambda p, xx, yy, ww: (p["a"] + p["b"] * xx - yy) * ww
    f = fit_least_squares(
        res, {"a": float(a0), "b": float(b0)}, args=(jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)), positive=()
    )
    return {
        "slope": float(f.values["b"]),
        "slope_stderr": float(f.stderr["b"]),
        "intercept": float(f.values["a"]),
        "intercept_stderr": float(f.stderr["a"]),
    }


def sandwich_stderr(jacobian, weights, means_b, counts) -> np.ndarray:
    r"""Batch-means (sandwich, linearised jackknife) standard errors of a weighted
    least-squares fit to ensemble means.

    To first order the estimate is $\hat\theta - \theta = A(\bar O - m)$ with
    $A = (J^\top WJ)^{-1}J^\top W$; its covariance is estimated from the batch means,
    $\frac{B}{B-1}\sum_b w_b^2\,A(\bar O_b - \bar O)(\bar O_b - \bar O)^\top A^\top$,
    which keeps the correlations between data points from the same trajectories that
    the curvature error of the fit ignores.

    Args:
        jacobian: $\partial m/\partial\theta$ at the optimum, shape `(n_data, p)` (or
            `(n_data,)` for one parameter).
        weights: $W$, the weights of the squared residuals, shape `(n_data,)`.
        means_b: Batch means of the data, shape `(B, n_data)`.
        counts: Trajectories per batch, shape `(B,)`.

    Returns:
        Standard errors, shape `(p,)`.

    Example:
        >>> # the mean of the data itself (J = 1): the batch-means error of the mean
        >>> se = sandwich_stderr(np.ones((1, 1)), np.ones(1), np.array([[1.0], [3.0]]), np.array([5, 5]))
        >>> round(float(se[0]), 6)
        1.0
    """
    jac = np.asarray(jacobian, float)
    jac = jac[:, None] if jac.ndim == 1 else jac
    w = np.asarray(weights, float)
    means_b = np.asarray(means_b, float)
    counts = np.asarray(counts, float)
    a = np.linalg.solve(jac.T @ (w[:, None] * jac), (w[:, None] * jac).T)  # (p, n_data)
    wb = counts / counts.sum()
    mean = (wb[:, None] * means_b).sum(0)
    u = (means_b - mean) @ a.T  # (B, p)
    b = means_b.shape[0]
    cov = (wb[:, None, None] ** 2 * u[:, :, None] * u[:, None, :]).sum(0) * b / (b - 1)
    return np.sqrt(np.diag(cov))
