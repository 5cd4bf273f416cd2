r"""Least-squares fits of named model constants with optax, with standard errors.

The user supplies a residual function `r(params, *args)` of a dict of named
scalar constants. The fitter minimises

$$
\mathcal{L}(\theta) = \tfrac12 \sum_i r_i(\theta)^2
$$

with `optax.lbfgs` (zoom line search). Constants listed as `positive` are fitted
as `theta = log(value)`, so they stay positive and are rescaled to O(1).

Standard errors come from the curvature of the loss at the optimum (the usual
least-squares covariance, valid for independent residuals of equal variance):

$$
\mathrm{Cov}(\theta) = s^2\, [J^\top J]^{-1},
\qquad s^2 = \frac{\sum_i r_i^2}{m - p},
$$

propagated to the natural parameters by the delta method (`value * stderr(log value)`
for positive constants). Residuals that are correlated (e.g. the fluctuations of a
deterministic but chaotic evolution) make these errors optimistic; say so when quoting.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from tqdm.auto import tqdm


class FitResult(eqx.Module):
    """Outcome of `fit_least_squares`.

    Attributes:
        names: Names of the fitted constants, in order.
        values: Best-fit values, dict name -> scalar.
        stderr: Standard errors, dict name -> scalar (NaN if the curvature is singular
            or there are no more residuals than constants).
        covariance: Covariance of the natural parameters, shape `(p, p)`.
        loss: Final loss `0.5 * sum(r**2)`.
        loss_history: Loss at each optimiser step, shape `(steps,)`.
        converged: Whether a convergence criterion was met before `max_steps`.
        n_steps: Optimiser steps taken.
        n_data: Number of residuals `m`.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    values: dict[str, Array]
    stderr: dict[str, Array]
    covariance: Float[Array, "p p"]
    loss: Array
    loss_history: Float[Array, " steps"]
    converged: bool = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)
    n_data: int = eqx.field(static=True)

    def as_dict(self, true: dict[str, float] | None = None, key: str = "true", *, history: bool = False) -> dict:
        """JSON-ready summary, one entry per constant: `{"value", "stderr",
        "stderr_kind": "curvature", "converged", "n_steps", "loss", "n_data"}` (+ `key`
        with the reference value if given in `true`, + `"loss_history"` if `history`).
        This is what experiments put in `summary["fits"]`.

        Example:
            >>> import jax.numpy as jnp
            >>> t = jnp.linspace(0, 1, 5)
            >>> f = fit_least_squares(lambda p, y: p["k"] * t - y, {"k": 1.0}, args=(2.0 * t,))
            >>> d = f.as_dict(true={"k": 2.0})["k"]
            >>> round(d["value"], 6), d["true"], d["converged"]
            (2.0, 2.0, True)
        """
        out: dict = {}
        for n in self.names:
            entry = {"value": float(self.values[n]), "stderr": float(self.stderr[n]), "stderr_kind": "curvature"}
            if true is not None and n in true:
                entry[key] = float(true[n])
            entry.update(converged=bool(self.converged), n_steps=int(self.n_steps), loss=float(self.loss),
                         n_data=int(self.n_data))
            if history:
                entry["loss_history"] = np.asarray(self.loss_history).tolist()
            out[n] = entry
        return out


class _Problem(eqx.Module):
    """Residual function and parameter names: static, so compiled steps are reused
    across fits that share the same residual function object."""

    residuals: Callable = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)

    def unpack(self, theta, is_log):
        vals = jnp.where(is_log, jnp.exp(theta), theta)
        return {n: vals[i] for i, n in enumerate(self.names)}

    def sumsq(self, theta, is_log, args):
        r = jnp.ravel(self.residuals(self.unpack(theta, is_log), *args))
        return 0.5 * jnp.sum(r**2)


_DEFAULT_OPTIMIZER = optax.lbfgs()  # one instance, so compiled steps are cached


@eqx.filter_jit
def _step(problem, opt, theta, state, is_log, scale, args):
    fn = lambda th: problem.sumsq(th, is_log, args) / scale
    value, grad = optax.value_and_grad_from_state(fn)(theta, state=state)
    updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=fn)
    return optax.apply_updates(theta, updates), state, value, grad


@eqx.filter_jit
def _residual_jacobian(problem, theta, is_log, args):
    fn = lambda th: jnp.ravel(problem.residuals(problem.unpack(th, is_log), *args))
    return fn(theta), jax.jacfwd(fn)(theta)


def _n_data(problem, theta, is_log, args) -> int:
    r = jax.eval_shape(lambda th: jnp.ravel(problem.residuals(problem.unpack(th, is_log), *args)), theta)
    return int(r.shape[0])


def _curvature_errors(problem, theta, is_log, args):
    r"""`(loss, covariance, stderr)` at the optimum from the Gauss-Newton curvature
    $J^\top J$ of $\tfrac12\sum r^2$ (p forward-mode passes; exact for zero residuals):
    the covariance in fitted coordinates, then the natural ones by the delta method.
    No residual degrees of freedom gives NaN errors, never a fake zero."""
    r_opt, jac_r = _residual_jacobian(problem, theta, is_log, args)
    final = 0.5 * float(jnp.sum(r_opt**2))
    m, p = int(r_opt.size), theta.shape[0]
    s2 = 2.0 * final / (m - p) if m > p else np.nan
    try:
        cov_theta = s2 * np.linalg.inv(np.asarray(jac_r.T @ jac_r))
    except np.linalg.LinAlgError:
        cov_theta = np.full((p, p), np.nan)
    vals = np.asarray(jnp.where(is_log, jnp.exp(theta), theta))
    jac = np.diag(np.where(np.asarray(is_log), vals, 1.0))  # d value / d theta
    cov = jac @ cov_theta @ jac.T
    err = np.where(np.diag(cov) < 0, np.nan, np.sqrt(np.clip(np.diag(cov), 0, None)))
    return final, cov, err


def fit_least_squares(
    residuals: Callable[..., Array],
    init: dict[str, float],
    *,
    args: tuple = (),
    positive: Sequence[str] | bool = (),
    optimizer: optax.GradientTransformationExtraArgs | None = None,
    max_steps: int = 200,
    gtol: float = 1e-8,
    ftol: float = 1e-12,
    atol: float = 1e-14,
    progress: bool = False,
    desc: str = "fit",
) -> FitResult:
    r"""Fit named scalar constants by least squares with optax.

    Args:
        residuals: `residuals(params, *args) -> r` with `params` a dict
            name -> scalar; `r` any shape (flattened), real. Must be JAX-traceable.
        init: Starting values, dict name -> float.
        args: Extra arguments passed to `residuals` (arrays are traced, not baked in).
        positive: Names of the constants that must stay positive; they are fitted in
            log space. Default: none (every constant signed). `True`: all.
        optimizer: An optax optimiser supporting `value_fn` (default
            `optax.lbfgs()`, which line-searches).
        max_steps: Maximum optimiser steps.
        gtol: Stop when the largest gradient component of the loss normalised by its
            initial value, in fitted (log) coordinates, falls below `gtol`.
        atol: Stop when the loss normalised by its initial value falls below `atol`
            (zero-residual problems, e.g. noise-free data, where the gradient test
            would otherwise chase round-off).
        ftol: Stop when the relative decrease of the loss in a step is below `ftol`
            for three consecutive steps.
        progress: Show a tqdm counter of the steps taken (no ETA: the number of steps a
            fit needs is not known in advance), with the loss in the postfix.
        desc: Label of the progress bar.

    Returns:
        A `FitResult`.

    Raises:
        ValueError: If `init` is empty, a positive constant starts <= 0, a name in
            `positive` is not in `init`, or the residuals are not finite at `init`.
        TypeError: If the residuals are complex (split them into real and imaginary
            parts, e.g. `jnp.concatenate([r.real, r.imag])`).

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0, 1, 20)
        >>> res = lambda p, y: p["k"] * t - y
        >>> fit_least_squares(res, {"k": 1.0}, args=(2.0 * t,)).values["k"]  # doctest: +ELLIPSIS
        Array(2..., dtype=float64)
    """
    names = tuple(init)
    if not names:
        raise ValueError("Argument `init` must name at least one constant to fit.")
    if positive is True:
        pos = set(names)
    elif positive is False:
        pos = set()
    else:
        pos = set(positive)
        unknown = pos - set(names)
        if unknown:
            raise ValueError(f"Argument `positive` names {sorted(unknown)} not in `init` {names}.")
    for n in pos:
        if not float(init[n]) > 0:
            raise ValueError(f"Positive constant `{n}` must start > 0, got {init[n]!r}.")
    is_log = jnp.array([n in pos for n in names])
    theta0 = jnp.array(
        [np.log(float(init[n])) if n in pos else float(init[n]) for n in names], dtype=float
    )
    problem = _Problem(residuals, names)
    r0 = jax.eval_shape(lambda th: problem.residuals(problem.unpack(th, is_log), *args), theta0)
    if any(jnp.iscomplexobj(jnp.zeros((), leaf.dtype)) for leaf in jax.tree.leaves(r0)):
        raise TypeError(
            f"Argument `residuals` returns complex values (dtype {jax.tree.leaves(r0)[0].dtype}); least squares "
            "needs real residuals: return jnp.concatenate([r.real, r.imag]) instead."
        )
    loss0 = float(problem.sumsq(theta0, is_log, args))
    if not np.isfinite(loss0):
        raise ValueError(f"Residuals are not finite at the initial values {init}.")
    scale = jnp.asarray(loss0 if loss0 > 0 else 1.0)
    opt = _DEFAULT_OPTIMIZER if optimizer is None else optimizer

    # strong-typed state: optax's line-search info starts weak-typed and turns strong after
    # one update, which made `_step` compile twice per fit (2-3 s each on CPU)
    state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), opt.init(theta0))
    theta = theta0
    history, converged, flat = [], False, 0
    bar = tqdm(total=None, desc=desc, unit="step", disable=not progress, leave=False)
    n_steps = 0
    for n_steps in range(1, max_steps + 1):
        new_theta, state, value, grad = _step(problem, opt, theta, state, is_log, scale, args)
        value = float(value)
        if not np.all(np.isfinite(np.asarray(new_theta))):
            break  # keep the last finite iterate; reported as not converged
        theta = new_theta
        history.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value * float(scale):.3e}")
        if float(jnp.max(jnp.abs(grad))) < gtol or value < atol:
            converged = True
            break
        if len(history) > 1 and history[-2] - value <= ftol * abs(history[-2]):
            flat += 1
            if flat >= 3:
                converged = True
                break
        else:
            flat = 0
    bar.close()

    final, cov, err = _curvature_errors(problem, theta, is_log, args)
    vals = np.asarray(jnp.where(is_log, jnp.exp(theta), theta))
    return FitResult(
        names=names,
        values={n: jnp.asarray(vals[i]) for i, n in enumerate(names)},
        stderr={n: jnp.asarray(err[i]) for i, n in enumerate(names)},
        covariance=jnp.asarray(cov),
        loss=jnp.asarray(final),
        loss_history=jnp.asarray(np.array(history) * float(scale)),
        converged=converged,
        n_steps=n_steps,
        n_data=_n_data(problem, theta, is_log, args),
    )
