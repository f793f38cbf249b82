"""Compiled programs kept on disk across processes, for the backends whose compiler has a
persistent cache: JAX (the jax backend, and Keras on KERAS_BACKEND=jax).

A trial's programs depend on its spec's shapes and knobs, not on its seed or its data (those
are inputs), so the other seeds of a configuration, a resumed run and the Ray worker that
takes the next trial load the first trial's compiled programs instead of compiling them
again. The runner turns the cache on before a trial's programs are built
(`Backend.use_compile_cache`); `ffbench bench` and `ffbench check` do not, so a bench's
`compile_seconds` is a cold compile. In a results row, `compile_seconds` is what the trial
spent on its programs: loading them, where the cache had them.

Where: `$FFBENCH_CACHE_DIR/compiled/<compiler>` (default `~/.cache/ffbench/...`, as the
MNIST cache); `FFBENCH_COMPILE_CACHE=0` leaves it off. A folder already given to JAX
(`JAX_COMPILATION_CACHE_DIR`) is kept. torch.compile keeps its own on-disk cache (inductor's)
by default. TensorFlow's XLA cache (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory`) is
not used: reading its entries logs parse errors on every hit.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ffbench.data import cache_dir

MAX_BYTES = 8 << 30  # JAX evicts the least recently used entries past this


def directory() -> Path | None:
    """The compile cache's folder, or None when `FFBENCH_COMPILE_CACHE=0`."""
    if os.environ.get("FFBENCH_COMPILE_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    return cache_dir() / "compiled"


def use_jax(cache: Path) -> str | None:
    """JAX's persistent compilation cache in `cache`/jax (unless JAX has one already: it is
    set up once per process), for every program, however fast it compiled. Returns the
    folder in use; None (no cache) where the folder cannot be made."""
    import jax

    folder = cache / "jax"
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # e.g. a read-only home: programs are compiled as without a cache
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # default 1 s: most epoch programs compile faster
    if importlib.util.find_spec("filelock") is not None:  # JAX locks the folder (Ray workers share it) to evict
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return str(folder)
