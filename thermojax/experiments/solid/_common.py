"""Pieces shared by the two lattice experiments: the chain section and the solve."""

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from ...config import Section
from ...models import solid
from ...options import ODE, Options


class ChainSection(Section):
    """The FPU-beta chain and its thawed-Gaussian flow (units: k = a = hbar = 1 unless set)."""

    n_atoms: int = Field(32, ge=2, le=4096)
    k: float = Field(1.0, gt=0, description="harmonic bond constant")
    beta: float = Field(1.0, ge=0, description="quartic bond constant")
    boundary: str = Field("fixed", pattern="^(fixed|periodic)$")
    forces: str = Field("local", pattern="^(local|averaged)$", description="Heller LHA or variational Gaussian")
    representation: str = Field("tangent", pattern="^(width|tangent)$", description="A and gamma, or X and P")
    rtol: float = Field(1e-8, gt=0, lt=1e-2, description="rtol = atol of diffrax Tsit5")

    def chain(self, beta: float | None = None) -> solid.FPUChain:
        return solid.FPUChain(self.n_atoms, self.k, self.beta if beta is None else beta, self.boundary)

    def model(self, mass: float, beta: float | None = None) -> solid.ThawedGaussian:
        return solid.ThawedGaussian(self.chain(beta), mass, forces=self.forces, representation=self.representation)

    def method(self) -> ODE:
        tol = jnp.asarray(self.rtol)  # an array: another tolerance reuses the compiled solve
        return ODE(dfx.Tsit5(), dfx.PIDController(rtol=tol, atol=tol), max_steps=10**7)


def integrate(section: ChainSection, model: solid.ThawedGaussian, g0: solid.GaussianState, ts) -> dict:
    """Solve and measure: centre, energies, norm, spread per atom at every save time
    (host arrays); raises if the solve failed."""
    res = model.evolve(g0, jnp.asarray(ts), method=section.method(), options=Options(throw=True))
    ob = model.observe(res.states)
    return {
        "q": np.asarray(ob.q),
        "p": np.asarray(ob.p),
        "energy": np.asarray(ob.energy),
        "classical_energy": np.asarray(ob.classical_energy),
        "norm": np.asarray(ob.norm),
        "spread": np.asarray(ob.spread),
        "steps": int(res.stats["num_steps"]),
    }


def crossing_time(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """First time `y` reaches `level` (log-linear interpolation); NaN if never, 0 if from the start."""
    above = np.nonzero(y >= level)[0]
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return 0.0
    f = (np.log(level) - np.log(y[i - 1])) / (np.log(y[i]) - np.log(y[i - 1]))
    return float(t[i - 1] + f * (t[i] - t[i - 1]))
