r"""The interface a stochastic model implements: an Itô SDE with a matrix-free noise term."""

import abc
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped

__all__ = ["AbstractSDE"]


class AbstractSDE(eqx.Module):
    r"""An Itô SDE $\mathrm{d}y = f(t, y)\,\mathrm{d}t + g(t, y)\,\mathrm{d}W$.

    Subclasses are final `eqx.Module`s; constants that a fit may tune are array fields
    (they can carry a leading batch axis, see `in_axes` of
    [`simulate_trajectories`][thermojax.trajectories.simulate_trajectories]), sizes and
    switches are `eqx.field(static=True)`.

    The state `y` is any array (real or complex), e.g. a ket `psi` of shape `(d,)`.
    The noise increment `dw` is a pytree of *real* arrays described by
    [`noise_shape`][thermojax.trajectories.AbstractSDE.noise_shape]; each entry is an
    independent increment $\mathcal N(0, \Delta t)$.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp
        >>> class GBM(AbstractSDE):
        ...     k: jax.Array
        ...     sigma: jax.Array
        ...     def drift(self, t, y, args):
        ...         return -self.k * y
        ...     def diffusion_mv(self, t, y, args, dw):
        ...         return self.sigma * y * dw
        ...     def noise_shape(self):
        ...         return jax.ShapeDtypeStruct((1,), jnp.float64)
        >>> sde = GBM(jnp.array(1.0), jnp.array(0.5))
        >>> sde.drift(0.0, jnp.ones(1), None)
        Array([-1.], dtype=float64)
    """

    @abc.abstractmethod
    def drift(self, t: Float[ArrayLike, ""], y: Shaped[Array, "*state"], args: Any):
        r"""Drift $f(t, y)$.

        Args:
            t: Time, a scalar.
            y: State, shape `state` (no batch axes: batching is done by vmap).
            args: The `args` passed to the integrator, unchanged.

        Returns:
            An array of the shape and dtype of `y`.
        """

    @abc.abstractmethod
    def diffusion_mv(
        self, t: Float[ArrayLike, ""], y: Shaped[Array, "*state"], args: Any, dw: PyTree
    ):
        r"""Noise term $g(t, y)\,\mathrm{d}W$ as a matrix-free product.

        Args:
            t: Time, a scalar.
            y: State, shape `state`.
            args: The `args` passed to the integrator, unchanged.
            dw: Real Wiener increment, a pytree matching `noise_shape()`.

        Returns:
            An array of the shape and dtype of `y`. Must be linear in `dw`.
        """

    @abc.abstractmethod
    def noise_shape(self) -> PyTree[jax.ShapeDtypeStruct]:
        """Shape and (real floating) dtype of `dw`: a pytree of `jax.ShapeDtypeStruct`."""

    def conserves_norm(self) -> bool:
        r"""Whether the exact equation keeps $\|y\| = 1$ (stochastic Schrödinger
        equations). Then the integrators check that `y0` is normalised (or rescale it
        with `Options(normalize=True)`). Default `False`."""
        return False

    def divergence_norm(self) -> float | None:
        """Default `max_norm` of the integrators for this SDE: a path whose norm exceeds
        it is flagged as diverged. `None` (the default): only non-finite states count.
        Models with a conserved norm (stochastic Schrödinger equations) override it."""
        return None
