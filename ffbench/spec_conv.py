"""The convolutional architecture of a trial (`conv:`), shared by FF and its BP twin.

Each layer: conv (kernel k, stride s, zero padding p on every side, groups g) -> ReLU -> pool
(none, max or average over non-overlapping size x size windows, floor at the border, as
torch's MaxPool2d / AvgPool2d) -> norm (none, or `batch`: BatchNorm2d with a learned scale and
shift per channel, `bn_eps`, `bn_momentum`; CwComp's place for it). In FF the layer's input is
first normalised (`ff.norm`), and its activities (what its objective, the next layer and the
read-out see) are the pooled map, batch-normalised where its norm is `batch`.
The BP twin is the same layers without the normalisation, then a linear 10-way classifier on
the last map. `ffbench.reference.conv` defines every op.

Maps travel as flat rows in (channel, row, column) order (`ffbench.geometry`), so a conv
layer's width (`hidden`) is channels x height x width of its pooled output; `hidden` follows
from `conv` and the dataset's geometry. A field given as one number applies to every layer;
the normal form keeps one number per layer, so both spellings have the same trial_id.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import Field, model_validator

from ffbench.geometry import Geometry
from ffbench.strict import Strict
from ffbench.variants import NEGATIVES

MAX_CHANNELS = 10_000
Pool = Literal["none", "max", "avg"]
Norm = Literal["none", "batch"]
Small = Annotated[int, Field(ge=0, le=15)]
Positive = Annotated[int, Field(ge=1, le=15)]


class ConvLayer(NamedTuple):
    """One conv layer's geometry, resolved against its input."""

    index: int
    input: Geometry  # (C_in, H, W)
    channels: int
    kernel: int
    stride: int
    padding: int
    groups: int
    pool: str
    pool_size: int
    norm: str = "none"  # "batch": BatchNorm2d after pooling (`reference.conv.batch_norm`)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    @property
    def batch_norm(self) -> bool:
        return self.norm == "batch"

    @property
    def conv_shape(self) -> Geometry:
        """The map after the conv and ReLU, before pooling."""
        h = (self.input.height + 2 * self.padding - self.kernel) // self.stride + 1
        w = (self.input.width + 2 * self.padding - self.kernel) // self.stride + 1
        return Geometry(self.channels, h, w)

    @property
    def output(self) -> Geometry:
        """The layer's activities: the pooled map."""
        c = self.conv_shape
        if self.pool == "none":
            return c
        return Geometry(c.channels, c.height // self.pool_size, c.width // self.pool_size)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """(C_out, C_in / groups, k, k), torch's Conv2d layout."""
        return (self.channels, self.input.channels // self.groups, self.kernel, self.kernel)

    @property
    def fan_in(self) -> int:
        return self.input.channels // self.groups * self.kernel * self.kernel


# Each per-layer field's value where the spec leaves it out.
LAYER_DEFAULTS = {"kernel": 3, "stride": 1, "padding": 1, "groups": 1, "pool": "none"}


class ConvSpec(Strict):
    """Convolutional layers (see the module's docstring)."""

    channels: Annotated[list[Annotated[int, Field(ge=1, le=MAX_CHANNELS)]], Field(min_length=1, max_length=64)]
    kernel: list[Positive]
    stride: list[Positive]
    padding: list[Small]
    groups: list[Positive]
    pool: list[Pool]
    pool_size: Annotated[int, Field(ge=2, le=8)] = 2
    # Each layer's normalisation after pooling; the normal form of no normalisation anywhere is
    # None (left out), so the trial_ids of nets without it did not change when it came.
    norm: list[Norm] | None = None
    # BatchNorm2d's (torch's defaults): y = gamma (a - mean) / sqrt(var + eps) + beta over the
    # batch's N x H x W values of a channel in training; running mean and (unbiased) variance
    # r = (1 - momentum) r + momentum * batch value, read by frozen layers and at evaluation.
    bn_eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-5
    bn_momentum: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1

    @model_validator(mode="before")
    @classmethod
    def _per_layer(cls, data):
        """One value for every layer, or left out (LAYER_DEFAULTS): one per layer."""
        if not isinstance(data, dict) or not isinstance(data.get("channels"), list):
            return data
        n, data = len(data["channels"]), dict(data)
        for field, default in {**LAYER_DEFAULTS, "norm": "none"}.items():
            v = default if data.get(field) is None else data[field]  # None: a dumped spec's left-out norm
            if isinstance(v, list) and len(v) != n:
                raise ValueError(f"{field}: expected one value per layer ({n}, as channels) or one for all; got {len(v)}")
            data[field] = v if isinstance(v, list) else [v] * n
        if data["norm"] == ["none"] * n:
            data["norm"] = None
        return data

    def layers(self, image: Geometry) -> list[ConvLayer]:
        """Every layer's geometry on an input of shape `image`; raises ValueError where one does not fit."""
        out, shape = [], image
        for i, c in enumerate(self.channels):
            layer = ConvLayer(i, shape, c, self.kernel[i], self.stride[i], self.padding[i], self.groups[i], self.pool[i],
                              self.pool_size, "none" if self.norm is None else self.norm[i], self.bn_eps, self.bn_momentum)
            if shape.channels % layer.groups or c % layer.groups:
                raise ValueError(f"conv layer {i}: groups {layer.groups} must divide its input channels "
                                 f"({shape.channels}) and its channels ({c})")
            if min(layer.output.height, layer.output.width) < 1:
                raise ValueError(f"conv layer {i}: a {shape.height}x{shape.width} input leaves no output "
                                 f"(kernel {layer.kernel}, stride {layer.stride}, padding {layer.padding}, "
                                 f"pool {layer.pool})")
            out.append(layer)
            shape = layer.output
        return out

    def widths(self, image: Geometry) -> list[int]:
        """Each layer's flat width (C x H x W of its pooled map): the trial's `hidden`."""
        return [layer.output.size for layer in self.layers(image)]

    @model_validator(mode="after")
    def _kernel_fits_padding(self) -> ConvSpec:
        bad = [i for i, (k, p) in enumerate(zip(self.kernel, self.padding)) if p >= k]
        if bad:
            raise ValueError(f"conv layers {bad}: padding must be smaller than the kernel")
        return self


def _listed(value) -> list | None:
    """A per-layer conv field as a spec dict, a ConvSpec or a results column holds it: a list,
    an array, or None / NaN where the net has none."""
    return None if value is None or isinstance(value, (str, float)) or not len(value) else list(value)


def architecture(hidden, channels=None, groups=None, norm=None) -> str:
    """A net as tables and progress lines show it: a conv net (`channels` a sequence) as its conv
    channels, a layer of grouped channels with its groups, a batch-normalised one with `bn`:
    `conv 20-80-240-480`, `conv 20-80g10-240-480g10 bn` (every layer normalised); else the dense
    widths `2000x2000`."""
    channels = _listed(channels)
    if channels is None:
        return "x".join(map(str, hidden))
    n = len(channels)
    groups, norm = _listed(groups) or [1] * n, _listed(norm) or ["none"] * n
    every = all(v == "batch" for v in norm)
    layers = [f"{c}" + (f"g{g}" if g > 1 else "") + ("bn" if v == "batch" and not every else "")
              for c, g, v in zip(channels, groups, norm)]
    return "conv " + "-".join(layers) + (" bn" if every else "")


def conv_label(conv) -> dict:
    """`architecture`'s conv arguments from a spec's `conv` dict (None: a dense net)."""
    conv = conv or {}
    return {k: conv.get(k) for k in ("channels", "groups", "norm")}


def check_conv(trial) -> None:
    """What an FF conv net does not combine with (each would need its own definition)."""
    ff = trial.ff
    for field, value, plain in (("ff.receptive_field", ff.receptive_field, None), ("ff.recurrent", ff.recurrent, None)):
        if value != plain:
            raise ValueError(f"{field} is a dense-net choice: it does not combine with conv")
    if ff.peer_weight > 0:
        raise ValueError("ff.peer_weight: peer normalisation is defined on dense layers: it does not combine with conv")
    if trial.conv.norm is not None and NEGATIVES.get(ff.negatives).scored:
        raise ValueError(f"ff.negatives: {ff.negatives} scores labels at the current weights, which with conv.norm: "
                         "batch would read the running statistics mid-epoch: not defined yet")
    if ff.relu_grad != "standard" and "max" in trial.conv.pool:
        raise ValueError("ff.relu_grad: straight_through passes gradient through zeroed activities, whose ties make "
                         "a max pool's gradient undefined: use pool: avg or none")
