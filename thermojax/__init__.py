"""thermojax: JAX-accelerated, differentiable dynamics of quantum thermalization."""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
