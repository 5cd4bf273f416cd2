r"""Pieces shared by the driven-system experiments: config keys, the realisation loop,
the PDE fits of the diffusion coefficient and their resampling errors.

Decisions (each measured or argued in `docs/models/driven.md`):

* **Realisations.** Realisation `r` draws $(H_0, V)$ from `jax.random.fold_in(key, r)`
  with a key that does not depend on $\varepsilon$, so every drive rate sees the same
  matrices (common random numbers across an $\varepsilon$ sweep).
* **What is fitted.** The exact data are the realisation means of $\eta(E,t)$ and of the
  variance *increase* $\mathrm{Var}\,E(t) - \mathrm{Var}\,E(0)$ (the increase removes the
  binning offset between the level-resolved exact variance and the PDE's cells). The
  model is the Smoluchowski PDE of the GOE closed forms with its diffusion scaled by
  one constant $c$ (`thermojax.models.driven.goe_smoluchowski`), solved from the
  realisation-mean $\eta(E, 0)$; $c$ is fitted with `thermojax.fit_least_squares`.
* **Errors.** The quoted standard error is the jackknife over realisations (the fit is
  redone leaving out each realisation in turn): the disorder realisations are the
  independent samples. The curvature error of the least-squares fit treats the times
  and cells as independent, which they are not (one chaotic evolution makes all of
  them), and is reported beside it for comparison only.
* **Derivatives of the PDE solve.** `fit_least_squares` differentiates the residuals in
  reverse mode (L-BFGS) and in forward mode (the Jacobian of its standard error); a
  diffrax solve supports both only with `DirectAdjoint` (measured: 2x the compile
  time and 8x the run time of the route below). `scaled_pde_states` therefore has a
  `jax.custom_jvp` whose tangent is the forward sensitivity
  $\partial\eta/\partial c$ from diffrax's `ForwardMode`: linear in the input
  tangent, so JAX transposes it for reverse mode.
* **Compile time.** The solve (value and sensitivity) is compiled once on its own and
  reached from the fitter through `jax.pure_callback`: inlined, the diffrax loop was
  copied into every compiled piece of the fitter (14 s of CPU per fit compile, against
  4 s now; measured with Bosh3, Heun, Ralston and Tsit5 alike).
"""

import math
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ...config import ExperimentConfig
from ...fit import fit_least_squares
from ...models import driven as dr
from ...options import ODE, Options
from .. import stage

__all__ = [
    "DrivenConfig",
    "level_spacing",
    "simulate",
    "realisation_means",
    "goe_pde",
    "scaled_pde_states",
    "fit_scale",
    "jackknife",
    "fit_with_jackknife",
    "regime_summary",
    "fit_index_scale",
    "PDE_METHOD",
]

#: The PDE's integrator in fits: forward sensitivities need `ForwardMode`; Bosh3 (third
#: order) compiles in ~30% less time than Tsit5 and the fits run in a fraction of a second.
PDE_METHOD = ODE(dfx.Bosh3(), dfx.PIDController(rtol=1e-8, atol=1e-10), adjoint=dfx.ForwardMode(), max_steps=100_000)


def level_spacing(energy: float, dim: int) -> float:
    """Mean level spacing of H0 (semicircle of radius 2) at `energy`: 2 pi / (d sqrt(4 - E^2))."""
    return 2.0 * math.pi / (dim * math.sqrt(max(4.0 - energy**2, 1e-12)))


class DrivenConfig(ExperimentConfig):
    """Keys shared by the driven-system experiments (GOE model, paper 004).

    Attributes:
        dim: Dimension d of H0 and V.
        coupling_variance: Off-diagonal variance of V (default 1/dim: V as wide as H0).
        energy: Centre E0 of the initial window (H0's semicircle has radius 2).
        n_states: Eigenstates of H(0) nearest to E0, evolved as one batch (their
            mixture is the microcanonical initial state).
        realisations: Independent (H0, V) draws.
        n_times: Save times per run.
        grid_half_width: The energy grid spans E0 +- this.
        cells: Cells of the grid (coarse graining and PDE).
        rtol: Tolerance of the exact evolution (diffrax Dopri8, rtol = atol).
        window_half_width: Half-width of the microcanonical windows of the linear
            response (C_E, G2, golden rule).
        smoothing: Width of the energy-conserving delta of the golden rule and of G2
            (energy; mean level spacing << smoothing << bandwidth).
        fit_max_steps: L-BFGS steps of each fit.
    """

    dim: int = Field(300, ge=8, le=4000)
    coupling_variance: float | None = Field(None, gt=0)
    energy: float = Field(0.0, ge=-1.8, le=1.8)
    n_states: int = Field(16, ge=1)
    realisations: int = Field(8, ge=2)
    n_times: int = Field(21, ge=3, le=401)
    grid_half_width: float = Field(0.6, gt=0)
    cells: int = Field(60, ge=8, le=4000)
    rtol: float = Field(1e-9, gt=0, le=1e-4)
    window_half_width: float = Field(0.2, gt=0, le=1.0)
    smoothing: float = Field(0.2, gt=0, le=1.0)
    fit_max_steps: int = Field(60, ge=1, le=1000)

    @model_validator(mode="after")
    def _check_sizes(self):
        if self.n_states > self.dim:
            raise ValueError(f"n_states ({self.n_states}) must be <= dim ({self.dim})")
        if abs(self.energy) + self.grid_half_width >= 2.0:
            raise ValueError(
                f"the grid [energy - grid_half_width, energy + grid_half_width] = "
                f"[{self.energy - self.grid_half_width:g}, {self.energy + self.grid_half_width:g}] must lie inside "
                "H0's band (-2, 2), where the level density is positive"
            )
        spacing = level_spacing(self.energy, self.dim)
        if 2 * self.grid_half_width / self.cells < spacing:
            raise ValueError(
                f"cells ({self.cells}) too many: cell width {2 * self.grid_half_width / self.cells:.4g} is below the "
                f"mean level spacing {spacing:.4g} at energy {self.energy:g}"
            )
        return self

    @property
    def sigma2(self) -> float:
        """Off-diagonal variance of V."""
        return 1.0 / self.dim if self.coupling_variance is None else float(self.coupling_variance)

    def grid(self) -> dr.EnergyGrid:
        """The energy cells."""
        return dr.EnergyGrid(self.energy - self.grid_half_width, self.energy + self.grid_half_width, self.cells)

    def golden(self, epsilon: float, t: float = 0.0) -> float:
        """Closed-form golden-rule D at (E0, eps t)."""
        return float(epsilon**2 * dr.goe_golden_rule(self.energy, epsilon * t, self.dim, self.sigma2))


# ----------------------------------------------------------------------------------
# exact evolution over realisations
# ----------------------------------------------------------------------------------

CORRELATION_TIMES = np.linspace(0.0, 12.0, 97)


def _one_realisation(cfg: DrivenConfig, epsilon: float, tsave, key, r: int) -> dict:
    system = dr.DrivenSystem.goe(jax.random.fold_in(key, r), cfg.dim, epsilon, coupling_variance=cfg.sigma2)
    idx = dr.nearest_levels(system.energies0, cfg.energy, cfg.n_states)
    grid = cfg.grid().check(system.energies0)
    method = dr.BatchedODE(ODE(dfx.Dopri8(), dfx.PIDController(rtol=cfg.rtol, atol=cfg.rtol)))
    res = dr.evolve(system, system.eigenstates(idx), tsave, method=method, options=Options(throw=True))
    m = dr.measure(system, res.states, tsave, grid)
    lr = dr.linear_response(
        system, [cfg.energy], half_width=cfg.window_half_width, smoothing=cfg.smoothing, s=CORRELATION_TIMES
    )
    return {
        "eta": m.eta,
        "variance": m.variance,
        "index_variance": m.index_variance,
        "mean": m.mean,
        "level_density": m.level_density,
        "drift": m.drift,
        "outside": m.outside,
        "norm_error": jnp.max(jnp.abs(m.norm - 1.0)),
        "golden": lr.golden[0],
        "g2": lr.g2[0],
        "offdiag": lr.offdiag_near[0],
        "window_level_density": lr.level_density[0],
        "level_velocity_variance": lr.level_velocity_variance[0],
        "correlation_time": lr.correlation_time[0],
        "correlation": jnp.real(lr.correlation[0]),
        "sum_rule_error": lr.sum_rule_error()[0],
        "ode_steps": res.stats["num_steps"],
    }


def simulate(cfg: DrivenConfig, epsilon: float, tsave, key, tag: str) -> dict[str, np.ndarray]:
    """Exact evolution and observables of every realisation, one `stage` each, stacked:
    arrays `(R, ...)`."""
    tsave = jnp.asarray(tsave, float)
    outs = [
        stage(f"{tag}_r{r}", lambda r=r: _one_realisation(cfg, epsilon, tsave, key, r))
        for r in range(cfg.realisations)
    ]
    return {k: np.stack([np.asarray(o[k]) for o in outs]) for k in outs[0]}


def realisation_means(data: dict[str, np.ndarray], keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Means over the realisations flagged in `keep` (default all) of the fitted data:
    `eta0 (J,)`, `eta (T, J)`, `increase (T,)` (variance increase)."""
    keep = np.ones(data["variance"].shape[0], bool) if keep is None else keep
    var = data["variance"][keep]
    eta = data["eta"][keep]
    return {"eta0": eta[:, 0].mean(0), "eta": eta.mean(0), "increase": (var - var[:, :1]).mean(0)}


# ----------------------------------------------------------------------------------
# the PDE and its fits
# ----------------------------------------------------------------------------------


def goe_pde(cfg: DrivenConfig, epsilon: float, tsave, form: str, scale: float = 1.0) -> dr.Smoluchowski:
    """The GOE Smoluchowski PDE of the config, knots at the save times."""
    return dr.goe_smoluchowski(
        cfg.grid(), np.asarray(tsave), epsilon=epsilon, dim=cfg.dim, coupling_variance=cfg.sigma2, form=form,
        scale=scale,
    )


def _scaled_states(scale, pde, eta0, tsave):
    scaled = eqx.tree_at(lambda p: p.conductance, pde, scale * pde.conductance)
    return scaled.solve(eta0, tsave, method=PDE_METHOD).states


@eqx.filter_jit
def _states_and_sensitivity(scale, pde, eta0, tsave):
    return jax.jvp(lambda c: _scaled_states(c, pde, eta0, tsave), (scale,), (jnp.ones_like(scale),))


def _on_host(with_sensitivity: bool, scale, pde, eta0, tsave):
    """The PDE solve as an opaque host call: the fitter's compiled step then holds a
    call instead of copies of the diffrax loop (its compile time drops from 14 s to
    ~3 s, `docs/models/driven.md`); the solves themselves are compiled once."""
    leaves, treedef = jax.tree.flatten((scale, pde, eta0, tsave))
    out = jax.ShapeDtypeStruct((tsave.shape[0], eta0.shape[-1]), jnp.result_type(float))

    def host(*xs):
        args = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in xs])
        if with_sensitivity:
            return tuple(np.asarray(y) for y in _states_and_sensitivity(*args))
        return np.asarray(_states_and_sensitivity(*args)[0])

    return jax.pure_callback(host, (out, out) if with_sensitivity else out, *leaves, vmap_method="sequential")


@jax.custom_jvp
def scaled_pde_states(scale, pde: dr.Smoluchowski, eta0, tsave):
    r"""States `(T, J)` of `pde` with its conductance multiplied by `scale`.

    Differentiable in `scale` only (forward and reverse mode): the tangent is the
    forward sensitivity $\partial\eta/\partial c$ (diffrax `ForwardMode`), linear in the
    input tangent so that JAX transposes it for reverse mode; tangents of the other
    arguments are ignored.
    """
    return _on_host(False, scale, pde, eta0, tsave)


@scaled_pde_states.defjvp
def _scaled_pde_states_jvp(primals, tangents):
    value, sens = _on_host(True, *primals)
    return value, sens * tangents[0]


def _variance_residuals(params, pde, eta0, tsave, target):
    states = scaled_pde_states(params["scale"], pde, eta0, tsave)
    var = dr.distribution_moments(states, pde.grid)[2]
    return (var[1:] - var[0]) - target[1:]


def _profile_residuals(params, pde, eta0, tsave, target):
    states = scaled_pde_states(params["scale"], pde, eta0, tsave)
    return states[1:] - target[1:]


RESIDUALS: dict[str, Callable] = {"variance": _variance_residuals, "profile": _profile_residuals}


def fit_scale(pde, eta0, tsave, target, *, kind: str = "variance", init: float = 1.0, max_steps: int = 60):
    """Fit the multiplier `scale` of `pde`'s diffusion to `target` (the variance
    increase `(T,)` or the profile `(T, J)`); a `thermojax.FitResult`."""
    if kind not in RESIDUALS:
        raise ValueError(f'Argument `kind` must be "variance" or "profile", got {kind!r}.')
    return fit_least_squares(
        RESIDUALS[kind], {"scale": float(init)}, args=(pde, jnp.asarray(eta0), jnp.asarray(tsave), jnp.asarray(target)),
        positive=["scale"], max_steps=max_steps,
    )


def jackknife(estimate: Callable[[np.ndarray], np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Leave-one-out jackknife of `estimate(keep)` over `n` samples.

    Returns:
        `(full, stderr, leave_one_out)`, with
        $\mathrm{se}^2 = \frac{n-1}{n}\sum_i(\theta_{(i)} - \bar\theta_{(\cdot)})^2$.

    Raises:
        ValueError: If `n < 2`.
    """
    if n < 2:
        raise ValueError(f"the jackknife needs n >= 2 samples, got {n}")
    full = np.asarray(estimate(np.ones(n, bool)), float)
    loo = np.stack([np.asarray(estimate(np.arange(n) != i), float) for i in range(n)])
    se = np.sqrt((n - 1) / n * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    return full, se, loo


def fit_with_jackknife(
    cfg: DrivenConfig, data: dict, pde: dr.Smoluchowski, tsave, *, kind: str = "variance", init: float = 1.0,
) -> dict:
    """Fit `scale` on the realisation means, and again leaving out each realisation.

    Returns:
        `{"scale", "stderr" (jackknife), "stderr_curvature", "loss", "converged",
        "leave_one_out"}` (JSON-ready).
    """
    n = data["variance"].shape[0]
    first = {}

    def estimate(keep):
        means = realisation_means(data, keep)
        target = means["increase"] if kind == "variance" else means["eta"]
        start = first["fit"].values["scale"] if first else init
        fit = fit_scale(pde, means["eta0"], tsave, target, kind=kind, init=float(start), max_steps=cfg.fit_max_steps)
        if not first:
            first["fit"] = fit
        return float(fit.values["scale"])

    value, se, loo = jackknife(estimate, n)
    fit = first["fit"]
    return {
        "scale": float(value),
        "stderr": float(se),
        "stderr_curvature": float(fit.stderr["scale"]),
        "loss": float(fit.loss),
        "converged": bool(fit.converged),
        "leave_one_out": [float(x) for x in loo],
    }


# ----------------------------------------------------------------------------------
# regimes
# ----------------------------------------------------------------------------------


def _index_line(params, g, y):
    return params["c"] * g - y


def fit_index_scale(cfg: DrivenConfig, data: dict, tsave, epsilon: float) -> dict:
    r"""Multiplier $c$ of the golden rule from the variance of the level index.

    In the unfolded spectrum (level index $n$) the Smoluchowski equation has no drift
    and a diffusion coefficient $D\Sigma^2$; for a distribution narrow on the scale of
    $\Sigma$ (here near $E_0$), $\mathrm{Var}\,n(t) - \mathrm{Var}\,n(0) =
    2c\int_0^t D_{\rm golden}\Sigma^2\,dt'$ with the GOE closed forms at $E_0$. Fitted
    (linear least squares) on the realisation mean, jackknifed over realisations.
    """
    fine = np.linspace(0.0, float(tsave[-1]), 20 * (len(tsave) - 1) + 1)
    lam = epsilon * fine
    rate = np.asarray(epsilon**2 * dr.goe_golden_rule(cfg.energy, lam, cfg.dim, cfg.sigma2)
                      * dr.goe_level_density(cfg.energy, lam, cfg.dim, cfg.sigma2) ** 2)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(fine))])
    g = jnp.asarray(2.0 * np.interp(np.asarray(tsave), fine, cum))
    inc = data["index_variance"] - data["index_variance"][:, :1]

    def est(keep):
        y = jnp.asarray(inc[keep].mean(0))
        return float(fit_least_squares(_index_line, {"c": 1.0}, args=(g, y), positive=False).values["c"])

    value, se, _ = jackknife(est, inc.shape[0])
    return {"scale": float(value), "stderr": float(se)}


def regime_summary(epsilon: float, data: dict) -> dict:
    """Regime of a drive rate from the realisations' linear response at (E0, t = 0)."""
    spacing = 1.0 / float(np.mean(data["window_level_density"]))
    sigma = math.sqrt(float(np.mean(data["offdiag"])))
    tc = float(np.mean(data["correlation_time"]))
    eps_lz, eps_prt = dr.regime_boundaries(spacing, sigma, tc)
    return {
        "regime": dr.classify_regime(epsilon, eps_lz, eps_prt),
        "eps_lz": eps_lz,
        "eps_prt": eps_prt,
        "level_spacing": spacing,
        "coupling_rms": sigma,
        "correlation_time": tc,
        "bandwidth": 2 * math.pi / tc,
    }
