r"""`solid_collision`: two cold half-chains collide (arXiv:1412.1347, Fig. 1).

The left half of a fixed-end FPU-β chain moves right at $+v$, the right half left at
$-v$, from their lattice sites (plus a small random displacement from the key), as a
thawed Gaussian at the harmonic ground-state width. The collision's energy starts in a
few long modes; the normal-mode energies of the centre (`mode_energies`), their spectral
entropy and effective fraction $n_{\rm eff} = e^S/N$ (`spectral_entropy`) are followed
against time, and the equipartition time $\tau$ is fitted (optax) with
$n_{\rm eff}(t) = n_{\rm eq} - (n_{\rm eq}-n_0)\exp[-(t/\tau)^s]$
(`equipartition_curve`; Gibbs equipartition gives $n_{\rm eq} = e^{\gamma_E-1} = 0.655$).

Parity: the symmetric collision excites only the even-$k$ modes, and the β-FPU dynamics
never moves energy between parity sectors. Without the random displacement
(`noise = 0`) the odd modes stay empty and the entropy is taken over the even sector
alone; with it, the odd sector grows from the seed (an instability of the symmetric
motion), and its energy fraction is reported. Each key gives its own seed, hence its own
$\tau$; the spread of $\tau$ over keys is reported beside the fit's own error.
"""

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from ... import plot
from ...config import ExperimentConfig, Section
from ...fit import fit_least_squares
from ...models import solid
from .. import ExperimentResult, register, stage
from ._common import ChainSection, crossing_time, integrate

__all__ = ["CollisionConfig", "run", "plot_figures", "collide", "fit_equipartition", "smooth"]


class CollisionTime(Section):
    """Save times linspace(0, t_max, n_times) in units of sqrt(M/k)."""

    t_max: float = Field(800.0, gt=0)
    n_times: int = Field(801, ge=20)


class CollisionConfig(ExperimentConfig):
    """Config of `solid_collision`.

    Attributes:
        chain: The chain and flow (fixed ends: the parity sectors are defined for them).
        mass: Atom mass M (sets the quantum width; the centre's motion in units sqrt(M/k) does not depend on it).
        velocity: Speed of each half in units a sqrt(k/M).
        noise: Standard deviation of the random initial displacements (lattice spacings).
        n_keys: Keys (seed, seed+1, ...) of independent runs.
        spread_threshold: Mean spread (lattice spacings) marking the end of localization.
        smooth_width: Samples of the moving average applied to n_eff before the fit.
    """

    experiment: str = "solid_collision"
    chain: ChainSection = ChainSection()
    mass: float = Field(1e4, gt=0)
    velocity: float = Field(1.0, gt=0)
    noise: float = Field(1e-3, ge=0)
    n_keys: int = Field(3, ge=1, le=100)
    spread_threshold: float = Field(0.1, gt=0)
    smooth_width: int = Field(1, ge=1, description="moving-average width (samples) before the fit")
    time: CollisionTime = CollisionTime()


def initial_state(cfg: CollisionConfig, key) -> solid.GaussianState:
    """Halves at their sites moving at +-v, plus `noise` random displacements."""
    n, m = cfg.chain.n_atoms, cfg.mass
    v = cfg.velocity * np.sqrt(cfg.chain.k / m)
    p = m * v * jnp.where(jnp.arange(n) < n // 2, 1.0, -1.0)
    if n % 2:
        p = p.at[n // 2].set(0.0)
    q = cfg.noise * jax.random.normal(key, (n,))
    return solid.GaussianState.normalized(q, p, cfg.chain.chain().ground_state_width(m))


def collide(cfg: CollisionConfig, key) -> dict:
    """One run: mode energies `(T, N)`, n_eff, parity fractions, mean spread, energies."""
    tau = np.linspace(0.0, cfg.time.t_max, cfg.time.n_times)
    chain = cfg.chain.chain()
    r = integrate(cfg.chain, cfg.chain.model(cfg.mass), initial_state(cfg, key), tau * np.sqrt(cfg.mass / cfg.chain.k))
    e = np.asarray(solid.mode_energies(chain, cfg.mass, jnp.asarray(r["q"]), jnp.asarray(r["p"])))
    parity = np.asarray(chain.mode_parity())
    frac_odd_k = e[:, parity == 1].sum(1) / e.sum(1)
    mask = np.ones(e.shape[1], bool)
    if cfg.chain.boundary == "fixed" and frac_odd_k[0] < 1e-20:
        mask = parity == 0 if cfg.noise == 0 else mask
    s, n_eff = (np.asarray(x) for x in solid.spectral_entropy(jnp.asarray(e), jnp.asarray(mask)))
    return {
        "tau": tau,
        "mode_energies": e,
        "entropy": s,
        "n_eff": n_eff,
        "odd_k_fraction": frac_odd_k,
        "mean_spread": r["spread"].mean(-1),
        "classical_energy": r["classical_energy"],
        "energy": r["energy"],
        "n_accessible": int(mask.sum()),
    }


def smooth(y: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` samples (shrinking at the ends)."""
    if width <= 1:
        return np.asarray(y)
    k = np.ones(width)
    return np.convolve(y, k, "same") / np.convolve(np.ones_like(y), k, "same")


def _equipartition_residuals(p, t, y, n0):
    n_eq = jax.nn.sigmoid(p["logit_n_eq"])  # kept in (0, 1)
    return solid.equipartition_curve(t, p["tau"], n0, n_eq, p["stretch"]) - y


def fit_equipartition(tau, n_eff, smooth_width: int = 1) -> dict:
    """Fit `equipartition_curve` to n_eff(t) (tau, stretch > 0 and n_eq in (0, 1) free;
    n0 = n_eff(0)) by optax L-BFGS, after a centred moving average over `smooth_width`
    samples. The error is the curvature estimate: optimistic for these correlated
    residuals (compare the spread over keys)."""
    y = smooth(np.asarray(n_eff), smooth_width)
    n0 = float(n_eff[0])
    late = float(np.clip(y[-max(2, y.size // 5) :].mean(), 0.05, 0.95))
    half = float(tau[int(np.argmax(y >= 0.5 * (n0 + late)))])
    init = {"tau": max(half, float(tau[1])), "logit_n_eq": float(np.log(late / (1 - late))), "stretch": 1.5}
    fit = fit_least_squares(
        _equipartition_residuals,
        init,
        args=(jnp.asarray(tau), jnp.asarray(y), jnp.asarray(n0)),
        positive=["tau", "stretch"],
        max_steps=300,
    )
    return {
        "value": float(fit.values["tau"]),
        "stderr": float(fit.stderr["tau"]),
        "n_eq": float(jax.nn.sigmoid(fit.values["logit_n_eq"])),
        "stretch": float(fit.values["stretch"]),
        "n0": n0,
        "converged": bool(fit.converged),
        "smooth_width": int(smooth_width),
    }


def run(cfg: CollisionConfig) -> ExperimentResult:
    runs, fits = [], []
    for i in range(cfg.n_keys):
        out = stage(f"collision_key{i}", lambda: collide(cfg, jax.random.key(cfg.seed + i)))
        runs.append(out)
        fits.append(fit_equipartition(out["tau"], out["n_eff"], cfg.smooth_width))
    taus = np.array([f["value"] for f in fits])
    first = runs[0]
    e0 = first["classical_energy"][0]
    summary = {
        "fits": {"equipartition_time": fits[0] | {"theory_n_eq": solid.N_EFF_EQUIPARTITION, "unit": "sqrt(M/k)"}},
        "equipartition_time_per_key": fits,
        "equipartition_time_over_keys": {
            "mean": float(taus.mean()),
            "std": float(taus.std(ddof=1)) if taus.size > 1 else None,
        },
        "energy_per_atom": float(e0 / cfg.chain.n_atoms),
        "classical_energy_drift": float(
            max(np.max(np.abs(r["classical_energy"] / r["classical_energy"][0] - 1)) for r in runs)
        ),
        "odd_k_fraction_end": [float(r["odd_k_fraction"][-1]) for r in runs],
        "localization_time": [crossing_time(r["tau"], r["mean_spread"], cfg.spread_threshold) for r in runs],
        "n_accessible_modes": first["n_accessible"],
    }
    arrays = {
        "tau": first["tau"],
        "mode_energies": first["mode_energies"],
        "n_eff": np.stack([r["n_eff"] for r in runs]),
        "entropy": np.stack([r["entropy"] for r in runs]),
        "odd_k_fraction": np.stack([r["odd_k_fraction"] for r in runs]),
        "mean_spread": np.stack([r["mean_spread"] for r in runs]),
        "equipartition_times": taus,
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_figures(result: ExperimentResult, cfg: CollisionConfig) -> dict:
    a, s = result.arrays, result.summary
    tau = a["tau"]
    fig, (ax1, ax2, ax3) = plot.subplots(1, 3, width=4.4)
    e = a["mode_energies"]
    im = ax1.imshow(
        np.log10(np.maximum(e.T / e.sum(1), 1e-12)),
        aspect="auto",
        origin="lower",
        extent=(tau[0], tau[-1], 0.5, e.shape[1] + 0.5),
        vmin=-8,
        vmax=0,
        cmap="viridis",
    )
    fig.colorbar(im, ax=ax1, label="log10 E_k / E")
    ax1.set_xlabel("t  [sqrt(M/k)]")
    ax1.set_ylabel("mode k")
    ax1.set_title("mode energies (key 0)")
    for i, y in enumerate(a["n_eff"]):
        ax2.plot(tau, y, lw=0.8, label=f"key {i}: tau = {a['equipartition_times'][i]:.0f}")
    f = s["fits"]["equipartition_time"]
    ax2.plot(
        tau,
        np.asarray(solid.equipartition_curve(tau, f["value"], f["n0"], f["n_eq"], f["stretch"])),
        "k--",
        lw=1.2,
        label="fit, key 0",
    )
    ax2.axhline(solid.N_EFF_EQUIPARTITION, color="0.5", lw=0.8, ls=":")
    ax2.set_xlabel("t  [sqrt(M/k)]")
    ax2.set_ylabel("n_eff = exp(S) / N")
    ax2.legend(fontsize=7)
    for i in range(len(a["odd_k_fraction"])):
        (line,) = ax3.semilogy(tau, np.maximum(a["odd_k_fraction"][i], 1e-30), lw=0.8, label=f"odd-k energy, key {i}")
        ax3.semilogy(tau, a["mean_spread"][i], "--", lw=0.8, color=line.get_color())
    ax3.axhline(cfg.spread_threshold, color="k", lw=0.6, ls=":")
    ax3.set_xlabel("t  [sqrt(M/k)]")
    ax3.set_title("odd-k energy fraction (solid), mean spread [a] (dashed)", fontsize=9)
    ax3.legend(fontsize=7)
    c = cfg.chain
    plot.caption(
        fig,
        f"N = {c.n_atoms}, beta = {c.beta}, v = ±{cfg.velocity} a sqrt(k/M), M = {cfg.mass:g}, "
        f"noise {cfg.noise} a, energy {s['energy_per_atom']:.3g} k a^2 per atom",
    )
    return {"solid_collision": fig}


register(
    "solid_collision",
    CollisionConfig,
    run,
    plot_figures,
    "two half-chains colliding at +-v: mode energies, spectral entropy, equipartition time",
)
