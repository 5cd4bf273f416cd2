"""Config sections and helpers shared by the KMS experiments (not an experiment)."""

from typing import Literal

from pydantic import Field

from ...config import Section
from ...models.kms import GENERATORS, MasterEquation, OpenSystem, make_generator

GeneratorName = Literal["davies", "redfield", "coarse_grained", "exact_kms", "ule"]
ALL_GENERATORS: list[GeneratorName] = ["davies", "redfield", "coarse_grained", "exact_kms", "ule"]
TAU_FREE = ("davies", "redfield", "ule")

LABELS = {
    "davies": "Davies",
    "redfield": "Bloch–Redfield",
    "coarse_grained": "coarse-grained",
    "exact_kms": "exact KMS",
    "ule": "ULE",
}
COLORS = {
    "davies": "C0",
    "redfield": "C3",
    "coarse_grained": "C2",
    "exact_kms": "C1",
    "ule": "C4",
}


class Bath(Section):
    """The reference model's Ohmic bath and coupling (Ising chain, X and Z of site 1)."""

    beta: float = Field(1.0, gt=0, le=100, description="inverse temperature (1/J)")
    eta: float = Field(0.02, gt=0, le=10, description="Ohmic coupling eta")
    omega_c: float = Field(8.0, gt=0, le=1000, description="Gaussian cutoff frequency (J)")
    coupling_strength: float = Field(1.0, gt=0, le=10, description="lambda")

    def system(self, n_sites: int) -> OpenSystem:
        """The reference `OpenSystem` on `n_sites` spins."""
        return OpenSystem.ising(
            n_sites, beta=self.beta, eta=self.eta, omega_c=self.omega_c, coupling_strength=self.coupling_strength
        )


def build(names, system: OpenSystem, tau: float, basis: str = "original") -> dict[str, MasterEquation]:
    """Generators by name (`tau` is ignored by those that have none)."""
    return {n: make_generator(n, system, tau=tau if n not in TAU_FREE else None, basis=basis) for n in names}


assert set(ALL_GENERATORS) == set(GENERATORS)
