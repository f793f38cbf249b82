"""Torch translations of `ffbench.reference` (rng, augment, negatives, ff), function for function."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ffbench.geometry import Geometry
from ffbench.reference.ff import label_groups
from ffbench.reference.negatives import VIEW_EPS
from ffbench.reference.rng import (
    MASK32,
    MUL1,
    MUL2,
    STREAM_HYBRID,
    STREAM_NEGATIVES,
    STREAM_ORDER,
    STREAM_PERMUTE,
    STREAM_SPLIT,
    stream_key,
)
from ffbench.spec import NUM_CLASSES, FFSpec


# ---------------------------------------------------------------- rng.py
def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x in [0, 2**32), without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, MUL1)
    x = x ^ (x >> 15)
    x = _mul32(x, MUL2)
    return x ^ (x >> 16)


def epoch_order(seed: int, epoch: int, n: int, device) -> torch.Tensor:
    idx = torch.arange(n, device=device, dtype=torch.int64)
    return torch.argsort(lowbias32(idx ^ stream_key(seed, STREAM_ORDER, epoch)), stable=True)


def negatives_hash(seed: int, epoch: int, index: torch.Tensor) -> torch.Tensor:
    return lowbias32(index ^ stream_key(seed, STREAM_NEGATIVES, epoch))


def sample_hash(key: int, index: torch.Tensor) -> torch.Tensor:
    """`rng.sample_hash`; `key` is the draw's stream key (`rng.stream_key`)."""
    return lowbias32(keyed(index, key))


def below(h: torch.Tensor, n: int) -> torch.Tensor:
    """`rng.below`: an integer in 0..n-1 from each hash."""
    return ((h >> 8) * n) >> 24


def uniform24(h: torch.Tensor) -> torch.Tensor:
    return (h >> 8).to(torch.float32) * 2.0**-24


def wrong_labels(seed: int, epoch: int, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    h = negatives_hash(seed, epoch, index)
    return (labels + (((h >> 8) * (NUM_CLASSES - 1)) >> 24) + 1) % NUM_CLASSES


def batch_permutations(seed: int, epoch: int, steps: int, batch_size: int, device) -> torch.Tensor:
    idx = torch.arange(steps * batch_size, device=device, dtype=torch.int64)
    return torch.argsort(lowbias32(idx ^ stream_key(seed, STREAM_PERMUTE, epoch)).view(steps, batch_size), dim=1, stable=True)


def keyed(index: torch.Tensor, key: int | torch.Tensor) -> torch.Tensor:
    """index ^ key, the start of every per-sample hash. `key` is a stream key
    (`rng.stream_key`), or in a pack one per member: a (K,) tensor against index's leading axis."""
    if isinstance(key, torch.Tensor):
        key = key.view(-1, *[1] * (index.dim() - 1))
    return index ^ key


# ---------------------------------------------------------------- augment.py
def jitter_shifts(key: int | torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`key`: stream_key(seed, STREAM_JITTER, epoch)."""
    h = lowbias32(keyed(index, key))
    n = 2 * k + 1
    return (((h >> 8) * n) >> 24) - k, (((lowbias32(h) >> 8) * n) >> 24) - k


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, image: Geometry) -> torch.Tensor:
    """Images (..., C*H*W) shifted by (dy, dx) of shape (...), zeros shifted in."""
    shape, dy, dx = x.shape, dy.reshape(-1), dx.reshape(-1)
    h, w = image.height, image.width
    x = x.reshape(-1, image.channels, image.pixels)
    r = torch.arange(h, device=x.device)[None, :, None] - dy[:, None, None]
    c = torch.arange(w, device=x.device)[None, None, :] - dx[:, None, None]
    inside = ((r >= 0) & (r < h) & (c >= 0) & (c < w)).view(len(x), 1, -1)
    src = (r.clamp(0, h - 1) * w + c.clamp(0, w - 1)).view(len(x), 1, -1).expand(-1, image.channels, -1)
    return torch.where(inside, torch.gather(x, 2, src), 0.0).view(shape)


def batch_images(x: torch.Tensor, idx: torch.Tensor, key: int | torch.Tensor, k: int, image: Geometry) -> torch.Tensor:
    """Images `idx` (any shape) of `x`, shifted by up to `k` pixels (`reference.augment.batch_images`)."""
    return x[idx] if not k else shift_images(x[idx], *jitter_shifts(key, idx, k), image)


# ---------------------------------------------------------------- negatives.py
def class_table(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    members = torch.argsort(y, stable=True)
    count = torch.bincount(y, minlength=NUM_CLASSES)
    return members, torch.cumsum(count, 0) - count, count


def hybrid_partners(seed: int, epoch: int, index: torch.Tensor, y: torch.Tensor, table) -> torch.Tensor:
    members, start, count = table
    h = lowbias32(index ^ stream_key(seed, STREAM_HYBRID, epoch))
    other = (y + (((h >> 8) * (NUM_CLASSES - 1)) >> 24) + 1) % NUM_CLASSES
    return members[start[other] + (((lowbias32(h) >> 16) * count[other]) >> 16)]


def split_negatives(seed: int, epoch: int, n: int, n_rest: int, device) -> torch.Tensor:
    idx = torch.arange(n_rest, device=device, dtype=torch.int64)
    perm = torch.argsort(lowbias32(idx ^ stream_key(seed, STREAM_SPLIT, epoch)), stable=True)
    return n + perm[torch.arange(n, device=device) % n_rest]


def blur(m: torch.Tensor, passes: int) -> torch.Tensor:
    for _ in range(passes):
        p = torch.cat([m[:, :, :1], m, m[:, :, -1:]], dim=2)
        m = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
        p = torch.cat([m[:, :1], m, m[:, -1:]], dim=1)
        m = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return m


def hybrid_masks(key: int | torch.Tensor, index: torch.Tensor, passes: int, image: Geometry) -> torch.Tensor:
    """Masks (..., C*H*W) for samples `index` (any shape); `key`: stream_key(seed, STREAM_MASK, epoch)."""
    pixel = index[..., None] * image.pixels + torch.arange(image.pixels, device=index.device)
    bits = (lowbias32(keyed(pixel, key)) >> 31).to(torch.float32)
    m = (blur(bits.view(-1, image.height, image.width), passes) > 0.5).to(torch.float32).view(*index.shape, image.pixels)
    return m if image.channels == 1 else m.repeat(*[1] * index.dim(), image.channels)


def best_wrong(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(F.one_hot(labels, NUM_CLASSES).bool(), -torch.inf).argmax(dim=1)


def sample_wrong(scores: torch.Tensor, labels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    mask = F.one_hot(labels, NUM_CLASSES).bool()
    top = scores.masked_fill(mask, -torch.inf).amax(dim=1, keepdim=True)
    c = torch.exp(scores - top).masked_fill(mask, 0.0).cumsum(dim=1)
    pick = (c <= (u * c[:, -1])[:, None]).sum(dim=1).clamp(max=NUM_CLASSES - 1)
    return torch.where(pick == labels, best_wrong(scores, labels), pick)


# ---------------------------------------------------------------- ff.py
def overlay(x: torch.Tensor, labels: torch.Tensor | None, ff: FFSpec) -> torch.Tensor:
    if not ff.embeds_labels:
        return x
    head = x.new_full((x.shape[0], NUM_CLASSES), ff.label_neutral) if labels is None else (
        F.one_hot(labels, NUM_CLASSES).to(x.dtype)
        * (ff.label_on * x.amax(dim=1, keepdim=True) if ff.label_on_mode == "image_max" else ff.label_on))
    groups = label_groups(ff)
    if groups == 1:
        return torch.cat([head, x[:, NUM_CLASSES:]], dim=1)
    xg = x.view(x.shape[0], groups, -1)
    return torch.cat([head[:, None].expand(-1, groups, -1), xg[:, :, NUM_CLASSES:]], dim=2).view(x.shape)


def normalize(x: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "std":  # over the last axis: a pack's views have a leading member axis (`pair_rows`)
        c = x - x.mean(dim=-1, keepdim=True)
        return c / (torch.sqrt((c * c).sum(dim=-1, keepdim=True) / (x.shape[-1] - 1)) + eps)
    sq = x * x
    r = torch.sqrt(sq.sum(dim=1, keepdim=True) if kind == "l2" else sq.mean(dim=1, keepdim=True))
    return x / (r + eps)


def relu(z: torch.Tensor, grad: str) -> torch.Tensor:
    h = torch.relu(z)
    return z + (h - z).detach() if grad == "straight_through" else h


@functools.lru_cache(maxsize=16)
def local_mask(n_out: int, n_in: int, k: int, image: Geometry, device: torch.device) -> torch.Tensor:
    hw, width = image.pixels, image.width
    po, pi = torch.arange(n_out, device=device) % hw, torch.arange(n_in, device=device) % hw
    near = lambda a, b: (a[:, None] - b[None, :]).abs() <= k // 2  # noqa: E731
    return (near(po // width, pi // width) & near(po % width, pi % width)).to(torch.float32)


def effective_weights(w: torch.Tensor, ff: FFSpec) -> torch.Tensor:
    return w if ff.receptive_field is None else w * local_mask(*w.shape, ff.receptive_field, ff.image, w.device)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, precision: str = "fp32") -> torch.Tensor:
    """x @ w.T + b. bf16: operands and product in bfloat16 (autograd keeps the backward matmuls
    in bfloat16 too), then float32; the bias is added in float32. fp32/tf32: a float32 matmul
    (TF32 or not is the device's setting, made by the trainer: `common.set_matmul_precision`)."""
    if precision == "bf16":
        y = F.linear(x.to(torch.bfloat16), w.to(torch.bfloat16)).float()
        return y if b is None else y + b
    return F.linear(x, w, b)


def conv_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, spec, relu_grad: str = "standard",
               precision: str = "fp32", bn=None) -> torch.Tensor:
    """`reference.conv.layer`: pool(relu(conv(x))) of flat rows x, as flat rows; a batch-normalised
    layer then normalised by `bn` = (gamma, beta, running (2, C)), frozen. bf16: the conv's
    operands and result in bfloat16, as `linear`'s."""
    a = _conv_pool(x, w, b, spec, relu_grad, precision)
    if spec.batch_norm:
        gamma, beta, running = bn
        a = F.batch_norm(a, running[0], running[1], gamma, beta, False, 0.0, spec.bn_eps)
    return a.reshape(x.shape[0], spec.output.size)  # explicit: a step of no negatives has 0 rows


def conv_layer_train(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gamma, beta, running: torch.Tensor, spec,
                     relu_grad: str = "standard", precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """`reference.conv.layer_train`: a batch-normalised layer on its batch's statistics, as flat
    rows, and its new running statistics. Written in torch ops, autograd's reductions summing
    its gradient: the native batch_norm's float32 backward (and oneDNN's fused conv-bias gradient,
    `_conv_pool`) left enough noise in the conv bias's gradient, which batch norm cancels to
    ~0, to move a windowed run's params 1e-3 from the reference (`ffbench check`: <= 5e-6 now)."""
    a = _conv_pool(x, w, b, spec, relu_grad, precision)
    mean = a.mean(dim=(0, 2, 3))
    c = a - mean[:, None, None]
    var = (c * c).mean(dim=(0, 2, 3))
    y = c * (gamma * torch.rsqrt(var + spec.bn_eps))[:, None, None] + beta[:, None, None]
    count = a.numel() // a.shape[1]
    batch = torch.stack([mean, var * count / (count - 1)]).detach()
    return y.reshape(x.shape[0], spec.output.size), (1.0 - spec.bn_momentum) * running + spec.bn_momentum * batch


def _conv_pool(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, spec, relu_grad: str, precision: str) -> torch.Tensor:
    x4 = x.reshape(x.shape[0], *spec.input)
    if precision == "bf16":
        z = F.conv2d(x4.to(torch.bfloat16), w.to(torch.bfloat16), None, spec.stride, spec.padding, 1, spec.groups)
        z = z.float() + b[:, None, None]
    elif spec.batch_norm:  # the bias apart: its gradient, a sum that batch norm cancels to ~0, summed by autograd
        z = F.conv2d(x4, w, None, spec.stride, spec.padding, 1, spec.groups) + b[:, None, None]
    else:
        z = F.conv2d(x4, w, b, spec.stride, spec.padding, 1, spec.groups)
    a = relu(z, relu_grad)
    if spec.pool == "max":
        a = F.max_pool2d(a, spec.pool_size)
    elif spec.pool == "avg":
        a = F.avg_pool2d(a, spec.pool_size)
    return a


def dense(xn: torch.Tensor, w: torch.Tensor, b: torch.Tensor, ff: FFSpec, precision: str) -> torch.Tensor:
    """A dense layer's pre-activation z; rows twice its fan-in wide are pairs (`reference.ff.pair_sum`)."""
    w, d = effective_weights(w, ff), w.shape[1]
    if xn.shape[1] == 2 * d:
        return linear(xn[:, :d] + xn[:, d:], w, None, precision) + 2.0 * b
    return linear(xn, w, b, precision)


def activate(z: torch.Tensor, ff: FFSpec) -> torch.Tensor:
    """`reference.ff.activate`: relu(z), or relu(z - mean z) (ff.activation: triangle)."""
    return relu(z, ff.relu_grad) if ff.activation == "relu" else torch.relu(z - z.mean(dim=1, keepdim=True))


def layer_forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, ff: FFSpec, precision: str = "fp32",
                  normalized: bool = False, layer: int | None = None, bn=None) -> torch.Tensor:
    """activate(W normalize(x) + b), or layer `layer`'s conv (a conv net's ops need the index);
    `normalized`: `x` is normalised already (`ffbench.frozen`); `bn`: a batch-normalised
    layer's `reference.ff.frozen_bn`."""
    xn = x if normalized else normalize(x, ff.norm, ff.norm_eps)
    spec = ff.conv_layer(layer)
    if spec is not None:
        return conv_layer(xn, w, b, spec, ff.relu_grad, precision, bn)
    return activate(dense(xn, w, b, ff, precision), ff)


def trained_layer(x: torch.Tensor, p: tuple, running: torch.Tensor, ff: FFSpec, precision: str = "fp32",
                  normalized: bool = False, layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(what its objective reads, its output, carried statistics) of layer `layer` (params `p`)
    where it trains: a batch-normalised conv layer on its batch's statistics
    (`reference.ff._train_forward`), else `layer_forward`; a triangle layer's objective reads
    relu(z) (`reference.ff.objective_activities`)."""
    xn = x if normalized else normalize(x, ff.norm, ff.norm_eps)
    if len(p) > 2:
        h, running = conv_layer_train(xn, *p, running, ff.conv_layer(layer), ff.relu_grad, precision)
        return h, h, running
    if ff.activation == "relu" or ff.conv_layer(layer) is not None:
        h = layer_forward(xn, *p, ff, precision, normalized=True, layer=layer)
        return h, h, running
    z = dense(xn, *p, ff, precision)
    return relu(z, ff.relu_grad), activate(z, ff), running


def eval_rows(x: torch.Tensor, ff: FFSpec) -> torch.Tensor:
    """`reference.ff.eval_rows`: the neutral-label overlay, or a pairing strategy's own rows."""
    return pair_rows(x, x) if ff.pairs else overlay(x, None, ff)


def pair_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a | b] of two views, each standardised on its own (`reference.negatives.views`)."""
    return torch.cat([normalize(a, "std", VIEW_EPS), normalize(b, "std", VIEW_EPS)], dim=-1)


def objective_rows(h: torch.Tensor, ff: FFSpec, layer: int | None) -> torch.Tensor:
    """`reference.ff.objective_rows`: per-position rows of C activities with goodness_over: position."""
    k = ff.positions(layer)
    return h if k == 1 else h.reshape(h.shape[0], -1, k).transpose(1, 2).reshape(h.shape[0] * k, -1)


def image_scores(s: torch.Tensor, ff: FFSpec, layer: int | None) -> torch.Tensor:
    """`reference.ff.image_scores`: the mean over an image's positions."""
    k = ff.positions(layer)
    return s if k == 1 else s.reshape(-1, k).mean(dim=1)


def first_layer_all_labels(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, ff: FFSpec,
                           precision: str = "fp32", bn=None) -> torch.Tensor:
    """(10, B, H): layer 0's activation with each label overlaid, from one matmul
    (`reference.ff.first_layer_all_labels`: z_c = base @ W.T + b + a W_c); a conv layer: each overlay in turn."""
    if ff.conv_layers is not None:
        return torch.stack([layer_forward(overlay(x, x.new_full((x.shape[0],), c, dtype=torch.int64), ff), w, b, ff, precision,
                                          layer=0, bn=bn) for c in range(NUM_CLASSES)])
    n, groups = x.shape[0], label_groups(ff)
    xn = normalize(overlay(x, x.new_zeros(n, dtype=torch.int64), ff), ff.norm, ff.norm_eps)
    a = xn[:, :1].clone()
    xn.view(n, groups, -1)[:, :, 0] = 0
    w = effective_weights(w, ff)
    wc = w[:, :NUM_CLASSES] if groups == 1 else w.view(w.shape[0], groups, -1)[:, :, :NUM_CLASSES].sum(dim=1)
    return torch.addcmul(linear(xn, w, b, precision)[None], a[None], wc.T.contiguous()[:, None, :]).relu_()


def peer_loss(h_pos: torch.Tensor, running_mean: torch.Tensor, ff: FFSpec) -> tuple[torch.Tensor, torch.Tensor]:
    r = ff.peer_momentum * running_mean + (1 - ff.peer_momentum) * h_pos.mean(dim=0)
    return ((r.mean() - r) ** 2).mean(), r.detach()
