"""The trial spec: one typed, validated description of every knob of a trial.

A trial is either Forward-Forward (`algorithm: ff`) or its backprop baseline
(`algorithm: bp`). Both share the architecture (`hidden` widths), data, optimiser, epochs,
batch size and seed; the FF knobs live in the `ff` block. Every choice that published
implementations make differently is an explicit field here (see
`../shared/reference/forward-forward.md`); `ffbench.reference` defines each one exactly.

Identity: `trial_id(spec, dataset_checksum)` is a content hash of the normalised spec. The
normal form drops fields equal to their defaults, so adding a field with a default keeps
old ids valid. Changing a default changes meaning, so `tests/test_spec.py` pins every
default: a change there must bump `SPEC_VERSION`. `meta` (names, tags, reference numbers)
is not part of the identity.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from ffbench import layer_windows, registry
from ffbench.geometry import Geometry
from ffbench.spec_conv import ConvLayer, ConvSpec, architecture, check_conv
from ffbench.spec_ff import FFSpec
from ffbench.spec_optim import OptimizerSpec
from ffbench.spec_recurrent import RecurrentSpec, check_recurrent
from ffbench.strict import MAX_DEPTH, MAX_EPOCHS, MAX_WIDTH, PositiveInt, Strict
from ffbench.variants import DATASETS, NEGATIVES, OBJECTIVES
from ffbench.variants.datasets import NUM_CLASSES

__all__ = ["MODELS", "NUM_CLASSES", "SPEC_VERSION", "BPSpec", "BPTrial", "ConvSpec", "DataSpec", "FFSpec", "FFTrial",
           "MetaSpec", "OptimizerSpec", "RecurrentSpec", "Resources", "batch_size_for", "canonical_json", "full_spec",
           "normal_form", "parse_trial", "trial_id"]

SPEC_VERSION = 1


class DataSpec(Strict):
    """The dataset and its splits.

    The dataset's official training images are split in order: the first `n - validation_size`
    are the training split, the last `validation_size` the validation split (MNIST: 50,000 and
    10,000). Its official test images are the test split. `train_subset` keeps the first N of
    the training split, `test_subset` the first N test images (quick passes only).
    """

    name: str = "mnist"  # a registered dataset (`ffbench.variants.DATASETS`, `ffbench list`)
    validation_size: Annotated[int, Field(ge=0, le=59000)] = 10000
    train_subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None  # evaluate on the first N test images: for quick passes, not for results
    pixel_scale: Literal["unit", "standardize"] = "unit"  # x/255, or (x/255 - mean)/std: the dataset's (MNIST 0.1307, 0.3081)
    # Shift each training image by up to +-jitter pixels, a new shift per image and epoch
    # (`ffbench.reference.augment`; 2: the paper's 25 shifts). Test/validation images are never shifted.
    jitter: Annotated[int, Field(ge=0, le=4)] = 0
    # Keep only these classes in the training (positive), validation and test splits; the other
    # training images become the negatives' pool of `ff.negatives: class_split`. None: all 10.
    classes: list[Annotated[int, Field(ge=0, lt=NUM_CLASSES)]] | None = None

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return DATASETS.check_name(name)

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(set(v)) != len(v) or not 2 <= len(v) < NUM_CLASSES):
            raise ValueError(f"expected 2 to {NUM_CLASSES - 1} distinct classes")
        return sorted(v) if v is not None else v

    @model_validator(mode="after")
    def _fits_dataset(self) -> DataSpec:
        DATASETS.get(self.name).validate(self)
        return self

    @property
    def image(self) -> Geometry:
        """The dataset's image geometry (channels, height, width)."""
        return DATASETS.get(self.name).shape


class BPSpec(Strict):
    """The backprop baseline: ReLU MLP of the same widths, a linear 10-way output, cross-entropy."""

    init: Literal["uniform_fan_in", "normal_fan_out", "glorot_uniform"] = "uniform_fan_in"
    # Locally connected hidden layers (the BP twin of ff.receptive_field, the paper's Table 1
    # baseline): the same H x W maps and k x k windows (`reference.ff.local_mask`); the output
    # layer stays dense. None: a dense MLP.
    receptive_field: Annotated[int, Field(ge=1, le=63)] | None = None


def check_local(k: int | None, hidden: list[int], image: Geometry, field: str) -> None:
    """A receptive field k fits: odd, and every hidden width a whole number of units per location."""
    if k is None:
        return
    if k % 2 == 0:
        raise ValueError(f"{field} must be odd (a window centred on the unit's location)")
    bad = [w for w in hidden if w % image.pixels]
    if bad:
        raise ValueError(f"with {field} every hidden width is a {image.height}x{image.width} map times units "
                         f"per location (a multiple of {image.pixels}); got {bad}")


class Resources(Strict):
    """What one trial asks a scheduler for (Ray); not part of the trial's identity.
    None: the `ffbench run` flags decide (default 1 GPU per trial where the cluster has GPUs)."""

    gpus: Annotated[float, Field(ge=0)] | None = None  # fractional packs trials: 0.25 = 4 per GPU
    cpus: Annotated[float, Field(gt=0)] | None = None

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError("more than 1 GPU per trial must be a whole number (a fraction packs trials onto one GPU)")
        return v


class MetaSpec(Strict):
    """Labels that travel with a trial but are not part of its identity."""

    suite: str | None = None
    experiment: str | None = None
    tags: list[str] = Field(default_factory=list)
    reference_error: Annotated[float, Field(ge=0, le=1)] | None = None  # a fraction: 0.0136, not 1.36
    reference_source: str | None = None
    # The row's method in a methods x datasets table (`ffbench.report.tables.methods_table`):
    # "BP", "FF (Hinton 2022)", "SymBa", ...; None: the row is in no such table.
    method: str | None = None
    resources: Resources = Field(default_factory=Resources)


class TrialBase(Strict):
    backend: str
    seed: Annotated[int, Field(ge=0, lt=2**32)]
    # Each hidden layer's width. A conv net's (`conv`) follow from its layers and the dataset's
    # geometry (C x H x W of each pooled map): leave it out, or give exactly those.
    hidden: Annotated[list[Annotated[int, Field(gt=0, le=MAX_WIDTH)]], Field(min_length=1, max_length=MAX_DEPTH)] | None = None
    conv: ConvSpec | None = None  # convolutional layers (`ffbench.spec_conv`); None: dense layers
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)]
    batch_size: PositiveInt | Literal["full"] = 100  # "full": one step per epoch on the whole training split
    data: DataSpec = Field(default_factory=DataSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    # fp32: float32 matmuls (no TF32), the parity-checked default. tf32: matmuls may use TF32
    # tensor cores (NVIDIA GPUs; on a CPU the same as fp32). bf16: matmul operands and results
    # in bfloat16 (forward and backward), weights, optimiser states and losses in float32.
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    eval_every: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 1  # evaluate val/test error every N epochs (0: only at the end)
    eval_batch_size: PositiveInt = 1000
    meta: MetaSpec = Field(default_factory=MetaSpec)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        known = registry.names()
        if name not in known:
            raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(known)}")
        return name

    @model_validator(mode="after")
    def _widths(self) -> TrialBase:
        if self.conv is None:
            if self.hidden is None:
                raise ValueError("hidden: the hidden layers' widths are required (or conv: for a conv net)")
            return self
        widths = self.conv.widths(self.data.image)
        if self.hidden is not None and self.hidden != widths:
            raise ValueError(f"hidden {self.hidden} disagrees with conv's widths on {self.data.image.label()} images "
                             f"{widths}: leave hidden out")
        self.hidden = widths
        return self

    def conv_layers(self) -> list[ConvLayer] | None:
        """The conv layers resolved on the dataset's geometry, or None for a dense net."""
        return None if self.conv is None else self.conv.layers(self.data.image)

    def layer_optimizer(self, layers: tuple[int, ...]) -> OptimizerSpec:
        """The optimiser of a phase training `layers`: theirs (`ff.layer_optimizers`, one for all
        of them), else the trial's."""
        ff = getattr(self, "ff", None)
        if ff is None or ff.layer_optimizers is None or not layers:
            return self.optimizer
        return ff.layer_optimizers[layers[0]]

    @property
    def architecture(self) -> str:
        """A short name for reports: `conv 20-80-240-480` (`spec_conv.architecture`), or the dense widths `2000x2000`."""
        conv = self.conv
        return architecture(self.hidden, *(() if conv is None else (conv.channels, conv.groups, conv.norm)))


class FFTrial(TrialBase):
    algorithm: Literal["ff"]
    ff: FFSpec = Field(default_factory=FFSpec)

    @model_validator(mode="after")
    def _resolve_and_check(self) -> FFTrial:
        ff, depth = self.ff.bind_image(self.data.image).bind_conv(self.conv_layers()), len(self.hidden)
        if ff.prediction_layers is None:
            if ff.prediction == "goodness":
                ff.prediction_layers = list(range(depth))
            else:
                ff.prediction_layers = list(range(1, depth)) if depth > 1 else [0]
        if not ff.prediction_layers:
            raise ValueError("ff.prediction_layers must name at least one layer")
        bad = [i for i in ff.prediction_layers if i >= depth]
        if bad:
            raise ValueError(f"ff.prediction_layers {bad} out of range for {depth} hidden layers (0..{depth - 1})")
        if len(set(ff.prediction_layers)) != len(ff.prediction_layers):
            raise ValueError("ff.prediction_layers has repeated layers")
        ff.prediction_layers = sorted(ff.prediction_layers)
        uses_readout = ff.prediction == "softmax"
        if not uses_readout and (ff.readout_optimizer or ff.readout_epochs or ff.readout_phase != "joint"):
            raise ValueError("readout_* fields apply to ff.prediction: softmax only")
        if uses_readout and ff.schedule == "greedy" and ff.readout_phase != "after":
            raise ValueError("a greedy schedule trains its softmax read-out after the layers: set ff.readout_phase: after")
        if uses_readout and (ff.readout_phase == "after") != (ff.readout_epochs is not None):
            raise ValueError("ff.readout_epochs is required with ff.readout_phase: after, and only then")
        strat = NEGATIVES.get(ff.negatives)
        strat.validate(self)
        if not ff.embeds_labels and ff.prediction != "softmax" and not OBJECTIVES.get(ff.objective).scores_classes:
            raise ValueError(f"ff.negatives: {ff.negatives} is unsupervised (no label in the input): "
                             "it needs ff.prediction: softmax")
        if strat.needs_rest != (self.data.classes is not None):
            name = ff.negatives if strat.needs_rest else "class_split"
            raise ValueError(f"ff.negatives: {name} takes its positives from data.classes and its negatives from the "
                             "other classes: set both, or neither")
        OBJECTIVES.get(ff.objective).validate(self)
        check_local(ff.receptive_field, self.hidden, ff.image, "ff.receptive_field")
        if ff.grow_patience is not None:
            if ff.schedule != "greedy" or ff.episodes > 1:
                raise ValueError("ff.grow_patience adds layers one at a time: it needs ff.schedule: greedy and one episode")
            if 0 not in ff.prediction_layers:
                raise ValueError("ff.grow_patience starts from a one-layer net, which predicts from layer 0: "
                                 "ff.prediction_layers must include 0")
            if self.data.validation_size == 0:
                raise ValueError("ff.grow_patience decides the depth on the validation split: set data.validation_size > 0")
        if ff.recurrent is not None:
            check_recurrent(self)
        if self.conv is not None:
            check_conv(self)
        elif ff.goodness_over != "map":
            raise ValueError("ff.goodness_over: position is per position of a conv layer's map: it needs conv")
        if ff.layer_epochs is not None:
            layer_windows.check(self)
        if ff.layer_optimizers is not None:
            check_layer_optimizers(self)
        if ff.activation != "relu" and (self.conv is not None or ff.recurrent is not None or ff.prediction != "softmax"):
            raise ValueError("ff.activation: triangle is defined on feed-forward dense layers read by a softmax read-out "
                             "(its goodness is of relu(z), its activities of z - mean z): it needs no conv, no "
                             "ff.recurrent and ff.prediction: softmax")
        if ff.episodes > 1 and ff.schedule != "greedy":
            raise ValueError("ff.episodes repeats the greedy layer-wise pass: it needs ff.schedule: greedy")
        if ff.episodes > 1 and self.optimizer.cooldown_start is not None:
            raise ValueError("optimizer.cooldown_start is per phase; with ff.episodes > 1 each layer has many phases: "
                             "use one or the other")
        return self


def check_layer_optimizers(trial: FFTrial) -> None:
    """One optimiser per layer, each phase's layers sharing theirs."""
    ff, depth = trial.ff, len(trial.hidden)
    if len(ff.layer_optimizers) != depth:
        raise ValueError(f"ff.layer_optimizers: expected one per layer ({depth}); got {len(ff.layer_optimizers)}")
    if ff.layer_epochs is not None:
        groups = [layers for _, _, layers in layer_windows.stretches(ff.layer_epochs, trial.epochs)]
    elif ff.schedule == "greedy" and ff.recurrent is None:
        groups = [(i,) for i in range(depth)]
    else:
        groups = [tuple(range(depth))]
    for layers in groups:
        if any(ff.layer_optimizers[i] != ff.layer_optimizers[layers[0]] for i in layers):
            raise ValueError(f"ff.layer_optimizers: layers {list(layers)} train together, with one optimiser and one "
                             "learning rate: give them the same (or train them apart: ff.schedule: greedy, ff.layer_epochs)")


class BPTrial(TrialBase):
    algorithm: Literal["bp"]
    bp: BPSpec = Field(default_factory=BPSpec)

    @model_validator(mode="after")
    def _check(self) -> BPTrial:
        check_local(self.bp.receptive_field, self.hidden, self.data.image, "bp.receptive_field")
        if self.conv is not None and self.bp.receptive_field is not None:
            raise ValueError("bp.receptive_field is a dense-net choice: it does not combine with conv")
        return self

    @property
    def local(self) -> tuple[int, Geometry] | None:
        """(k, image geometry) of locally connected hidden layers, or None (dense)."""
        return None if self.bp.receptive_field is None else (self.bp.receptive_field, self.data.image)


Trial = Annotated[Union[FFTrial, BPTrial], Field(discriminator="algorithm")]
TRIAL_ADAPTER: TypeAdapter[FFTrial | BPTrial] = TypeAdapter(Trial)


def batch_size_for(trial: TrialBase, n_train: int) -> int:
    """The minibatch size in images: `batch_size`, or the whole training split for "full"."""
    if trial.batch_size == "full":
        return n_train
    if trial.batch_size > n_train:
        raise ValueError(f"batch_size {trial.batch_size} exceeds the {n_train} training images")
    return trial.batch_size


def parse_trial(data: dict[str, Any]) -> FFTrial | BPTrial:
    """Validate one trial from plain data (raises pydantic.ValidationError)."""
    return TRIAL_ADAPTER.validate_python(data)


def normal_form(trial: FFTrial | BPTrial) -> dict[str, Any]:
    """The identity-bearing content of a trial: non-default fields, without `meta`."""
    return trial.model_dump(mode="json", exclude_defaults=True, exclude={"meta"})


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_id(trial: FFTrial | BPTrial, dataset_checksum: str) -> str:
    """Content hash of the normalised spec and the dataset it runs on (16 hex digits)."""
    payload = {"spec_version": SPEC_VERSION, "spec": normal_form(trial), "dataset": dataset_checksum}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def full_spec(trial: FFTrial | BPTrial) -> dict[str, Any]:
    """Every field, defaults included: what a results row records."""
    return trial.model_dump(mode="json")


MODELS: dict[str, type[TrialBase]] = {"ff": FFTrial, "bp": BPTrial}
