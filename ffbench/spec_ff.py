"""The Forward-Forward block of a trial spec (`ff:`): every FF knob, defined exactly in
`ffbench.reference.ff`. `FFTrial` (`ffbench.spec`) binds its dataset's geometry and conv layers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from ffbench.geometry import Geometry
from ffbench.spec_conv import ConvLayer
from ffbench.spec_optim import OptimizerSpec
from ffbench.spec_recurrent import RecurrentSpec
from ffbench.strict import MAX_DEPTH, MAX_EPOCHS, Fraction, PositiveFloat, PositiveInt, Strict
from ffbench.variants import NEGATIVES, OBJECTIVES


class FFSpec(Strict):
    """The Forward-Forward knobs (definitions: `ffbench.reference.ff`)."""

    # Label embedding: the first 10 pixels are replaced by a one-hot label.
    # first: the first 10 values of the flat (channel, row, column) row: pixels 0-9 of the top row
    #   of the first channel (red, for RGB), as implementations that flatten the image do;
    # all: those 10 pixels in every channel. One channel: the same.
    label_channels: Literal["first", "all"] = "first"
    label_on: PositiveFloat = 1.0  # the value of the "on" pixel...
    label_on_mode: Literal["constant", "image_max"] = "constant"  # ...or label_on * the image's max
    label_neutral: float = 0.1  # the neutral label puts this in each of the 10 pixels
    # Each layer's input (the raw image included) is x / (sqrt(reduce(x^2)) + norm_eps).
    # none: x as it is (CwComp's layers, which normalise nothing between them); std: standardised,
    # (x - mean(x)) / (unbiased std(x) + norm_eps) (SCFF's layers).
    norm: Literal["l2", "rms", "none", "std"] = "rms"  # reduce = sum (l2) or mean (rms)
    norm_eps: PositiveFloat = 1e-8
    # standard: d relu(z)/dz = [z > 0].  straight_through (loeweX): the gradient passes as if identity.
    relu_grad: Literal["standard", "straight_through"] = "standard"
    # What a dense layer passes on (to the next layer and the read-out): relu(z), or triangle:
    # relu(z - mean over its units of z) (SCFF's). Its objective reads relu(z) either way.
    activation: Literal["relu", "triangle"] = "relu"
    # The layer objective: how a layer turns its activities on positives and negatives into a
    # loss (`ffbench.variants.OBJECTIVES`), and its own parameters. logistic (the paper's):
    # goodness = sum or mean of squared ReLU activities; p(positive) = sigmoid(s * (goodness - threshold)).
    objective: str = "logistic"
    objective_params: dict[str, Any] | None = None
    goodness: Literal["sum", "mean"] = "mean"
    threshold: float = 1.0
    # constant: every layer uses `threshold`; input_width: threshold x the layer's input width
    # (the JAX example's "threshold = input length": 784 for the first layer, 512 above it).
    threshold_scale: Literal["constant", "input_width"] = "constant"
    sign: Literal["max_ssq", "min_ssq"] = "max_ssq"  # s = +1: positives have high goodness; -1: low
    # Peer normalisation (Matlab/loeweX): weight * mean_j (mean(r) - r_j)^2 on a running mean r
    # (starting at 0.5) of each unit's mean activity over the positive rows.
    peer_weight: Annotated[float, Field(ge=0)] = 0.0
    peer_momentum: Fraction = 0.9
    # simultaneous: every minibatch updates every layer on the detached output of the layer below.
    # greedy: layer 1 trains for all `epochs`, then layer 2, ... (epochs are per layer).
    schedule: Literal["simultaneous", "greedy"] = "simultaneous"
    # greedy only: repeat the layer-wise pass this many times (the JAX and keras.io examples'
    # episodes); `epochs` is then per layer per episode, and each layer keeps its optimiser
    # state from one episode to the next.
    episodes: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = 1
    # simultaneous only: each layer's [start, end) epochs (CwComp's ILT), one per layer;
    # `ffbench.layer_windows` defines them. None: every layer trains in every epoch.
    layer_epochs: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]] | None = None
    # Each layer's own optimiser (SCFF's per-layer AdamW and decay), one per layer, for a schedule
    # whose phases train one layer or layers of one optimiser (greedy, or `layer_epochs`); None:
    # every layer the trial's `optimizer` (which the read-out uses unless `readout_optimizer`).
    layer_optimizers: list[OptimizerSpec] | None = None
    # greedy only: grow the net while it improves. After each layer the validation error of
    # the layers so far is measured (softmax prediction: after a read-out trained afresh on
    # the prediction layers so far, `readout_epochs` long); training stops after
    # `grow_patience` layers in a row without a lower error, and the net keeps the layers up
    # to its best depth (`hidden` is the largest net) with that depth's read-out.
    # `FFSchedule.keep_growing` defines it. None: train every layer.
    grow_patience: PositiveInt | None = None
    # The negative-data strategy (`ffbench.variants.NEGATIVES`, `ffbench list`) and its own
    # parameters (validated by the strategy's `Params`; only non-default values are kept).
    negatives: str = "wrong_label"
    negatives_params: dict[str, Any] | None = None
    hybrid_blur_passes: Annotated[int, Field(ge=1, le=12)] = 6  # hybrid_image: mask blurs (bit-exact across backends up to 6)
    # When negatives are drawn (`reference.negatives.negatives_epoch`): every epoch, at the first
    # epoch of every episode, or once. The hard ones are scored with the weights of that moment.
    negatives_refresh: Literal["epoch", "episode", "once"] = "epoch"
    # goodness: overlay each label, sum goodness over `prediction_layers`, pick the best (an
    # objective that scores every class from one label-free pass, `cwc`: its class scores).
    # softmax: one pass with the neutral label; a linear softmax reads the normalised
    # activities of `prediction_layers` (its gradient never reaches the FF layers).
    prediction: Literal["goodness", "softmax"] = "goodness"
    # None: all (goodness), all but the first (softmax)
    prediction_layers: list[Annotated[int, Field(ge=0, lt=MAX_DEPTH)]] | None = None
    readout_optimizer: OptimizerSpec | None = None  # None: the trial's optimizer
    readout_phase: Literal["joint", "after"] = "joint"  # trained with every FF step, or after the FF layers
    readout_epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] | None = None  # for readout_phase: after
    init: Literal["uniform_fan_in", "normal_fan_out", "glorot_uniform"] = "uniform_fan_in"
    # Local receptive fields without weight sharing (the paper's 1.16% row): every layer is an
    # H x W map of the image's grid with width/(H*W) units per location (unit u sits at pixel
    # u mod H*W; an input value at its pixel of any channel), and a unit sees only the units of
    # the layer below within a k x k window around its own location (cut at the border). None:
    # dense layers. `reference.ff.local_mask` defines it.
    receptive_field: Annotated[int, Field(ge=1, le=63)] | None = None
    # The trial's image geometry (`FFTrial` binds its dataset's): what the label overlay and the
    # local receptive fields are laid out on. Not a field: it follows from data.name.
    # The recurrent net of the paper's sec. 3.4 (the label is the top layer, not in the image;
    # each layer also sees the one above); None: the feed-forward net.
    recurrent: RecurrentSpec | None = None
    # A conv net's goodness (the trial's `conv`): over the layer's whole map (map; `goodness`
    # sums or averages all C x H x W activities), or per position (position: each location's
    # C activities are a row of their own, the objective's loss averages over positions and
    # images, and an image's score is the mean of its positions' scores).
    goodness_over: Literal["map", "position"] = "map"
    _image: Geometry | None = PrivateAttr(default=None)
    _conv: tuple[ConvLayer, ...] | None = PrivateAttr(default=None)

    @field_validator("negatives")
    @classmethod
    def _known_negatives(cls, name: str) -> str:
        return NEGATIVES.check_name(name)

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, name: str) -> str:
        return OBJECTIVES.check_name(name)

    @field_validator("negatives_params")
    @classmethod
    def _negatives_params(cls, raw: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return NEGATIVES.check_params(info.data.get("negatives"), raw)

    @field_validator("objective_params")
    @classmethod
    def _objective_params(cls, raw: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return OBJECTIVES.check_params(info.data.get("objective"), raw)

    @property
    def image(self) -> Geometry:
        if self._image is None:
            raise ValueError("FFSpec.image is its trial's dataset geometry: build the FFSpec inside an FFTrial, "
                             "or call bind_image")
        return self._image

    def bind_image(self, image) -> FFSpec:
        """Lay this spec's label overlay and receptive fields out on `image` (channels, height, width)."""
        self._image = Geometry(*image)
        return self

    def bind_conv(self, layers) -> FFSpec:
        """The conv layers of this spec's trial (`ConvSpec.layers`), or None for a dense net."""
        self._conv = None if layers is None else tuple(layers)
        return self

    @property
    def conv_layers(self) -> tuple[ConvLayer, ...] | None:
        # read from pydantic's private dict itself: BaseModel.__getattr__ (how `self._conv` reads)
        # is a graph break for torch.compile, and the compiled FF step reads this per layer
        return self.__pydantic_private__["_conv"]

    def conv_layer(self, i: int | None) -> ConvLayer | None:
        """Layer i's conv geometry, or None where the net is dense. A conv net's ops need the index."""
        layers = self.conv_layers
        if layers is None:
            return None
        if i is None:
            raise ValueError("a conv layer's ops need its index (layer=i)")
        return layers[i]

    def positions(self, i: int) -> int:
        """Objective rows per image of layer i: H x W of its map with goodness_over: position, else 1."""
        layer = self.conv_layer(i) if self.goodness_over == "position" else None
        return 1 if layer is None else layer.output.pixels

    def threshold_for(self, fan_in: int) -> float:
        """The threshold of a layer with `fan_in` inputs."""
        return self.threshold * fan_in if self.threshold_scale == "input_width" else self.threshold

    @property
    def pairs(self) -> bool:
        """Whether the inputs are pairs [a | b] that the first layer reads with shared weights
        (the negative strategy's `pairs`: `self_contrastive`)."""
        return NEGATIVES.get(self.negatives).pairs

    @property
    def embeds_labels(self) -> bool:
        """Supervised FF puts the label in the input; unsupervised FF (hybrid_image, class_split) does not."""
        return NEGATIVES.get(self.negatives).supervised
