r"""SUI hybrid experiments: the Born rule from collapse, and the hybrid stationary state.

Source: A. Mukherjee, "Objective quantum thermalization", arXiv:2504.16197 (seed
``001_72cbdd6588fdbaef.txt``), eqs. 7–8; notation of PHYSICS.md §1. With
:math:`\hbar = 1`, :math:`\gamma = \alpha\mathcal N` and :math:`\Gamma = \mathcal J\mathcal N`,
the SUI stochastic Schrödinger equation (Itô, eq. 7) adds to the OQT terms

.. math:: d\psi \mathrel{+}= -\tfrac\Gamma2\sum_k(P_k-\langle P_k\rangle)^2\psi\,dt
    + \sqrt\Gamma\sum_k(P_k-\langle P_k\rangle)\psi\,dW^k,

whose ensemble obeys the hybrid master equation (eq. 8)

.. math:: \dot\rho = -i[H,\rho] + \Gamma\Big(\sum_kP_k\rho P_k-\rho\Big)
    + \gamma(\chi\,\mathrm{Tr}\rho-\rho).

Two experiments:

* ``sui_born_rule`` — collapse only (:math:`H=0`, :math:`\gamma=0`, :math:`\Gamma>0`):
  every trajectory ends in one sector :math:`P_k` with probability
  :math:`\langle\psi_0|P_k|\psi_0\rangle`. A chi-square test compares the histogram of
  final sectors with these Born probabilities.
* ``sui_hybrid`` — the stationary state :math:`\rho_\infty` of eq. 8 (a null vector of the
  Liouvillian, :meth:`thermojax.models.oqt.OQTModel.stationary_state`) as
  :math:`\Gamma/\gamma` sweeps over decades, for :math:`H=0` (against the closed form
  :func:`hybrid_stationary_h0`) and for a GOE :math:`H` (against the Zeno limit
  :func:`zeno_stationary`).

The model (:class:`~thermojax.models.oqt.OQTModel`, :class:`~thermojax.models.oqt.OQTSSE`),
the trajectory machinery (:func:`thermojax.trajectories.simulate_trajectories`) and the
ODE layer (:func:`thermojax.evolve.solve_ode`) are used as they are; this module adds
the analysis helpers and the experiments.
"""

from typing import Literal

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float, Int, PRNGKeyArray
from pydantic import Field, model_validator

from .. import plot
from ..config import ExperimentConfig, Section
from ..evolve import solve_ode
from ..io import Stopwatch
from ..models.oqt import OQTModel, canonical_steady_state, microcanonical_steady_state
from ..spectra import Eigensystem, eigh, goe_matrix, haar_unitary, ket_to_dm, random_ket, trace_distance
from ..trajectories import simulate_trajectories
from . import ExperimentResult, register

__all__ = [
    "random_ket",
    "sector_projectors",
    "sector_weights",
    "born_probabilities",
    "final_sectors",
    "chi_square_test",
    "dephase",
    "hybrid_stationary_h0",
    "zeno_stationary",
    "BornRuleConfig",
    "HybridConfig",
    "run_born_rule",
    "run_hybrid",
]


# ----------------------------------------------------------------------------------
# helpers (pure functions; tested in tests/test_sui_experiments.py)
# ----------------------------------------------------------------------------------


def sector_projectors(
    sizes: list[int] | tuple[int, ...], key: PRNGKeyArray | None = None
) -> Complex[Array, "K d d"]:
    r"""Complete set of orthogonal projectors :math:`P_k` of ranks ``sizes``.

    :math:`P_k = \sum_{j\in S_k} |v_j\rangle\langle v_j|` with consecutive index blocks
    :math:`S_k` of lengths ``sizes`` and :math:`v_j` the standard basis (``key=None``) or
    the columns of a Haar-random unitary drawn from ``key``. Hence
    :math:`\sum_kP_k = 1`, :math:`P_kP_l=\delta_{kl}P_k`, :math:`d = \sum_k` ``sizes[k]``.

    Args:
        sizes: Rank of each projector, all >= 1.
        key: Optional PRNG key for a random basis.

    Returns:
        Projectors, shape ``(K, d, d)``, complex.

    Raises:
        ValueError: If ``sizes`` is empty or holds a rank < 1.

    Example:
        >>> p = sector_projectors([2, 1])
        >>> p.shape, [int(x) for x in jnp.real(jnp.trace(p, axis1=1, axis2=2))]
        ((2, 3, 3), [2, 1])
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"Argument `sizes` must be a non-empty list of ranks >= 1, got {sizes}.")
    d = sum(sizes)
    basis = jnp.eye(d, dtype=complex) if key is None else haar_unitary(key, d)
    out, start = [], 0
    for s in sizes:
        cols = basis[:, start : start + s]
        out.append(cols @ cols.conj().T)
        start += s
    return jnp.stack(out)


def sector_weights(
    psi: Complex[Array, "*batch d"], projectors: Complex[Array, "K d d"]
) -> Float[Array, "*batch K"]:
    r"""Normalised sector weights :math:`\langle\psi|P_k|\psi\rangle/\langle\psi|\psi\rangle`.

    Args:
        psi: Kets, shape ``(*batch, d)`` (same basis as ``projectors``).
        projectors: Shape ``(K, d, d)``.

    Returns:
        Weights, shape ``(*batch, K)``, summing to 1 for complete projectors.
    """
    psi = jnp.asarray(psi)
    w = jnp.real(jnp.einsum("...a,kab,...b->...k", psi.conj(), projectors, psi))
    return w / jnp.sum(w, axis=-1, keepdims=True)


def born_probabilities(
    psi0: Complex[Array, " d"], projectors: Complex[Array, "K d d"]
) -> Float[Array, " K"]:
    r"""Born probabilities :math:`p_k = \langle\psi_0|P_k|\psi_0\rangle` of a normalised ket.

    Seed ``001_72cbdd6588fdbaef.txt`` (arXiv:2504.16197), text after eq. 7: with
    :math:`H=0`, :math:`\gamma=0` the SUI collapse ends in sector :math:`k` with this
    probability.

    Args:
        psi0: Ket, shape ``(d,)``.
        projectors: Shape ``(K, d, d)``.

    Returns:
        Shape ``(K,)``.
    """
    return sector_weights(psi0, projectors)


def final_sectors(
    weights: Float[ArrayLike, "n K"], threshold: float = 1e-3
) -> tuple[Int[np.ndarray, " n"], np.ndarray]:
    r"""Sector each trajectory collapsed into, and whether it has decided.

    A trajectory has *decided* when its largest weight exceeds ``1 - threshold``.

    Args:
        weights: Final sector weights per trajectory, shape ``(n, K)``.
        threshold: Tolerance, in ``(0, 1)``.

    Returns:
        ``(sector, decided)``: the argmax sector, shape ``(n,)`` int, and a boolean mask
        ``(n,)``.

    Raises:
        ValueError: On a weights array that is not 2-D or a threshold outside (0, 1).
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"Argument `weights` must have shape (n, K), got {w.shape}.")
    if not 0 < threshold < 1:
        raise ValueError(f"Argument `threshold` must be in (0, 1), got {threshold!r}.")
    return np.argmax(w, axis=1), np.max(w, axis=1) > 1.0 - threshold


def chi_square_test(
    counts: Int[ArrayLike, " K"], probabilities: Float[ArrayLike, " K"]
) -> dict[str, float]:
    r"""Pearson chi-square goodness-of-fit of ``counts`` against ``probabilities``.

    .. math:: \chi^2 = \sum_k \frac{(O_k - np_k)^2}{np_k},\qquad
        p = Q\big(\tfrac{\nu}2, \tfrac{\chi^2}2\big),\quad \nu = K' - 1,

    with :math:`n = \sum_k O_k`, :math:`K'` the number of bins with :math:`p_k > 0` and
    :math:`Q` the regularised upper incomplete gamma function
    (``jax.scipy.special.gammaincc``, the chi-square survival function). A count in a
    bin of probability 0 gives :math:`\chi^2 = \infty`, :math:`p = 0`. The asymptotic
    distribution needs expected counts :math:`np_k \gtrsim 5`; ``min_expected`` is
    returned so a caller can check.

    Args:
        counts: Observed counts, shape ``(K,)``, nonnegative integers.
        probabilities: Expected probabilities, shape ``(K,)``, nonnegative, summing to 1
            within 1e-8.

    Returns:
        ``{"chi2", "dof", "p_value", "n", "min_expected"}``.

    Raises:
        ValueError: On mismatched shapes, negative counts, probabilities that are negative
            or do not sum to 1, fewer than two populated bins, or no counts.

    Example:
        >>> r = chi_square_test([48, 52], [0.5, 0.5])
        >>> r["dof"], round(r["chi2"], 3), r["p_value"] > 0.5
        (1, 0.16, True)
    """
    o = np.asarray(counts, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    if o.ndim != 1 or o.shape != p.shape:
        raise ValueError(
            f"Arguments `counts` {o.shape} and `probabilities` {p.shape} must be 1-D of one length."
        )
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
    return {
        "chi2": float(chi2),
        "dof": dof,
        "p_value": pval,
        "n": int(n),
        "min_expected": float(n * p[live].min()),
    }


def dephase(
    rho: Complex[Array, "*batch d d"], projectors: Complex[Array, "K d d"]
) -> Complex[Array, "*batch d d"]:
    r"""Block dephasing :math:`\mathcal D(\rho) = \sum_k P_k\rho P_k`; for
    :math:`\rho = |\psi_0\rangle\langle\psi_0|` this is the Born state."""
    return jnp.einsum("kab,...bc,kcd->...ad", projectors, rho, projectors)


def hybrid_stationary_h0(
    chi: Complex[Array, "d d"], projectors: Complex[Array, "K d d"], gamma, Gamma
) -> Complex[Array, "d d"]:
    r"""Closed-form stationary state of eq. 8 for :math:`H = 0`, :math:`\gamma > 0`.

    .. math:: \rho_\infty = \frac{\gamma\chi + \Gamma\,\mathcal D(\chi)}{\gamma + \Gamma},
        \qquad \mathcal D(\chi) = \sum_kP_k\chi P_k.

    Derivation: :math:`\mathcal D` is a projection (:math:`\mathcal D^2 = \mathcal D`), so
    on :math:`\rho = a\chi + b\mathcal D(\chi)` the generator gives
    :math:`\Gamma(\mathcal D - 1)\rho = -\Gamma a(\chi - \mathcal D\chi)` and
    :math:`\gamma(\chi - \rho)`; both vanish together for :math:`a = \gamma/(\gamma+\Gamma)`,
    :math:`b = \Gamma/(\gamma+\Gamma)`. Limits: :math:`\chi` as :math:`\Gamma\to 0`,
    :math:`\mathcal D(\chi)` (not the Born state of :math:`\rho_0`) as :math:`\gamma\to 0`;
    see the module docstring of :mod:`thermojax.models.oqt`.

    Args:
        chi: Steady state :math:`\chi` as a matrix, shape ``(d, d)``.
        projectors: Shape ``(K, d, d)``, same basis as ``chi``.
        gamma: :math:`\gamma > 0`.
        Gamma: :math:`\Gamma \ge 0`.

    Returns:
        Shape ``(d, d)``.
    """
    return (gamma * chi + Gamma * dephase(chi, projectors)) / (gamma + Gamma)


def zeno_stationary(
    hamiltonian: Complex[Array, "d d"],
    chi: Complex[Array, "d d"],
    projectors: Complex[Array, "K d d"],
    gamma,
) -> Complex[Array, "d d"]:
    r"""Stationary state of eq. 8 in the Zeno limit :math:`\Gamma \to \infty` (:math:`\gamma > 0`).

    Strong collapse confines :math:`\rho` to block-diagonal matrices; projecting the
    generator onto them (:math:`\mathcal D\mathcal L\mathcal D`, corrections
    :math:`O(\|H\|^2/\Gamma)`) leaves
    :math:`\dot\rho = -i[H_D,\rho] + \gamma(\mathcal D(\chi) - \rho)` with
    :math:`H_D = \sum_kP_kHP_k`, whose stationary state in the eigenbasis
    :math:`\{\varepsilon_a\}` of :math:`H_D` is

    .. math:: (\rho_Z)_{ab} = \frac{\gamma\,\mathcal D(\chi)_{ab}}{\gamma + i(\varepsilon_a - \varepsilon_b)}.

    For :math:`H = 0` it is :math:`\mathcal D(\chi)`, the :math:`\Gamma\to\infty` limit of
    :func:`hybrid_stationary_h0`.

    Args:
        hamiltonian: Shape ``(d, d)``.
        chi: Shape ``(d, d)``.
        projectors: Shape ``(K, d, d)``; all three in one basis.
        gamma: :math:`\gamma > 0`.

    Returns:
        Shape ``(d, d)``, in the basis of the arguments.
    """
    h_d = dephase(hamiltonian, projectors)
    eps, v = jnp.linalg.eigh(0.5 * (h_d + h_d.conj().T))
    dchi = v.conj().T @ dephase(chi, projectors) @ v
    w = eps.reshape(-1, 1) - eps.reshape(1, -1)
    return v @ (gamma * dchi / (gamma + 1j * w)) @ v.conj().T


# ----------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------


class SectorParams(Section):
    """Hilbert space and the collapse sectors ``P_k`` (consecutive blocks of a basis)."""

    dim: int = Field(8, ge=2, description="d, Hilbert-space dimension")
    sector_sizes: list[int] = Field([4, 2, 2], description="rank of each P_k; must sum to dim")
    random_basis: bool = Field(True, description="P_k in a Haar-random basis (else the H eigenbasis)")

    @model_validator(mode="after")
    def _sizes(self):
        if len(self.sector_sizes) < 2:
            raise ValueError(f"sector_sizes needs at least 2 sectors, got {self.sector_sizes}")
        if min(self.sector_sizes) < 1:
            raise ValueError(f"sector_sizes must all be >= 1, got {self.sector_sizes}")
        if sum(self.sector_sizes) != self.dim:
            raise ValueError(
                f"sector_sizes {self.sector_sizes} sum to {sum(self.sector_sizes)}, "
                f"but dim = {self.dim}: the projectors must be complete"
            )
        return self


def _on_grid(t: float, dt: float) -> bool:
    n = round(t / dt)
    return n >= 1 and abs(n * dt - t) <= 1e-9 * dt


class BornRuleConfig(ExperimentConfig):
    """Collapse-only SUI trajectories (H = 0, gamma = 0) against the Born rule."""

    system: SectorParams = SectorParams()
    Gamma: float = Field(1.0, gt=0, description="collapse rate J N / hbar")
    n_traj: int = Field(2000, ge=10)
    dt: float = Field(0.01, gt=0)
    t_final: float = Field(12.0, gt=0, description="collapse time; ln-weights fall like -4 Gamma t")
    n_times: int = Field(41, ge=2, description="save times on [0, t_final]")
    decided_threshold: float = Field(1e-3, gt=0, lt=1, description="decided: max_k <P_k> > 1 - this")
    noise: Literal["reduced", "literal"] = "reduced"
    expectation: Literal["normalized", "raw"] = "normalized"
    chunk_size: int | None = Field(None, ge=1)
    n_plot_trajectories: int = Field(8, ge=0)

    @model_validator(mode="after")
    def _grid(self):
        if self.t_final < 10 * self.dt:
            raise ValueError(f"t_final ({self.t_final}) must be >= 10 dt ({10 * self.dt})")
        seg = self.t_final / (self.n_times - 1)
        if not _on_grid(seg, self.dt):
            raise ValueError(
                f"t_final / (n_times - 1) = {seg} must be a multiple of dt = {self.dt}"
            )
        return self


def born_rule_model(cfg_system: SectorParams, Gamma: float, key: PRNGKeyArray):
    """The collapse-only model, its projectors (original basis) and a random ket.

    Returns:
        ``(model, projectors, psi0)``: an :class:`OQTModel` with :math:`H=0`,
        :math:`\\gamma=0` and rate ``Gamma``; projectors ``(K, d, d)`` and ``psi0`` ``(d,)``
        in the original basis.
    """
    d = cfg_system.dim
    k_basis, k_psi = jax.random.split(key)
    proj = sector_projectors(cfg_system.sector_sizes, k_basis if cfg_system.random_basis else None)
    psi0 = random_ket(k_psi, d)
    model = OQTModel(jnp.zeros((d, d)), jnp.full(d, 1.0 / d), 0.0, Gamma=Gamma, projectors=proj)
    return model, proj, psi0


def run_born_rule(cfg: BornRuleConfig) -> ExperimentResult:
    """Run ``sui_born_rule``: histogram of final sectors against Born probabilities."""
    sw = Stopwatch()
    k_model, k_traj = jax.random.split(jax.random.key(cfg.seed))
    model, proj, psi0 = born_rule_model(cfg.system, cfg.Gamma, k_model)
    es = model.eigensystem
    born = np.asarray(born_probabilities(psi0, proj))
    psi0_eig = es.ket_to_eigenbasis(psi0)
    p_eig = model.projectors
    ts = np.linspace(0.0, cfg.t_final, cfg.n_times)
    sse = model.sse(noise=cfg.noise, expectation=cfg.expectation)
    with sw("trajectories"):
        res = simulate_trajectories(
            sse, psi0_eig, ts, k_traj, n_traj=cfg.n_traj, dt=cfg.dt,
            observables={"weights": lambda t, y: sector_weights(y, p_eig)},
            record_norm=True, store_trajectories=True, chunk_size=cfg.chunk_size,
            progress=cfg.progress,
        )
        res.trajectories.block_until_ready()
    diverged = np.asarray(res.diverged)
    w_all = np.asarray(sector_weights(res.trajectories, p_eig))  # (n, T, K)
    w_final = w_all[:, -1]
    sector, decided = final_sectors(w_final, cfg.decided_threshold)
    use = decided & ~diverged
    k = len(cfg.system.sector_sizes)
    counts = np.bincount(sector[use], minlength=k)
    test = chi_square_test(counts, born)
    # the same histogram against a deliberately wrong distribution (uniform): shows power
    wrong = chi_square_test(counts, np.full(k, 1.0 / k))
    mean_w = np.asarray(res.mean["weights"])
    se_w = np.asarray(res.stderr("weights"))
    z_mart = np.abs(mean_w - born.reshape(1, k)) / np.where(se_w > 0, se_w, np.inf)
    summary = {
        "born_probabilities": born.tolist(),
        "counts": counts.tolist(),
        "expected": (test["n"] * born).tolist(),
        "chi2": test["chi2"],
        "dof": test["dof"],
        "p_value": test["p_value"],
        "min_expected": test["min_expected"],
        "p_value_vs_uniform": wrong["p_value"],
        "n_traj": cfg.n_traj,
        "n_counted": int(use.sum()),
        "undecided": int((~decided & ~diverged).sum()),
        "n_diverged": int(res.n_diverged),
        "min_final_max_weight": float(np.min(np.max(w_final[~diverged], axis=1))),
        "mean_weights_max_z": float(z_mart[1:].max()),
        "mean_weights_note": "E<P_k>(t) is a martingale: should stay at the Born value "
                             "(max z-score over k and t > 0)",
        "max_norm_drift": float(np.max(np.asarray(res.norm_drift))),
        "timings_s": sw.seconds,
    }
    n_plot = min(cfg.n_plot_trajectories, cfg.n_traj)
    arrays = {
        "ts": ts, "born": born, "counts": counts, "final_weights": w_final,
        "final_sector": sector, "decided": decided, "diverged": diverged,
        "mean_weights": mean_w, "stderr_weights": se_w, "sample_weights": w_all[:n_plot],
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_born_rule(result: ExperimentResult, cfg: BornRuleConfig):
    a, s = result.arrays, result.summary
    k = len(a["born"])
    fig, (ax, ax2) = plot.subplots(1, 2, width=4.8, height=3.6)
    x = np.arange(k)
    n = s["n_counted"]
    exp = n * a["born"]
    ax.bar(x - 0.2, a["counts"], width=0.4, color="tab:blue", label="final sector (trajectories)")
    ax.bar(x + 0.2, exp, width=0.4, color="tab:orange", alpha=0.8,
           yerr=np.sqrt(exp * (1 - a["born"])), capsize=3, label=r"Born $n\langle\psi_0|P_k|\psi_0\rangle$")
    ax.set_xticks(x, [f"$P_{i + 1}$ (rank {r})" for i, r in enumerate(cfg.system.sector_sizes)])
    ax.set_ylabel("trajectories")
    ax.legend(fontsize=8)
    ax.set_title(rf"$\chi^2$ = {s['chi2']:.2f}, dof = {s['dof']}, p = {s['p_value']:.3f}", fontsize=10)
    ts = a["ts"]
    colors = [f"C{i}" for i in range(k)]
    for j in range(a["sample_weights"].shape[0]):
        for i in range(k):
            ax2.plot(ts, a["sample_weights"][j, :, i], color=colors[i], lw=0.7, alpha=0.45)
    for i in range(k):
        m, e = a["mean_weights"][:, i], a["stderr_weights"][:, i]
        ax2.fill_between(ts, m - 2 * e, m + 2 * e, color=colors[i], alpha=0.3)
        ax2.plot(ts, m, color=colors[i], lw=2.2, label=rf"$E\langle P_{i + 1}\rangle$ ± 2 s.e.")
        ax2.axhline(a["born"][i], color=colors[i], ls="--", lw=1)
    ax2.set_xlabel(r"$t$  [$1/\Gamma$ = %.3g]" % (1 / cfg.Gamma))
    ax2.set_ylabel(r"$\langle P_k\rangle$")
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax2.set_title("thin: single trajectories; dashed: Born", fontsize=10)
    plot.caption(
        fig, f"H = 0, γ = 0, Γ = {cfg.Gamma}, d = {cfg.system.dim}, sectors {cfg.system.sector_sizes}; "
        f"{s['n_counted']}/{s['n_traj']} counted, {s['undecided']} undecided "
        f"(max⟨P⟩ ≤ 1−{cfg.decided_threshold:g}), {s['n_diverged']} diverged; dt = {cfg.dt}",
    )
    return {"born_rule": fig}


register(
    "sui_born_rule", BornRuleConfig, run_born_rule, plot_born_rule,
    "SUI collapse only (H = 0, gamma = 0): final sectors vs Born rule, chi-square (eq. 7)",
)


# ----------------------------------------------------------------------------------
# sui_hybrid
# ----------------------------------------------------------------------------------


class RatioSweep(Section):
    """Gamma / gamma on a log grid ``logspace(log10_min, log10_max, n)``."""

    log10_min: float = -3.0
    log10_max: float = 3.0
    n: int = Field(25, ge=3)

    @model_validator(mode="after")
    def _range(self):
        if self.log10_max <= self.log10_min:
            raise ValueError(f"log10_max ({self.log10_max}) must exceed log10_min ({self.log10_min})")
        return self


class CheckOptions(Section):
    """Independent confirmations at one ratio ``Gamma / gamma = ratio`` (with H != 0)."""

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


def run_hybrid(cfg: HybridConfig) -> ExperimentResult:
    r"""Run ``sui_hybrid``: :math:`\rho_\infty(\Gamma/\gamma)` for :math:`H=0` and :math:`H\neq0`."""
    sw = Stopwatch()
    key = jax.random.key(cfg.seed)
    k_model, k_traj = jax.random.split(key)
    es, steady, proj, psi0 = _models(cfg, k_model)
    gamma = cfg.alpha_N
    d = cfg.system.dim
    # H = 0 with the same eigenvectors (so the same chi and coordinates) as the H != 0 model.
    es0 = Eigensystem(jnp.zeros(d), es.vectors)
    base = {
        "H=0": OQTModel(es0, steady, gamma, Gamma=1.0, projectors=proj),
        "H": OQTModel(es, steady, gamma, Gamma=1.0, projectors=proj),
    }
    p_eig = base["H"].projectors
    chi_m = base["H"].chi_matrix()
    h_eig = {"H=0": jnp.zeros((d, d), complex), "H": base["H"].hamiltonian_eig()}
    dchi = dephase(chi_m, p_eig)
    zeno = {name: zeno_stationary(h_eig[name], chi_m, p_eig, gamma) for name in base}
    ratios = np.logspace(cfg.ratios.log10_min, cfg.ratios.log10_max, cfg.ratios.n)

    out = {name: {"residual": [], "null_dim": [], "td_chi": [], "td_zeno": [], "min_eig": [],
                  "trace_err": []} for name in base}
    closed_err = []
    rho_h = []
    with sw("stationary_sweep"):
        for r in ratios:
            for name, m0 in base.items():
                m = OQTModel(m0.eigensystem, steady, gamma, Gamma=r * gamma, projectors=proj)
                st = m.stationary_state()
                rho = st.rho
                o = out[name]
                o["residual"].append(float(st.residual))
                o["null_dim"].append(int(st.null_dim))
                o["td_chi"].append(float(trace_distance(rho, chi_m)))
                o["td_zeno"].append(float(trace_distance(rho, zeno[name])))
                o["min_eig"].append(float(jnp.linalg.eigvalsh(rho)[0]))
                o["trace_err"].append(float(jnp.abs(jnp.trace(rho) - 1.0)))
                if name == "H=0":
                    ref = hybrid_stationary_h0(chi_m, p_eig, gamma, r * gamma)
                    closed_err.append(float(jnp.max(jnp.abs(rho - ref))))
                else:
                    rho_h.append(np.asarray(rho))
    out = {name: {k: np.asarray(v) for k, v in o.items()} for name, o in out.items()}
    closed_err = np.asarray(closed_err)

    # gamma = 0 exactly (H = 0): the long-time state depends on rho0 and is its Born state
    rho0 = ket_to_dm(es.ket_to_eigenbasis(psi0))
    with sw("gamma_zero"):
        m00 = OQTModel(es0, steady, 0.0, Gamma=gamma, projectors=proj)
        st00 = m00.stationary_state(rho0)
        born = dephase(rho0, p_eig)
        born_err = float(jnp.max(jnp.abs(st00.rho - born)))

    checks = {}
    rc = cfg.check.ratio
    m_check = OQTModel(es, steady, gamma, Gamma=rc * gamma, projectors=proj)
    st_check = m_check.stationary_state()
    if cfg.check.ode:
        with sw("ode_check"):
            t_end = cfg.check.gamma_t_ode / gamma
            sol = solve_ode(
                lambda t, y, args: m_check.rhs(t, y), rho0, jnp.array([0.0, t_end]),
                solver=dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-12),
            )
            rho_t = sol.ys[-1]
        checks["ode"] = {
            "ratio": rc, "t": t_end,
            "max_abs_diff": float(jnp.max(jnp.abs(rho_t - st_check.rho))),
            "transient_bound_exp_minus_gamma_t": float(np.exp(-cfg.check.gamma_t_ode)),
        }
    if cfg.check.n_traj > 0:
        t_end = cfg.check.gamma_t_traj / gamma
        n_steps = max(int(round(t_end / cfg.check.dt)), 1)
        t_end = n_steps * cfg.check.dt
        obs = {
            "rho_re": lambda t, y: jnp.real(ket_to_dm(y)),
            "rho_im": lambda t, y: jnp.imag(ket_to_dm(y)),
        }
        with sw("trajectory_check"):
            res = simulate_trajectories(
                m_check.sse(), es.ket_to_eigenbasis(psi0), np.array([0.0, t_end]), k_traj,
                n_traj=cfg.check.n_traj, dt=cfg.check.dt, observables=obs, record_norm=True,
                progress=cfg.progress,
            )
        mean = res.mean["rho_re"][-1] + 1j * res.mean["rho_im"][-1]
        z_re = np.abs(np.asarray(res.mean["rho_re"][-1] - jnp.real(st_check.rho))) / np.asarray(
            res.stderr("rho_re")[-1])
        im_se = np.asarray(res.stderr("rho_im")[-1])
        diag = np.eye(d, dtype=bool)
        z_im = np.abs(np.asarray(res.mean["rho_im"][-1] - jnp.imag(st_check.rho)))[~diag] / im_se[~diag]
        checks["trajectories"] = {
            "ratio": rc, "t": t_end, "n_traj": cfg.check.n_traj, "dt": cfg.check.dt,
            "n_diverged": int(res.n_diverged),
            "max_abs_diff": float(jnp.max(jnp.abs(mean - st_check.rho))),
            "max_z_re": float(z_re.max()), "max_z_im": float(z_im.max()),
            "max_norm_drift": float(np.max(np.asarray(res.norm_drift))),
            "note": "z = |mean - rho_inf| / stderr per entry; Euler-Maruyama bias O(dt) not "
                    "included in the stderr",
        }

    i_lo, i_hi = 0, -1
    summary = {
        "gamma": gamma,
        "ratios": ratios.tolist(),
        "chi_kind": cfg.chi,
        "max_residual": float(max(out[n]["residual"].max() for n in out)),
        "null_dim": sorted({int(x) for n in out for x in out[n]["null_dim"]}),
        "max_trace_error": float(max(out[n]["trace_err"].max() for n in out)),
        "min_eigenvalue": float(min(out[n]["min_eig"].min() for n in out)),
        "h0_closed_form_max_abs_err": float(closed_err.max()),
        "limits": {
            name: {
                "td_chi_at_min_ratio": float(out[name]["td_chi"][i_lo]),
                "td_gamma_ref_at_max_ratio": float(out[name]["td_zeno"][i_hi]),
                "td_chi_to_gamma_ref": float(trace_distance(chi_m, zeno[name])),
            }
            for name in out
        },
        "gamma_reference": "H=0: D(chi) = sum_k P_k chi P_k; H: Zeno state, stationary state of "
                           "-i[H_D, rho] + gamma (D(chi) - rho), H_D = sum_k P_k H P_k",
        "gamma_zero": {
            "born_state_max_abs_err": born_err,
            "null_dim": int(st00.null_dim),
            "residual": float(st00.residual),
            "td_born_to_D_chi": float(trace_distance(born, dchi)),
            "note": "gamma = 0, H = 0: the rho0-projection onto the null space is the Born state "
                    "of rho0; for any gamma > 0 the state is unique and tends to D(chi) instead "
                    "(the limits do not commute)",
        },
        "checks": checks,
        "timings_s": sw.seconds,
    }
    arrays = {"ratios": ratios, "h0_closed_form_err": closed_err, "rho_inf_H": np.stack(rho_h)}
    for name, key_ in (("H=0", "h0"), ("H", "h")):
        for k, v in out[name].items():
            arrays[f"{key_}_{k}"] = v
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_hybrid(result: ExperimentResult, cfg: HybridConfig):
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
    "sui_hybrid", HybridConfig, run_hybrid, plot_hybrid,
    "SUI hybrid stationary state vs Gamma/gamma: chi (Gamma -> 0) to the collapse limit (eq. 8)",
)
