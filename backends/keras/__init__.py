"""The Keras 3 backend (installed as `ffbench_backends.keras`); runs on KERAS_BACKEND=tensorflow or jax.
Importing it imports no framework (`ffbench.backend.lazy_backend`)."""

from ffbench.backend import lazy_backend

__getattr__ = lazy_backend(__name__, "ffbench_backends.keras.backend:KerasBackend")
