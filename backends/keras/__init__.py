"""The Keras 3 backend (installed as `ffbench_backends.keras`); runs on KERAS_BACKEND=tensorflow or jax."""

from ffbench_backends.keras.backend import KerasBackend as Backend

__all__ = ["Backend"]
