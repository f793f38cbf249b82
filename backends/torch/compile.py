"""The torch backend's compiled step: opt in with `FFBENCH_TORCH_COMPILE=1` (inductor), or
`=<backend>` for another `torch.compile` backend (`aot_eager`: the same graphs, not code-
generated; for debugging).

Each step's objective is one `torch.compile`d function of its tensors. For FF that is every
trained layer's FF and peer losses and a joint read-out; for BP, the forward pass.
AOTAutograd compiles its backward too. The optimiser update (`optim.update`) is another
compiled function. Its per-step coefficients arrive as a device tensor, so no step
recompiles. `warm_up` compiles both in `begin_phase` on a throw-away batch, so compile time
is reported apart from train time. Results match the eager step within the parity
tolerance (tests/test_torch_compiled.py).

Off by default, until it is measured on a GPU: on the 2-core CPU it made the 3x1000 epoch
1.3x (FF) and 1.6x (BP) faster, but each phase's program costs 5 to 35 s of compiling there,
more than a short trial's training (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from ffbench_backends.torch.common import backward


def backend() -> str | None:
    """The torch.compile backend `FFBENCH_TORCH_COMPILE` asks for, or None: eager."""
    value = os.environ.get("FFBENCH_TORCH_COMPILE", "0")
    return None if value in ("", "0") else "inductor" if value == "1" else value


def enabled() -> bool:
    return backend() is not None


def compiled(fn: Callable) -> Callable:
    """`fn` compiled for fixed shapes when enabled, else `fn` itself."""
    if not enabled():
        return fn
    # one program per phase key (a greedy net's layers, episodes): more than dynamo's default 8
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(fn, dynamic=False, backend=backend())


def warm_up(objective: Callable, args: tuple, grads_of: list[torch.Tensor]) -> None:
    """Run `objective(*args)` (its first output is the loss, or a pack's losses) and its
    backward once, then drop the gradients it left on `grads_of`: compiles the step without
    changing any state."""
    if not enabled():
        return
    backward(objective(*args)[0])
    for p in grads_of:
        p.grad = None
