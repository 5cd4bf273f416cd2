r"""`sui_born_rule`: SUI collapse only ($H = 0$, $\gamma = 0$, $\Gamma > 0$). Every
trajectory ends in one sector $P_k$ with probability $\langle\psi_0|P_k|\psi_0\rangle$
(arXiv:2504.16197, eq. 7 and the text after it); a chi-square test compares the
histogram of final sectors with these Born probabilities, and the martingale
$E\langle P_k\rangle(t)$ with its constant Born value."""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Int, PRNGKeyArray
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig, Section
from ...models.oqt import OQTModel, born_probabilities, sector_projectors, sector_weights
from ...options import EulerMaruyama, Options
from ...spectra import random_ket
from ...stats import chi_square_test
from ...trajectories import simulate_trajectories
from .. import ExperimentResult, register, stage


def final_sectors(
    weights: Float[ArrayLike, "n K"], threshold: float = 1e-3
) -> tuple[Int[np.ndarray, " n"], np.ndarray]:
    r"""Sector each trajectory collapsed into, and whether it has decided.

    A trajectory has *decided* when its largest weight exceeds `1 - threshold`.

    Args:
        weights: Final sector weights per trajectory, shape `(n, K)`.
        threshold: Tolerance, in `(0, 1)`.

    Returns:
        `(sector, decided)`: the argmax sector, shape `(n,)` int, and a boolean mask
        `(n,)`.

    Raises:
        ValueError: On a weights array that is not 2-D or a threshold outside (0, 1).
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"Argument `weights` must have shape (n, K), got {w.shape}.")
    if not 0 < threshold < 1:
        raise ValueError(f"Argument `threshold` must be in (0, 1), got {threshold!r}.")
    return np.argmax(w, axis=1), np.max(w, axis=1) > 1.0 - threshold


class SectorParams(Section):
    """Hilbert space and the collapse sectors `P_k` (consecutive blocks of a basis)."""

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

    def memory_requirements(self):
        d = self.system.dim
        # every trajectory is stored (final sectors need each path): ntraj x T kets, plus weights
        per = self.n_times * (16 * d + 8 * len(self.system.sector_sizes))
        return [("n_traj", self.n_traj * per * 2, f"{self.n_traj} stored trajectories of dimension {d}")]

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
    r"""The collapse-only model, its projectors (original basis) and a random ket:
    `(model, projectors, psi0)`, an `OQTModel` with $H = 0$, $\gamma = 0$ and rate `Gamma`."""
    d = cfg_system.dim
    k_basis, k_psi = jax.random.split(key)
    proj = sector_projectors(cfg_system.sector_sizes, k_basis if cfg_system.random_basis else None)
    psi0 = random_ket(k_psi, d)
    model = OQTModel(jnp.zeros((d, d)), jnp.full(d, 1.0 / d), 0.0, Gamma=Gamma, projectors=proj)
    return model, proj, psi0


def _trajectories(cfg: BornRuleConfig, model, psi0_eig, ts, key):
    p_eig = model.projectors
    res = simulate_trajectories(
        model.sse(noise=cfg.noise, expectation=cfg.expectation), psi0_eig, ts, key, ntraj=cfg.n_traj,
        method=EulerMaruyama(cfg.dt), observables={"weights": lambda t, y: sector_weights(y, p_eig)},
        options=Options(record_norm=True, store_trajectories=True, chunk_size=cfg.chunk_size, progress=cfg.progress),
    )
    ens = res.ensemble
    return {"weights_all": sector_weights(ens.trajectories, p_eig), "diverged": ens.diverged,
            "mean_w": ens.mean["weights"], "se_w": ens.stderr("weights"), "n_diverged": int(ens.n_diverged),
            "max_norm_drift": float(jnp.max(ens.norm_drift))}


def run(cfg: BornRuleConfig) -> ExperimentResult:
    """Histogram of final sectors against the Born probabilities."""
    k_model, k_traj = jax.random.split(jax.random.key(cfg.seed))
    model, proj, psi0 = born_rule_model(cfg.system, cfg.Gamma, k_model)
    born = np.asarray(born_probabilities(psi0, proj))
    ts = np.linspace(0.0, cfg.t_final, cfg.n_times)
    psi0_eig = model.eigensystem.ket_to_eigenbasis(psi0)
    out = stage("trajectories", lambda: _trajectories(cfg, model, psi0_eig, ts, k_traj))
    w_all, diverged = out["weights_all"], out["diverged"]
    w_final = w_all[:, -1]
    sector, decided = final_sectors(w_final, cfg.decided_threshold)
    use = decided & ~diverged
    k = len(cfg.system.sector_sizes)
    counts = np.bincount(sector[use], minlength=k)
    test = chi_square_test(counts, born)
    # the same histogram against a deliberately wrong distribution (uniform): shows power
    wrong = chi_square_test(counts, np.full(k, 1.0 / k))
    mean_w, se_w = out["mean_w"], out["se_w"]
    z_mart = np.abs(mean_w - born.reshape(1, k)) / np.where(se_w > 0, se_w, np.inf)
    summary = {
        "born_probabilities": born.tolist(), "counts": counts.tolist(), "expected": (test["n"] * born).tolist(),
        "chi2": test["chi2"], "dof": test["dof"], "p_value": test["p_value"], "min_expected": test["min_expected"],
        "p_value_vs_uniform": wrong["p_value"], "n_traj": cfg.n_traj, "n_counted": int(use.sum()),
        "undecided": int((~decided & ~diverged).sum()), "n_diverged": out["n_diverged"],
        "min_final_max_weight": float(np.min(np.max(w_final[~diverged], axis=1))),
        "mean_weights_max_z": float(z_mart[1:].max()),
        "mean_weights_note": "E<P_k>(t) is a martingale: should stay at the Born value (max z-score over k and t > 0)",
        "max_norm_drift": out["max_norm_drift"],
    }
    n_plot = min(cfg.n_plot_trajectories, cfg.n_traj)
    arrays = {
        "ts": ts, "born": born, "counts": counts, "final_weights": w_final, "final_sector": sector,
        "decided": decided, "diverged": diverged, "mean_weights": mean_w, "stderr_weights": se_w,
        "sample_weights": w_all[:n_plot],
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: BornRuleConfig):
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
    "sui_born_rule", BornRuleConfig, run, plot_result,
    "SUI collapse only (H = 0, gamma = 0): final sectors vs Born rule, chi-square (eq. 7)",
)
