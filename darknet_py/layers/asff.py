"""[asff]: adaptive spatial feature fusion (Liu, Huang, Wang 2019), an extension Darknet does not read.

One section fuses two or three feature levels into the resolution and channels of one of them::

    [asff]
    from=79,87,95     # the levels, coarsest first; each next one twice the width and height
    level=0           # which of them this section outputs (0 = the first in from=)
    filters=1024      # channels of the output (default: that level's channels)
    compress=16       # channels of each level's weight branch (default 16; the paper's rfb uses 8)
    activation=leaky  # of every inner convolution except the weighting one (default leaky)

Every level k is rescaled to the chosen level l (its channels C_l and resolution): itself as
it is; from a coarser level, a 1x1 convolution to C_l (only when its channels differ) and
nearest upsampling by 2^(l-k); from the next finer level, a 3x3 stride-2 convolution; from two
levels finer, a 3x3 stride-2 max pool (Darknet's [maxpool] size=3 stride=2) then that
convolution. Each rescaled map gives ``compress`` channels through a 1x1 convolution; their
concatenation gives one logit per level through a 1x1 convolution with biases and no batch
norm or activation; a softmax over the levels weights the sum of the rescaled maps, and a 3x3
convolution "expands" it to ``filters``. Every convolution except the weighting one has
batch_normalize=1.

Weights file order (each convolution as a [convolutional] stores it: biases, then scales,
rolling_mean, rolling_variance when batch-normalized, then weights), in the order they run:
the rescaling convolutions of the levels in from= order (levels that need none skipped), the
``compress`` convolutions in from= order, the weighting convolution, the expanding one.
"""
from __future__ import annotations

import torch
from torch import nn

from ..activations import read_activation
from ..registry import LayerSpec, Shape, register
from .conv import Convolutional
from .pool import MaxPool

MAX_LEVELS = 3  # the paper's rescaling rules reach two levels up or down, no further


class ASFF(nn.Module):
    """Fuses ``len(channels)`` levels (coarsest first) into level ``level``.

    ``forward`` takes the chosen level's map first, then the others in level order (the order
    of the spec's ``sources``), so the layer table shows the chosen level as the input.
    """

    def __init__(self, channels, sizes, level, filters, compress, activation):
        super().__init__()
        self.level = level
        c, (h, w), n = channels[level], sizes[level], len(channels)
        self.resize = nn.ModuleDict()
        inputs = []  # each inner convolution's input shape, in convs() order, to prepack weights
        for k, ck in enumerate(channels):
            if k < level and ck != c:
                self.resize[str(k)] = Convolutional(ck, c, 1, 1, 0, 1, True, activation)
                inputs.append(Shape(ck, *sizes[k]))
            elif k > level:
                self.resize[str(k)] = Convolutional(ck, c, 3, 2, 1, 1, True, activation)
                inputs.append(Shape(ck, *sizes[level + 1]))
        self.pool = MaxPool(3, 2, 2)
        self.weight = nn.ModuleList(Convolutional(c, compress, 1, 1, 0, 1, True, activation)
                                    for _ in range(n))
        self.weight_levels = Convolutional(n * compress, n, 1, 1, 0, 1, False, "linear")
        self.expand = Convolutional(c, filters, 3, 1, 1, 1, True, activation)
        self.inputs = inputs + [Shape(c, h, w)] * n + [Shape(n * compress, h, w), Shape(c, h, w)]
        # forward's argument position of each level: the chosen one first, the others in order
        self.position = [0 if k == level else 1 + k - (k > level) for k in range(n)]

    def convs(self):
        """The inner convolutions in weights-file order."""
        return [*self.resize.values(), *self.weight, self.weight_levels, self.expand]

    @property
    def sync_group(self):
        return self.expand.sync_group

    @sync_group.setter
    def sync_group(self, group):
        """Synchronized batch norm (the trainer sets it on layers that have it) reaches every
        inner convolution."""
        for conv in self.convs():
            conv.sync_group = group

    def reset_parameters(self):
        for conv in self.convs():
            conv.reset_parameters()

    def prepare_inference(self, dtype, fold, input_shape=None, winograd=True):
        """Inference copies of every inner convolution (see ``Convolutional``), each prepacked
        for its own input shape; ``input_shape`` (the first source's) is not needed."""
        for conv, shape in zip(self.convs(), self.inputs):
            conv.prepare_inference(dtype, fold, shape, winograd)

    def winograd_bytes(self, input_shape, dtype) -> int:
        return sum(conv.winograd_bytes(shape, dtype) for conv, shape in zip(self.convs(), self.inputs))

    def _rescaled(self, k, x):
        if k < self.level:
            if str(k) in self.resize:
                x = self.resize[str(k)](x)
            factor = 2 ** (self.level - k)  # nearest
            return x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
        if k > self.level + 1:
            x = self.pool(x)
        return self.resize[str(k)](x) if k > self.level else x

    def forward(self, *xs):
        maps = [self._rescaled(k, xs[p]) for k, p in enumerate(self.position)]
        logits = self.weight_levels(torch.cat([branch(m) for branch, m in zip(self.weight, maps)], 1))
        weights = torch.softmax(logits, 1)
        fused = sum(m * weights[:, k:k + 1] for k, m in enumerate(maps))
        return self.expand(fused)

    def blobs(self):
        return [blob for conv in self.convs() for blob in conv.blobs()]


def _conv_cost(c_in, n, size, out_hw, bn):
    """(parameters, Darknet's FLOPs) of one inner convolution."""
    k = size * size * c_in
    return n * (k + 1 + 3 * bn), 2.0 * n * k * out_hw


@register("asff")
def build_asff(s, ctx):
    froms = s.ints("from")
    if not 2 <= len(froms) <= MAX_LEVELS:
        raise s.error(f"needs 2 or 3 layers (the feature levels, coarsest first), got {len(froms)}", "from")
    sources = [ctx.resolve(s, "from", i) for i in froms]
    if len(set(sources)) != len(sources):
        raise s.error(f"lists a layer twice ({', '.join(map(str, sources))})", "from")
    shapes = [ctx.shape_of(i) for i in sources]
    for (i, coarse), (j, fine) in zip(zip(sources, shapes), zip(sources[1:], shapes[1:])):
        if (fine.w, fine.h) != (2 * coarse.w, 2 * coarse.h):
            raise s.error(f"layer {j} is {fine.w} x {fine.h}, layer {i} is {coarse.w} x {coarse.h}: each level "
                          "must have exactly twice the width and height of the one before it", "from")
    level = s.int("level")
    if not 0 <= level < len(sources):
        raise s.error(f"must index a layer of from= (0..{len(sources) - 1}), got {level}", "level")
    own = shapes[level]
    filters = s.int("filters", own.c, minimum=1)
    compress = s.int("compress", 16, minimum=1)
    act = read_activation(s, "leaky")

    channels = [sh.c for sh in shapes]
    sizes = [(sh.h, sh.w) for sh in shapes]
    hw, n = own.h * own.w, len(shapes)
    costs = []
    for k, sh in enumerate(shapes):
        if k < level and sh.c != own.c:
            costs.append(_conv_cost(sh.c, own.c, 1, sh.h * sh.w, True))
        elif k > level:
            costs.append(_conv_cost(sh.c, own.c, 3, hw, True))
    costs += [_conv_cost(own.c, compress, 1, hw, True)] * n
    costs += [_conv_cost(n * compress, n, 1, hw, False), _conv_cost(own.c, filters, 3, hw, True)]
    ordered = (sources[level],) + tuple(i for k, i in enumerate(sources) if k != level)
    return LayerSpec(
        "asff", ordered, Shape(filters, own.h, own.w),
        lambda: ASFF(channels, sizes, level, filters, compress, act),
        n_params=sum(p for p, _ in costs), flops=sum(f for _, f in costs),
        label="asff", detail=f"{filters:5d} level {level} of {n}")
