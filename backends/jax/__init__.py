"""The JAX backend (installed as `ffbench_backends.jax`).

Importing this package imports no framework: `Backend` loads `backend.py` (and the
framework) when first asked for, and `traits` (what the backend can run and pack) is
framework-free, so the driver of `ffbench run` can plan with it.
"""


def __getattr__(name: str):
    if name == "Backend":
        from ffbench_backends.jax.backend import JaxBackend
        return JaxBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
