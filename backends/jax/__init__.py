"""The JAX backend (installed as `ffbench_backends.jax`).
Importing it imports no framework (`ffbench.backend.lazy_backend`)."""

from ffbench.backend import lazy_backend

__getattr__ = lazy_backend(__name__, "ffbench_backends.jax.backend:JaxBackend")
