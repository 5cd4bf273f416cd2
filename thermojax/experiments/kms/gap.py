r"""`kms_gap`: spectral gap of the exact-KMS generator against the chain length N
(arXiv:2505.20064; CKG's generator, arXiv:2311.09207).

Three gaps per N:

* the full gap of the exact-KMS Liouvillian, dense, up to `dense_max_sites`;
* the gap of its dissipative part in the KMS geometry (Hermitian; matrix-free Lanczos,
  `scipy.sparse.linalg.eigsh` on the jitted generator), to `n_max`: a lower bound on
  the full gap and the gap that CKG-type mixing bounds use;
* the Davies gap (the same Lanczos; exact, since the Davies dissipator commutes with
  $[H_S,\cdot]$).

The matrix-free full gap by ARPACK's rightmost-eigenvalue Arnoldi is not used: the
Liouvillian's eigenvalues lie on a thin strip $\mathrm{Re}\lambda\in[-0.5,0]$,
$|\mathrm{Im}\lambda|\lesssim 20$ and the iteration converged to a wrong eigenvalue at
N = 5 (`docs/models/kms.md`).
"""

import time
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ... import plot
from ...config import ExperimentConfig
from ...models.kms import Davies, ExactKMS, dissipative_gap, spectral_gap
from .. import ExperimentResult, register, stage
from ._common import COLORS, LABELS, Bath


class Config(ExperimentConfig):
    """`kms_gap` config."""

    experiment: Literal["kms_gap"] = "kms_gap"
    n_min: int = Field(2, ge=1, le=12)
    n_max: int = Field(7, ge=1, le=12, description="largest chain length (d = 2^n_max)")
    dense_max_sites: int = Field(5, ge=1, le=6, description="full dense gap up to this N")
    tau: float = Field(1.0, gt=0, description="coarse-graining time")
    bath: Bath = Bath()

    @model_validator(mode="after")
    def _order(self):
        if self.n_max < self.n_min:
            raise ValueError(f"n_max = {self.n_max} must be >= n_min = {self.n_min}")
        return self


def _gaps(cfg: Config, n: int) -> dict:
    system = cfg.bath.system(n)
    t0 = time.perf_counter()
    kms = ExactKMS(system, cfg.tau, basis="eigen")
    t_build = time.perf_counter() - t0
    out = {"n_jump": kms.n_jump, "build_s": t_build}
    t0 = time.perf_counter()
    out["kms_dissipative"] = float(dissipative_gap(kms, method="lanczos"))
    out["lanczos_s"] = time.perf_counter() - t0
    out["davies"] = float(dissipative_gap(Davies(system, basis="eigen"), method="lanczos"))
    if n <= cfg.dense_max_sites:
        t0 = time.perf_counter()
        out["kms_full"] = float(spectral_gap(kms))
        out["dense_s"] = time.perf_counter() - t0
    else:
        out["kms_full"] = float("nan")
    return out


def run(cfg: Config) -> ExperimentResult:
    ns = list(range(cfg.n_min, cfg.n_max + 1))
    rows = [stage(f"gap_N{n}", lambda n=n: _gaps(cfg, n)) for n in ns]
    keys = ("kms_full", "kms_dissipative", "davies")
    arrays = {"n_sites": np.asarray(ns)} | {k: np.asarray([r[k] for r in rows]) for k in keys}
    summary = {
        "n_sites": ns,
        "tau": cfg.tau,
        "gap": {k: [r[k] for r in rows] for k in keys},
        "n_jump": [r["n_jump"] for r in rows],
        "lanczos_s": [r["lanczos_s"] for r in rows],
        "largest_n": ns[-1],
    }
    return ExperimentResult(arrays=arrays, summary=summary)


def plot_result(result: ExperimentResult, cfg: Config) -> dict:
    a = result.arrays
    fig, ax = plot.subplots(1, 1, width=6.0)
    ns = a["n_sites"]
    ax.semilogy(ns, a["kms_full"], "-o", color=COLORS["exact_kms"], label=f"{LABELS['exact_kms']}: full gap (dense)")
    ax.semilogy(ns, a["kms_dissipative"], "--s", color=COLORS["exact_kms"],
                label=f"{LABELS['exact_kms']}: dissipative part (Lanczos)")
    ax.semilogy(ns, a["davies"], "-^", color=COLORS["davies"], label="Davies (Lanczos, exact)")
    ax.set(xlabel="chain length N", ylabel=r"spectral gap $\Delta$ (J)", xticks=ns,
           title=f"exact-KMS generator, tau = {cfg.tau:g}")
    ax.legend(fontsize=8)
    plot.caption(fig, f"Ising chain, beta = {cfg.bath.beta:g}, eta = {cfg.bath.eta:g}, "
                 f"lambda = {cfg.bath.coupling_strength:g}")
    return {"gap": fig}


register("kms_gap", Config, run, plot_result, "KMS paper: spectral gap of the exact-KMS generator against N")
