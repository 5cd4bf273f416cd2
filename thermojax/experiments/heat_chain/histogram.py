"""Fig. 4: the histogram of D² over random initial states of subunit 1, all pushed
through one exact eigendecomposition in sharded chunks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from ... import plot
from ...config import ExperimentConfig, TimeGrid
from ...models.heat_chain import HeatChain, HeatChainParams, deviation_d2, ham_populations, random_band_state
from ...sweep import item_keys, map_chunks
from .. import ExperimentResult, register, stage


class HistogramConfig(ExperimentConfig):
    """D² over many random initial states of subunit 1 (paper Fig. 4); times in 1/kappa."""

    model: HeatChainParams = HeatChainParams(n_subunits=2)
    n_states_cpu: int = Field(2000, ge=1)
    n_states_gpu: int = Field(15000, ge=1)
    chunk_size: int = Field(250, ge=1)
    d2_times: TimeGrid = TimeGrid(t_max=5.0, n_times=201)
    bins: int = Field(60, ge=2)

    def memory_requirements(self):
        return [("model.n_levels", self.model.memory_bytes(),
                 f"a chain of {self.model.n_subunits} x {self.model.n_levels} levels")]


@eqx.filter_jit
def _d2_chunk(es, chain: HeatChain, key, idx, ts):
    """D² of P_1 for the band states of the items `idx` (only subunit 1's rows formed)."""
    psi = jax.vmap(lambda k: random_band_state(k, chain.n_levels))(item_keys(key, idx))
    psi0 = chain.local_state(psi, 0)
    res = es.evolve(
        psi0, ts, e_ops=lambda x: jnp.sum(jnp.abs(x) ** 2, -1, keepdims=True),
        rows=slice(0, chain.n_levels), time_batch=8, save_states=False, kind="ket",
    )
    p1 = res.expect[:, 0, :]
    p0 = jnp.zeros(chain.n_subunits).at[0].set(1.0)
    p1_ham = ham_populations(chain.kappa, p0, ts)[:, 0]
    return deviation_d2(ts, p1, jnp.broadcast_to(p1_ham, p1.shape))


def _histogram(cfg: HistogramConfig, n_states: int):
    k_chain, k_states = jax.random.split(jax.random.key(cfg.seed))
    chain = cfg.model.build(k_chain)
    ts = cfg.d2_times.times(1.0 / float(chain.kappa))
    es = chain.eigensystem()
    # state i is drawn from fold_in(k_states, i): the same seed gives the same states
    # whatever the chunk size or device count
    d2 = map_chunks(
        lambda idx: _d2_chunk(es, chain, k_states, idx, ts), n_states, cfg.chunk_size,
        progress=cfg.progress, desc="D² chunks",
    )
    return {"D2": d2, "ts": np.asarray(ts), "kappa": float(chain.kappa)}


def run(cfg: HistogramConfig) -> ExperimentResult:
    """D² of `n_states_gpu` states on a GPU, `n_states_cpu` on a CPU."""
    on_gpu = jax.default_backend() == "gpu"
    n_states = cfg.n_states_gpu if on_gpu else cfg.n_states_cpu
    out = stage("batch_evolution", lambda: _histogram(cfg, n_states))
    d2 = out["D2"]
    med = float(np.median(d2))
    summary = {
        "n_states": int(n_states),
        "device": jax.default_backend(),
        "n_devices": jax.device_count(),
        "D2_mean": float(d2.mean()),
        "D2_median": med,
        "D2_std": float(d2.std()),
        "D2_min": float(d2.min()),
        "D2_max": float(d2.max()),
        "fraction_within_2x_median": float(np.mean(d2 < 2 * med)),
        "kappa_theory": out["kappa"],
    }
    return ExperimentResult(arrays={"D2": d2, "ts": out["ts"]}, summary=summary)


def plot_result(result: ExperimentResult, cfg: HistogramConfig):
    d2, s = result.arrays["D2"], result.summary
    fig, ax = plot.subplots(width=5.5, height=3.8)
    ax.hist(1e3 * d2, bins=cfg.bins, color="tab:blue", alpha=0.8)
    ax.axvline(1e3 * s["D2_median"], color="k", ls="--", lw=1, label="median")
    ax.set_xlabel(r"$10^3 D_1^2$")
    ax.set_ylabel("number of initial states")
    ax.legend()
    m = cfg.model
    plot.caption(
        fig, f"{s['n_states']} random states of subunit 1; N={m.n_subunits}, n={m.n_levels}, "
        f"δε={m.band_width}, λ={m.coupling:g}",
    )
    return {"d2_histogram": fig}


register(
    "heat_chain_d2_histogram", HistogramConfig, run, plot_result,
    "histogram of D² over random initial states, batched exact propagation (paper Fig. 4)",
)
