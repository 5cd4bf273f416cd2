r"""`solid_localization`: is the many-body peak of a solid localized? (arXiv:1412.1347, §1-2)

A thawed-Gaussian FPU-β chain (`thermojax.models.solid.ThawedGaussian`) starts at the
harmonic ground-state width with the atoms at their lattice sites and Maxwell-like random
momenta of a given kinetic energy per atom. The position spread per atom
$\sigma_i = \sqrt{\Sigma_{ii}}$ is followed against time for several atom masses $M$
(time in units of $\sqrt{M/k}$, so the centre's trajectory is the same for every mass
and only the quantum width scales), with the harmonic chain ($\beta = 0$) beside it.

Reported: the ground-state spread against $N$ and $M$ (closed form; it grows like
$\sqrt{\ln N}$ in one dimension), the localization time $\tau_{\rm loc}(M)$ at which the
mean spread reaches `spread_threshold` (a Lindemann-like fraction of the lattice
spacing), its fit $\tau_{\rm loc} = a + b\ln M$, and the growth rate $\lambda$ of the
spread, for which the local-harmonic flow predicts $b = 1/(4\lambda)$ exactly (the
initial width scales as $M^{-1/4}$).
"""

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, Section
from ...fit import fit_least_squares
from ...models import solid
from .. import ExperimentResult, register, stage
from ._common import ChainSection, crossing_time, integrate

__all__ = ["LocalizationConfig", "run", "plot_figures", "ground_state_spread"]


class LocalizationTime(Section):
    """Save times linspace(0, t_max, n_times) in units of sqrt(M/k)."""

    t_max: float = Field(150.0, gt=0)
    n_times: int = Field(151, ge=10)


class LocalizationConfig(ExperimentConfig):
    """Config of `solid_localization`.

    Attributes:
        chain: The chain and flow.
        masses: Atom masses M (units hbar^2 / (k a^4); a real solid is ~1e4-1e5).
        energy_per_atom: Initial kinetic energy per atom (units k a^2), random direction from `seed`.
        spread_threshold: Mean spread (lattice spacings) that ends localization.
        ground_n_values: Chain lengths of the ground-state panel.
        fit_from: Start (units sqrt(M/k)) of the window where the growth rate is fitted.
    """

    experiment: str = "solid_localization"
    chain: ChainSection = ChainSection()
    masses: list[float] = Field(default_factory=lambda: [1e3, 1e4, 1e5, 1e6, 1e7, 1e8], min_length=2)
    energy_per_atom: float = Field(0.25, gt=0)
    spread_threshold: float = Field(0.1, gt=0)
    ground_n_values: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128, 256], min_length=2)
    fit_from: float = Field(20.0, ge=0)
    time: LocalizationTime = LocalizationTime()

    @model_validator(mode="after")
    def _check(self):
        if any(m <= 0 for m in self.masses):
            raise ValueError(f"`masses` must be > 0, got {self.masses}")
        if any(n < 2 or n > 4096 for n in self.ground_n_values):
            raise ValueError("`ground_n_values` must lie in [2, 4096]")
        if self.fit_from >= self.time.t_max:
            raise ValueError("`fit_from` must be below `time.t_max`")
        return self


def ground_state_spread(chain: solid.FPUChain, mass: float) -> tuple[float, float]:
    """Harmonic ground state, Sigma = sum_k phi_k phi_k^T / (2 M omega_k): spread of the middle
    atom and of the middle bond (lengths). Periodic chains: the zero mode as in
    `FPUChain.ground_state_width`."""
    omega, vec = (np.asarray(x) for x in chain.normal_modes(mass))
    omega = np.where(omega > 0, omega, np.min(omega[omega > 0]))
    sigma = (vec / (2 * mass * omega)) @ vec.T
    mid = chain.n_atoms // 2
    bond = np.asarray(chain.bond_variances(jnp.asarray(sigma)))[mid]
    return float(np.sqrt(sigma[mid, mid])), float(np.sqrt(bond))


def _initial(cfg: LocalizationConfig, mass: float) -> solid.GaussianState:
    n = cfg.chain.n_atoms
    xi = jax.random.normal(jax.random.key(cfg.seed), (n,))
    p = jnp.sqrt(2 * mass * cfg.energy_per_atom * n) * xi / jnp.linalg.norm(xi)
    return solid.GaussianState.normalized(jnp.zeros(n), p, cfg.chain.chain().ground_state_width(mass))


def _dynamics(cfg: LocalizationConfig) -> dict:
    tau = np.linspace(0.0, cfg.time.t_max, cfg.time.n_times)
    out = {"tau": tau}
    for tag, beta in (("anharmonic", None), ("harmonic", 0.0)):
        rows = []
        for m in cfg.masses:
            unit = np.sqrt(m / cfg.chain.k)
            r = integrate(cfg.chain, cfg.chain.model(m, beta), _initial(cfg, m), tau * unit)
            rows.append(r)
        out[f"spread_{tag}"] = np.stack([r["spread"] for r in rows])  # (M, T, N)
        out[f"energy_{tag}"] = np.stack([r["energy"] for r in rows])
        out[f"classical_energy_{tag}"] = np.stack([r["classical_energy"] for r in rows])
        out[f"norm_{tag}"] = np.stack([r["norm"] for r in rows])
    return out


def _line(p, t, y):
    return p["c"] + p["lam"] * t - y


def _line2(p, x, y):
    return p["a"] + p["b"] * x - y


def _fits(cfg, tau, mean_spread) -> tuple[dict, np.ndarray]:
    t_loc = np.array([crossing_time(tau, s, cfg.spread_threshold) for s in mean_spread])
    lm = np.log(np.asarray(cfg.masses))
    fits = {}
    sel = tau >= cfg.fit_from
    ls = jnp.log(jnp.asarray(mean_spread[-1][sel]))
    rate = fit_least_squares(_line, {"c": 0.0, "lam": 0.01}, args=(jnp.asarray(tau[sel]), ls), positive=[])
    lam, lam_err = float(rate.values["lam"]), float(rate.stderr["lam"])
    fits["spread_growth_rate"] = {"value": lam, "stderr": lam_err, "unit": "sqrt(k/M)", "mass": cfg.masses[-1]}
    ok = np.isfinite(t_loc) & (t_loc > 0)
    if ok.sum() >= 3:
        fit = fit_least_squares(
            _line2, {"a": 0.0, "b": 1.0}, args=(jnp.asarray(lm[ok]), jnp.asarray(t_loc[ok])), positive=[]
        )
        fits["localization_time_per_ln_mass"] = {
            "value": float(fit.values["b"]),
            "stderr": float(fit.stderr["b"]),
            "intercept": float(fit.values["a"]),
            "theory": 1.0 / (4 * lam) if lam > 0 else float("nan"),
            "n_points": int(ok.sum()),
            "unit": "sqrt(M/k)",
        }
    return fits, t_loc


def run(cfg: LocalizationConfig) -> ExperimentResult:
    ground = stage(
        "ground",
        lambda: {
            "spread": np.array(
                [
                    [
                        ground_state_spread(solid.FPUChain(n, cfg.chain.k, 0.0, cfg.chain.boundary), m)
                        for n in cfg.ground_n_values
                    ]
                    for m in cfg.masses
                ]
            )
        },
    )["spread"]  # (M, n, 2)
    dyn = stage("dynamics", lambda: _dynamics(cfg))
    tau = dyn["tau"]
    mean_a = dyn["spread_anharmonic"].mean(-1)
    mean_h = dyn["spread_harmonic"].mean(-1)
    fits, t_loc = _fits(cfg, tau, mean_a)
    holds = {f"{m:g}": (None if not np.isfinite(t) else t) for m, t in zip(cfg.masses, t_loc)}
    e0 = dyn["classical_energy_anharmonic"][:, :1]
    summary = {
        "localization_time": holds,
        "localized_initially": {f"{m:g}": bool(s[0] < cfg.spread_threshold) for m, s in zip(cfg.masses, mean_a)},
        "harmonic_max_mean_spread": {f"{m:g}": float(s.max()) for m, s in zip(cfg.masses, mean_h)},
        "classical_energy_drift": float(np.max(np.abs(dyn["classical_energy_anharmonic"] / e0 - 1))),
        "energy_ratio_end_to_start": {
            f"{m:g}": float(e[-1] / e[0]) for m, e in zip(cfg.masses, dyn["energy_anharmonic"])
        },
        "norm_error": float(np.max(np.abs(dyn["norm_anharmonic"] - 1))),
        "fits": fits,
    }
    arrays = {
        "tau": tau,
        "masses": np.asarray(cfg.masses),
        "mean_spread_anharmonic": mean_a,
        "mean_spread_harmonic": mean_h,
        "spread_anharmonic": dyn["spread_anharmonic"],
        "localization_time": t_loc,
        "ground_n_values": np.asarray(cfg.ground_n_values),
        "ground_spread": ground,
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_figures(result: ExperimentResult, cfg: LocalizationConfig) -> dict:
    a, s = result.arrays, result.summary
    fig, (ax1, ax2, ax3) = plot.subplots(1, 3, width=4.4)
    for i, m in enumerate(cfg.masses):
        (line,) = ax1.semilogy(a["tau"], a["mean_spread_anharmonic"][i], lw=1.2, label=f"M = {m:g}")
        ax1.semilogy(a["tau"], a["mean_spread_harmonic"][i], ":", lw=1, color=line.get_color())
    ax1.axhline(cfg.spread_threshold, color="k", lw=0.8, ls="--")
    ax1.set_xlabel("t  [sqrt(M/k)]")
    ax1.set_ylabel("mean spread per atom [a]")
    ax1.set_title("beta (solid) vs harmonic (dotted)")
    ax1.legend(fontsize=7)
    ok = np.isfinite(a["localization_time"]) & (a["localization_time"] > 0)
    ax2.semilogx(a["masses"][ok], a["localization_time"][ok], "o", label="mean spread reaches the threshold")
    fit = s["fits"].get("localization_time_per_ln_mass")
    if fit:
        mm = np.geomspace(a["masses"].min(), a["masses"].max(), 50)
        ax2.semilogx(
            mm,
            fit["intercept"] + fit["value"] * np.log(mm),
            "-",
            lw=1,
            label=f"slope {fit['value']:.1f} ± {fit['stderr']:.1g}; 1/(4 lambda) = {fit['theory']:.1f}",
        )
    ax2.set_xlabel("mass M")
    ax2.set_ylabel("localization time [sqrt(M/k)]")
    ax2.legend(fontsize=7)
    for i, m in enumerate(cfg.masses):
        if i in (0, len(cfg.masses) - 1):
            ax3.loglog(a["ground_n_values"], a["ground_spread"][i, :, 0], "o-", label=f"atom, M = {m:g}")
            ax3.loglog(a["ground_n_values"], a["ground_spread"][i, :, 1], "s--", label=f"bond, M = {m:g}")
    ax3.set_xlabel("atoms N")
    ax3.set_ylabel("ground-state spread [a]")
    ax3.set_title("harmonic ground state, middle of the chain")
    ax3.legend(fontsize=7)
    c = cfg.chain
    plot.caption(
        fig,
        f"N = {c.n_atoms}, k = {c.k}, beta = {c.beta}, {c.boundary} ends, {c.forces} forces, "
        f"kinetic energy {cfg.energy_per_atom} per atom, threshold {cfg.spread_threshold} a",
    )
    return {"solid_localization": fig}


register(
    "solid_localization",
    LocalizationConfig,
    run,
    plot_figures,
    "spread per atom of a thawed-Gaussian FPU-beta lattice vs mass and time",
)
