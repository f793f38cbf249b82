"""What a backend implements: the contract between ffbench and one framework.

Modelled on AlgoPerf's framework-neutral workload spec and benchopt's solver plugins: a
`Backend` says what it is (`name`, `versions()`, `device_name()`), whether it can run a
trial (`skip()` gives a reason, or None), and builds a `Trainer` for one trial. A Trainer
holds the model, optimiser state and data on the device and exposes epochs; the generic
loop in `ffbench.loop` does the timing, learning-rate schedule, curves and evaluation, so
every backend is timed and recorded the same way.

Rules for a Trainer: data and negatives live on the device; `train_epoch` does no host
sync (it returns device values); `sync()` waits for the device; `epoch_losses()` and
`error()` are the only places values come back to the host.

Inside the built-in backends two more hooks have one meaning each: `setup_phase(phase)`
enters a phase for one trainer (each member of a pack) and returns the phase's program, not
compiled yet (JAX: its cache key and epoch function; Keras: its step program; torch: its step
objective), which `begin_phase` compiles; `end_epoch(phase)` records that an epoch has run
(an FF trainer's is `FFSchedule.end_epoch`). What is framework-neutral in an FF trainer lives
once, in `FFSchedule`.
"""

from __future__ import annotations

import abc
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ffbench import frozen, layer_windows
from ffbench.data import Dataset
from ffbench.reference.negatives import negatives_epoch
from ffbench.spec import BPTrial, FFTrial, OptimizerSpec
from ffbench.variants import NEGATIVES, OBJECTIVES


@dataclass(frozen=True)
class Phase:
    """A stretch of training with one optimiser state and one learning-rate schedule.

    ff (simultaneous): one phase "ff" training every layer (and a joint read-out).
    ff (greedy): "ff.layer0", "ff.layer1", ... each training one layer; with episodes,
    "ff.episode0.layer0", ... A phase training the same layers as an earlier phase continues
    that phase's optimiser state (a layer's Adam moments carry over between episodes).
    read-out after the layers: "readout" (each starts from a zero read-out; a grown softmax
    net, `ff.grow_patience`, has one after every layer).  bp: one phase "bp".
    """

    name: str
    epochs: int
    optimizer: OptimizerSpec
    layers: tuple[int, ...] = ()


class Trainer(abc.ABC):
    steps_per_epoch: int
    batch_size: int

    @abc.abstractmethod
    def phases(self) -> list[Phase]: ...

    @abc.abstractmethod
    def begin_phase(self, phase: Phase) -> None:
        """Fresh optimiser state for the parameters this phase trains. A compiling backend
        compiles the phase's epoch program here, so its cost is reported as compile time."""

    @abc.abstractmethod
    def train_epoch(self, phase: Phase, epoch: int, lr: float) -> Any:
        """One epoch (global epoch index `epoch` keys data order and negatives). No host sync."""

    @abc.abstractmethod
    def epoch_losses(self, device_losses: Any) -> dict[str, float | dict[int, float]]:
        """Mean losses of the epoch: a value per metric, or {layer: value} for per-layer metrics."""

    @abc.abstractmethod
    def can_evaluate(self, phase: Phase) -> bool:
        """Whether the model can predict at the end of an epoch of `phase`."""

    @abc.abstractmethod
    def error(self, split: str) -> float:
        """Error rate on "train", "val" or "test" with the current weights."""

    @abc.abstractmethod
    def sync(self) -> None: ...

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """The weights as NumPy arrays: W0, b0, ... (PyTorch layout, (out, in)), and `readout` if any."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Set the weights (as from `state()`); every layer and the read-out then count as trained."""


class PackedTrainer(abc.ABC):
    """Several trials of one shape trained as one program (stacked weights, `vmap`).

    `members[k]` is a Trainer view of trial k: its `epoch_losses`, `can_evaluate`, `error`
    and `state` work as for an unpacked trial. The pack runs the members' phases together;
    `train_epoch` takes each member's learning rate and returns each member's device losses.
    A packed member must match its unpacked run within the parity tolerance.
    """

    members: list[Trainer]

    @property
    def steps_per_epoch(self) -> int:
        return self.members[0].steps_per_epoch

    @property
    def batch_size(self) -> int:
        return self.members[0].batch_size

    def phases(self) -> list[Phase]:
        return self.members[0].phases()

    @abc.abstractmethod
    def begin_phase(self, phase: Phase) -> None: ...

    @abc.abstractmethod
    def train_epoch(self, phase: Phase, epoch: int, lrs: list[float]) -> list[Any]: ...

    def sync(self) -> None:
        for m in self.members:
            m.sync()


class FFSchedule:
    """The framework-neutral half of every backend's FF trainer: the trial's variants, its
    phases, the bookkeeping of a phase and an epoch, drawing and caching the negatives, the
    per-epoch loss record, and when it can predict. A backend's FF trainer adds its ops and
    its compiled epoch or step program, and calls these hooks, each with one meaning:

    - `init_schedule(backend, data)` in its constructor;
    - `enter_phase(phase)` when a phase begins (before its own optimisers and program);
    - `sample_negatives(phase, epoch)` for each sample's negative of the epoch;
    - `end_epoch(phase)` once an epoch has run (after the trainer took its new state);
    - `epoch_record(...)` from its `epoch_losses`, with the epoch's values on the host;
    - `plan_frozen(phase)` where it can compute a greedy phase's fixed layer input once
      (`ffbench.frozen`), and `frozen_negatives_due()` after drawing each epoch's negatives.

    It provides `wait(value)` (block until a device value is computed)."""

    trial: FFTrial
    trained: set[int]
    readout_trained: bool

    def init_schedule(self, backend: str, data: Dataset) -> None:
        self.ff = self.trial.ff
        self.input_width = data.train.x.shape[1]
        self.bind_variants(backend)
        NEGATIVES.get(self.ff.negatives).check_data(data.train.y)
        self.phase: Phase | None = None
        self.phase_epoch = 0  # epochs run in the current phase
        self.trained: set[int] = set()  # layers trained so far (evaluation during greedy, hard negatives)
        self.readout_trained = False
        self.joint_readout = self.separate_readout = False
        self.negatives_seconds: float | None = None  # scoring the data for hard negatives, this epoch
        self._drawn: tuple[int, Any] | None = None  # (negatives_epoch, each sample's negative)
        self.frozen: frozen.FrozenPlan | None = None  # this phase's fixed layer input, computed once
        self._frozen_draw: int | None = None  # the draw of the negatives the cached rows are of

    def enter_phase(self, phase: Phase) -> None:
        """The phase's framework-neutral state: whether the read-out trains with the layers
        (`ff.readout_phase: joint`) and with its own optimiser."""
        self.phase, self.phase_epoch = phase, 0
        self.frozen, self._frozen_draw = None, None
        self.joint_readout = self.ff.prediction == "softmax" and self.ff.readout_phase == "joint" and bool(phase.layers)
        self.separate_readout = self.joint_readout and self.ff.readout_optimizer is not None

    def end_epoch(self, phase: Phase) -> None:
        self.phase_epoch += 1
        self.trained.update(phase.layers)
        self.readout_trained |= phase.name == "readout" or self.joint_readout

    def wait(self, value: Any) -> None:
        raise NotImplementedError

    def available_memory(self) -> int:
        """Bytes free for cached activations (`ffbench.frozen`): the host's; a GPU backend's device's."""
        return frozen.host_available_bytes()

    def plan_frozen(self, phase: Phase, itemsize: int = 4) -> frozen.FrozenPlan | None:
        """Whether `phase` computes its fixed layer input once (`frozen.plan`), kept as `frozen`."""
        layers = phase.layers
        width = ([self.input_width] + list(self.trial.hidden))[min(layers)] if layers else 0
        self.frozen = frozen.plan(self.trial, phase, self.n, width, self.by_position,
                                  frozen.budget_bytes(self.available_memory()), itemsize,
                                  steps=phase.epochs * self.steps_per_epoch)
        return self.frozen

    def frozen_negatives_due(self) -> Any | None:
        """Each training sample's negative where the cached negatives' rows are of an older
        draw (call after `sample_negatives`), else None."""
        if self.frozen is None or not self.frozen.negatives or self._frozen_draw == self._drawn[0]:
            return None
        self._frozen_draw = self._drawn[0]
        return self._drawn[1]

    def sample_negatives(self, phase: Phase, epoch: int) -> Any:
        """Each training sample's negative in `epoch` (a device array, from the strategy's
        `sample`), drawn when the draw's key (`negatives_epoch`) changes and kept until then; a
        scored draw is timed apart (`negatives_seconds`, reset every epoch)."""
        key = negatives_epoch(self.trial, epoch)
        self.negatives_seconds = None
        if self._drawn is None or self._drawn[0] != key:
            t0 = time.perf_counter()
            self._drawn = (key, self.strategy.sample(self, key, phase))
            if self.scored:  # the scoring of the training set, timed apart
                self.wait(self._drawn[1])
                self.negatives_seconds = time.perf_counter() - t0
        return self._drawn[1]

    def epoch_record(self, ff_loss, peer_loss, readout_loss: float, collision_rate: float | None) -> dict[str, Any]:
        """What the loop records of an FF epoch: per trained layer its mean FF loss (and peer
        loss), the read-out's loss where it trained, the fraction of negatives that carry the
        true label (strategies that can), and the time spent scoring for hard negatives.
        `ff_loss`, `peer_loss`: indexable by layer."""
        phase, out = self.phase, {}
        if phase.layers and self.reports_collisions:
            out["negative_collision_rate"] = float(collision_rate)
        if phase.layers and self.negatives_seconds is not None:
            out["negatives_seconds"] = self.negatives_seconds
        if phase.layers and self.frozen is not None and self.frozen.any:
            out["frozen_cache_bytes"] = self.frozen.bytes
        if phase.layers:
            out["ff_loss"] = {i: float(ff_loss[i]) for i in phase.layers}
            if self.ff.peer_weight > 0:
                out["peer_loss"] = {i: float(peer_loss[i]) for i in phase.layers}
        if phase.name == "readout" or self.joint_readout:
            out["readout_loss"] = float(readout_loss)
        return out

    def bind_variants(self, backend: str) -> None:
        """This backend's implementations of the trial's variants, with their typed parameters:
        `strategy` and `variant_params` (the negative strategy), `objective_fn` (the layer
        objective and its parameters); and the strategy's framework-neutral rules."""
        ff = self.trial.ff
        rules = NEGATIVES.get(ff.negatives)
        self.strategy, self.variant_params = rules.implementation(backend), rules.params(ff.negatives_params)
        self.objective_fn = bound_objective(ff, backend)
        self.by_position = rules.by_position(self.trial)  # negatives drawn per position of each epoch's order
        self.scored = rules.scored  # drawn from the model's own scores: timed apart (negatives_seconds)
        self.reports_collisions = rules.reports_collisions  # counts negatives carrying the true label

    def phases(self) -> list[Phase]:
        ff, opt, depth = self.trial.ff, self.trial.optimizer, len(self.trial.hidden)
        of = self.trial.layer_optimizer  # a phase's layers' optimiser (`ff.layer_optimizers`, else the trial's)
        if ff.layer_epochs is not None:
            phases = [Phase(layer_windows.phase_name(layers), end - start, of(layers), layers)
                      for start, end, layers in layer_windows.stretches(ff.layer_epochs, self.trial.epochs)]
        elif ff.schedule == "simultaneous":
            phases = [Phase("ff", self.trial.epochs, of(tuple(range(depth))), tuple(range(depth)))]
        elif ff.episodes == 1:
            phases = [Phase(f"ff.layer{i}", self.trial.epochs, of((i,)), (i,)) for i in range(depth)]
        else:
            phases = [Phase(f"ff.episode{k}.layer{i}", self.trial.epochs, of((i,)), (i,))
                      for k in range(ff.episodes) for i in range(depth)]
        if ff.prediction == "softmax" and ff.readout_phase == "after":
            readout = Phase("readout", ff.readout_epochs, ff.readout_optimizer or opt)
            if ff.grow_patience is not None:  # a read-out for each depth, to decide the next
                return [p for layer in phases for p in (layer, readout)]
            phases.append(readout)
        return phases

    @property
    def per_layer_optimizers(self) -> bool:
        """Whether each layer keeps its own optimiser state (and step count) across phases
        (`ff.layer_epochs`); else a phase's layers share one, kept for a later phase of the same
        layers (greedy episodes)."""
        return self.trial.ff.layer_epochs is not None

    @property
    def readout_layers(self) -> tuple[int, ...]:
        """The layers whose activities feed the softmax read-out: `ff.prediction_layers`, or in a
        grown net those of them trained and kept so far (`reference.ff.readout_features`)."""
        layers = self.trial.ff.prediction_layers
        return tuple(i for i in layers if self.trial.ff.grow_patience is None or i in self.trained)

    def grow_point(self, phase: Phase) -> bool:
        """Whether `phase` completes a depth of a grown net: after a layer (goodness prediction)
        or after its read-out (softmax). The loop then calls `keep_growing`."""
        if self.trial.ff.grow_patience is None:
            return False
        return phase.name == "readout" if self.trial.ff.prediction == "softmax" else bool(phase.layers)

    def score_upto(self, phase: Phase) -> int:
        """The deepest layer trained so far or by `phase`: hard negatives score layers up to it."""
        return max(max(phase.layers), max(self.trained, default=0))

    def keep_growing(self, val_error: float) -> bool:
        """`ff.grow_patience`: called at each `grow_point` with the validation error of the net
        grown so far; whether to train the next layer. The weights of the best depth (the first
        lowest error) are kept aside; on stopping, and after the last layer, they are restored
        and prediction uses the layers up to that depth (a softmax read-out: the one trained
        for it)."""
        history = self.__dict__.setdefault("grow_errors", [])
        history.append(val_error)
        best = history.index(min(history))
        if best == len(history) - 1:
            self.__dict__["grow_best"] = self.state()
        if len(history) - 1 - best < self.trial.ff.grow_patience and len(history) < len(self.trial.hidden):
            return True
        self.load_state(self.__dict__.pop("grow_best"))
        self.trained = set(range(best + 1))
        return False

    def can_evaluate(self, phase: Phase) -> bool:
        if self.trial.ff.prediction == "softmax":
            return self.readout_trained
        return bool(self.trained & set(self.trial.ff.prediction_layers))


def bound_objective(ff, backend: str) -> tuple[Any, Any]:
    """(backend's implementation of the spec's layer objective, its typed parameters)."""
    rules = OBJECTIVES.get(ff.objective)
    return rules.implementation(backend), rules.params(ff.objective_params)


def lazy_backend(package: str, target: str):
    """The module `__getattr__` of a backend package: `Backend` is `target` ("module:Class"),
    imported when first asked for, so that importing the package imports no framework and
    its framework-free `traits` module can be read by the driver (`registry.traits`)."""
    def __getattr__(name: str):
        if name == "Backend":
            module, _, cls = target.partition(":")
            return getattr(importlib.import_module(module), cls)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__


class Traits(Protocol):
    """What a backend runs and packs, known without its framework: a module of the backend's
    (`BackendEntry.traits`, e.g. `ffbench_backends.torch.traits`) that imports no framework, so
    the driver of `ffbench run` plans, checks and packs without touching a device. The
    backend's own `skip` and `pack_skip` give the same answers, with its device known."""

    def skip(self, trial: FFTrial | BPTrial) -> str | None:
        """Why the backend cannot run `trial`, or None."""

    def pack_skip(self, trial: FFTrial | BPTrial, on_gpu: bool | None) -> str | None:
        """Why it cannot pack `trial` with others of its pack key, or None. `on_gpu`: whether
        the trial will run on a GPU, None where the scheduler cannot tell (the trial's worker
        then asks `Backend.pack_skip`, and trains the members one by one if it refuses)."""


class Backend(abc.ABC):
    name: ClassVar[str]
    framework: ClassVar[str]

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Framework versions, e.g. {"torch": "2.13.0"}."""

    @abc.abstractmethod
    def device_name(self) -> str: ...

    def skip(self, trial: FFTrial | BPTrial) -> str | None:
        """Why this backend cannot run `trial`, or None: by default, a variant of the trial's
        without an implementation for this backend (`ffbench.variants.skip`)."""
        from ffbench import variants
        return variants.skip(trial)

    @abc.abstractmethod
    def trainer(self, trial: FFTrial | BPTrial, data: Dataset) -> Trainer: ...

    def pack_skip(self, trial: FFTrial | BPTrial) -> str | None:
        """Why this backend cannot pack `trial` with others of its shape, or None if it can
        (then `packed_trainer` must work for any group of such trials with one `pack_key`)."""
        return "this backend does not pack trials"

    def packed_trainer(self, trials: list[FFTrial | BPTrial], data: Dataset) -> PackedTrainer:
        raise NotImplementedError(self.pack_skip(trials[0]))

    def use_compile_cache(self, folder: Path) -> None:
        """Keep compiled programs under `folder` across processes (`ffbench.compile_cache`),
        where the framework can. The runner calls it before a trial's programs are built.
        By default nothing is kept (torch.compile keeps its own cache)."""
        return None

    def probe(self) -> Any:
        """The parity probes for `ffbench check`: a module with ff_layers, ff_steps and bp_grads
        (NumPy in and out; see backends/torch/probe.py). By default `<backend module>.probe`."""
        import importlib
        return importlib.import_module(f"{type(self).__module__.rsplit('.', 1)[0]}.probe")

    @abc.abstractmethod
    def reset_peak_memory(self) -> None: ...

    @abc.abstractmethod
    def peak_memory(self) -> tuple[int | None, str]:
        """(bytes, what was measured: "device" or "process_max_rss")."""
