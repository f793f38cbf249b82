"""The JAX backend (installed as `ffbench_backends.jax`)."""

from ffbench_backends.jax.backend import JaxBackend as Backend

__all__ = ["Backend"]
