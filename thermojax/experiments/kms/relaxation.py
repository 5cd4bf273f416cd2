r"""`kms_relaxation`: relaxation of the Ising chain from the all-up product state under every
generator (arXiv:2505.20064): energy, trace distance to $\sigma_\beta$ and the smallest
eigenvalue of $\rho(t)$ against time, and the spectral gaps.

Each generator is integrated by `thermojax.mesolve` (diffrax Tsit5) as the generator
object itself. The gaps are dense (full Liouvillian) up to `dense_gap_max_dim`; beyond
that only the Davies gap is given (Lanczos on its KMS-symmetrised form, exact for
Davies because its dissipator commutes with $[H_S,\cdot]$). A negative smallest
eigenvalue (Bloch–Redfield is not completely positive) is reported, never clipped; it
counts as negative (`negative_eigenvalue`) below $-100\,$`rtol`, the scale of the
integration error on a pure initial state.
"""

from typing import Literal

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from ... import plot
from ...config import ExperimentConfig, TimeGrid
from ...models.kms import dissipative_gap, spectral_gap
from ...options import ODE, Options
from ...solvers import mesolve
from ...spectra import trace_distance
from .. import ExperimentResult, register, stage
from ._common import ALL_GENERATORS, COLORS, LABELS, Bath, GeneratorName, build


class Config(ExperimentConfig):
    """`kms_relaxation` config."""

    experiment: Literal["kms_relaxation"] = "kms_relaxation"
    n_sites: list[int] = Field([4, 5, 6], min_length=1, description="chain lengths N (d = 2^N)")
    bath: Bath = Bath()
    tau: float = Field(1.0, gt=0, description="coarse-graining time of the Gaussian generators")
    time: TimeGrid = TimeGrid(t_max=60.0, n_times=61)
    generators: list[GeneratorName] = Field(list(ALL_GENERATORS), min_length=1)
    rtol: float = Field(1e-7, gt=0, lt=1e-2, description="ODE relative (and absolute) tolerance")
    dense_gap_max_dim: int = Field(32, ge=2, le=64, description="dense full gaps up to this d")


def _relax(cfg: Config, n: int) -> dict:
    system = cfg.bath.system(n)
    d = system.dim
    gens = build(cfg.generators, system, cfg.tau)
    tsave = cfg.time.times()
    psi0 = jnp.zeros(d).at[0].set(1.0)  # all spins up (Z = +1 on every site)
    sigma = system.gibbs_state()
    h = system.hamiltonian()
    e_gibbs = float(jnp.real(jnp.trace(h @ sigma)))
    method = ODE(stepsize_controller=dfx.PIDController(rtol=cfg.rtol, atol=cfg.rtol))
    out = {"e_gibbs": e_gibbs}
    for name, gen in gens.items():
        res = mesolve(gen, [], psi0, tsave, method=method, options=Options(progress=False))
        rho = res.states
        out[f"energy_{name}"] = jnp.real(jnp.einsum("ij,tji->t", h, rho))
        out[f"distance_{name}"] = trace_distance(rho, sigma[None])
        out[f"min_eig_{name}"] = jnp.linalg.eigvalsh(0.5 * (rho + jnp.conj(jnp.swapaxes(rho, -1, -2))))[:, 0]
        out[f"ok_{name}"] = bool(jnp.all(res.success))
        if d <= cfg.dense_gap_max_dim:
            out[f"gap_{name}"] = float(spectral_gap(gen))
        elif name == "davies":
            out[f"gap_{name}"] = float(dissipative_gap(build(["davies"], system, cfg.tau, "eigen")["davies"],
                                                       method="lanczos"))
        else:
            out[f"gap_{name}"] = float("nan")
    return out


def run(cfg: Config) -> ExperimentResult:
    arrays = {"t": np.asarray(cfg.time.times())}
    summary = {"n_sites": list(cfg.n_sites), "tau": cfg.tau, "gaps": {}, "min_eigenvalue": {},
               "final_distance": {}, "gibbs_energy": {}, "negative_eigenvalue": {}, "solver_ok": {}}
    for n in cfg.n_sites:
        out = stage(f"relax_N{n}", lambda n=n: _relax(cfg, n))
        key = str(n)
        summary["gibbs_energy"][key] = out["e_gibbs"]
        for group in ("gaps", "min_eigenvalue", "final_distance", "negative_eigenvalue", "solver_ok"):
            summary[group][key] = {}
        for name in cfg.generators:
            me = np.asarray(out[f"min_eig_{name}"])
            summary["gaps"][key][name] = out[f"gap_{name}"]
            summary["min_eigenvalue"][key][name] = float(me.min())
            summary["negative_eigenvalue"][key][name] = bool(me.min() < -100 * cfg.rtol)
            summary["final_distance"][key][name] = float(np.asarray(out[f"distance_{name}"])[-1])
            summary["solver_ok"][key][name] = bool(out[f"ok_{name}"])
            for q in ("energy", "distance", "min_eig"):
                arrays[f"{q}_{name}_N{n}"] = np.asarray(out[f"{q}_{name}"])
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: Config) -> dict:
    a, s = result.arrays, result.summary
    t = a["t"]
    rows = len(cfg.n_sites)
    fig, axes = plot.subplots(rows, 3, width=4.2, height=3.0, squeeze=False)
    for r, n in enumerate(cfg.n_sites):
        ax_e, ax_d, ax_m = axes[r]
        for name in cfg.generators:
            kw = dict(color=COLORS[name], label=LABELS[name])
            ax_e.plot(t, a[f"energy_{name}_N{n}"], **kw)
            ax_d.semilogy(t, np.maximum(a[f"distance_{name}_N{n}"], 1e-16), **kw)
            ax_m.plot(t, a[f"min_eig_{name}_N{n}"], **kw)
        ax_e.axhline(s["gibbs_energy"][str(n)], color="k", ls=":", lw=1, label=r"Tr$(H\sigma_\beta)$")
        ax_m.axhline(0.0, color="k", lw=0.8)
        ax_m.set_yscale("symlog", linthresh=1e-6)
        ax_e.set(ylabel=f"N = {n}\n" + r"energy $\langle H_S\rangle$")
        ax_d.set(ylabel=r"trace distance $D(\rho(t), \sigma_\beta)$")
        ax_m.set(ylabel=r"smallest eigenvalue of $\rho(t)$")
        if r == 0:
            ax_e.legend(fontsize=7)
            ax_e.set_title("energy")
            ax_d.set_title("trace distance to the Gibbs state")
            ax_m.set_title("positivity (< 0: not a state; symlog)")
        if r == rows - 1:
            for ax in (ax_e, ax_d, ax_m):
                ax.set_xlabel("time t (1/J)")
    plot.caption(fig, f"Ising chain from |up...up>, beta = {cfg.bath.beta:g}, lambda = {cfg.bath.coupling_strength:g}, "
                 f"tau = {cfg.tau:g}")
    fig2, ax = plot.subplots(1, 1, width=6.0)
    width = 0.8 / len(cfg.generators)
    for k, name in enumerate(cfg.generators):
        vals = [s["gaps"][str(n)][name] for n in cfg.n_sites]
        ax.bar(np.arange(rows) + k * width, vals, width, color=COLORS[name], label=LABELS[name])
    ax.set_xticks(np.arange(rows) + 0.4 - width / 2, [f"N = {n}" for n in cfg.n_sites])
    ax.set(ylabel=r"spectral gap $\Delta$ (J)", title="spectral gaps (missing bar: not computed at this size)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(cfg.generators))
    return {"relaxation": fig, "gaps": fig2}


register("kms_relaxation", Config, run, plot_result, "KMS paper: relaxation to the Gibbs state under every generator")
