"""[convolutional], [connected], [local] and [batchnorm]: the layers that hold weights."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..activations import Activation, read_activation
from ..cfg import INT_RANGE
from ..errors import CfgError
from ..registry import LayerSpec, Shape, register
from .base import BatchNormMixin, Blob, refuse_unsupported
from .. import tuner
from . import epilogue
from .winograd import ACTIVATIONS as WINOGRAD_ACTIVATIONS, GROUP_FLOATS, Winograd, available as winograd_available, \
    transformed_bytes


def out_size(section, key, size_in, kernel, stride, padding_total):
    """Darknet's ``(in + pad - size) / stride + 1``, refusing shapes that would not exist."""
    span = size_in + padding_total - kernel
    if span < 0:
        raise section.error(f"kernel {kernel} does not fit an input of {size_in} with padding "
                            f"{padding_total}", key)
    return span // stride + 1


# Darknet activation -> oneDNN post-op of torch.ops.mkldnn._convolution_pointwise
_ONEDNN_POSTOPS = {"leaky": ("leaky_relu", [0.1]), "relu": ("relu", []), "logistic": ("sigmoid", []),
                   "tanh": ("tanh", []), "linear": ("none", [])}


@torch.no_grad()
def _darknet_init(layer, fan_in):
    if hasattr(layer, "weights"):
        layer.weights.normal_(0.0, math.sqrt(2.0 / fan_in))
    layer.biases.zero_()
    if hasattr(layer, "scales"):
        layer.scales.fill_(1.0)
        layer.rolling_mean.zero_()
        layer.rolling_variance.fill_(1.0)


class Blur(nn.Module):
    """AlexeyAB's ``antialiasing``: a fixed depthwise blur that takes over the layer's stride
    (``make_convolutional_layer`` / ``make_maxpool_layer`` build it as ``l.input_layer``). Its
    weights are constants, never stored in a weights file."""

    def __init__(self, kind, stride):
        super().__init__()
        if kind == 2:
            kernel = torch.full((2, 2), 1 / 4)
        else:
            kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        self.register_buffer("kernel", kernel, persistent=False)
        self.padding = self.geometry(kind)[1]
        self.stride = stride

    @staticmethod
    def geometry(kind):
        """(size, padding) of the blur: 2x2 unpadded for antialiasing=2, else 3x3 padded by 1."""
        return (2, 0) if kind == 2 else (3, 1)

    def forward(self, x):
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, *self.kernel.shape).contiguous()
        return F.conv2d(x, k, None, self.stride, self.padding, 1, c)


def refuse_resizing_blur(section, kind, stride_x, stride_y, size_h, size_w):
    """Refuse an ``antialiasing`` blur that would change the layer's size. AlexeyAB's
    ``make_convolutional_layer``/``make_maxpool_layer`` record the stride-1 host size
    (``size_w`` x ``size_h``) as the layer's output for every later layer, while the forward
    pass copies only the smaller blurred output (strided, or 2x2 unpadded for antialiasing=2)
    over the front of that buffer: the rest keeps unblurred values, and with a batch the front
    holds other images' results. Only a blur that keeps the size (antialiasing=1 at stride 1)
    means the same thing to Darknet and to a tensor."""
    if kind and (kind == 2 or stride_x > 1 or stride_y > 1):
        blur, pad = Blur.geometry(kind)
        small_w, small_h = (size_w + 2 * pad - blur) // stride_x + 1, (size_h + 2 * pad - blur) // stride_y + 1
        raise section.error(
            f"antialiasing={kind} at stride {stride_x}x{stride_y} is not supported: AlexeyAB's Darknet records "
            f"this layer's output as {size_w} x {size_h} (its stride-1 size) for the layers after it, but "
            f"fills only the first {small_w} x {small_h} x channels values of it with the blurred result "
            "(the rest keeps unblurred values, and in a batch other images' results), which no tensor "
            "reproduces; antialiasing=1 with stride 1 is consistent", "antialiasing")


def set_fork(module, fork):
    """The module with batch norm following ``fork`` (netcfg.FORKS)."""
    module.fork = fork
    return module


class Convolutional(BatchNormMixin, nn.Module):
    """Darknet's convolution; AlexeyAB adds ``stride_x``/``stride_y`` (``stride`` is (y, x)),
    ``dilation`` (padding scaled by it, as ``im2col_cpu_ext``) and ``antialiasing`` (stride 1,
    then a :class:`Blur` with the stride; only stride 1 is accepted, ``refuse_resizing_blur``)."""

    def __init__(self, c, n, size, stride, padding, groups, batch_normalize, activation,
                 dilation=1, antialiasing=0):
        super().__init__()
        self.stride = stride if isinstance(stride, tuple) else (stride, stride)
        self.dilation, self.padding, self.groups = dilation, padding * dilation, groups
        self.batch_normalize = batch_normalize
        self._own_parameters(c, n, size, groups, batch_normalize)
        self.activation = Activation(activation)
        self.blur = None
        if antialiasing:
            self.blur = Blur(antialiasing, self.stride)
            self.stride = (1, 1)

    def _own_parameters(self, c, n, size, groups, batch_normalize):
        self.weights = nn.Parameter(torch.empty(n, c // groups, size, size))
        self.biases = nn.Parameter(torch.empty(n))
        if batch_normalize:
            self._init_bn(n)

    def reset_parameters(self):
        """Darknet's initialisation: weights ~ N(0, 2 / fan_in), zero biases, unit BN."""
        _darknet_init(self, self.weights[0].numel())

    @torch.no_grad()
    def prepare_inference(self, dtype, fold: bool, input_shape=None, winograd=True):
        """Inference copies of the weights, apart from the parameters (which ``blobs`` and
        saving still use): channels-last in ``dtype``, batch norm folded in when ``fold``; on
        the CPU weights prepacked for oneDNN with bias and activation fused where nothing sits
        between them (when this PyTorch build offers that private operator), or, for a 3x3
        stride-1 layer where ``winograd`` allows and the tuner measured it faster on this host
        (``tuner.py``), Winograd's transformed weights instead."""
        w, b = self.weights, self.biases
        self.bn_apart = self.batch_normalize and not fold
        self.bn_affine = self._bn_affine() if self.bn_apart else None
        if self.batch_normalize and fold:
            factor = self.scales / self.bn_denominator(self.rolling_variance)
            w, b = w * factor.view(-1, 1, 1, 1), b - self.rolling_mean * factor
        self.winograd = None
        self.path = tuner.DIRECT
        self.bn_act = None  # (alpha, beta) for epilogue.affine_act_ where it applies
        if self.bn_apart and w.device.type == "cpu" and epilogue.applies(self.activation.name):
            self.bn_act = tuple(t.reshape(-1).float().contiguous() for t in self.bn_affine)
        self.folded, self.packed = (w.to(dtype).contiguous(memory_format=torch.channels_last), b.to(dtype)), None
        if w.device.type != "cpu" or input_shape is None:
            return
        choice = tuner.DIRECT
        if winograd and self.winograd_bytes(input_shape, dtype):
            key = self.tuning_key(input_shape, dtype)
            choice = "winograd" if tuner.forced() == "force" else tuner.default().cached(key)
            if choice is None or choice in GROUP_FLOATS:
                self.winograd = Winograd(w, dtype)  # from the float32 weights
                affine = (t.reshape(-1).float().contiguous() for t in self.bn_affine) if self.bn_apart else (None, b.float())
                self.winograd_affine = tuple(affine)
            if choice is None:  # not tuned on this host yet: time both
                self.packed = self._prepack(input_shape)
                choice = tuner.default().choose(key, lambda: self._candidates(input_shape, dtype))
        if choice in GROUP_FLOATS:
            self.path, self.packed, self.winograd.variant = choice, None, choice
        else:
            self.winograd = None
            self.packed = self.packed or self._prepack(input_shape)

    def _candidates(self, input_shape, dtype):
        """The tuner's candidates for one image of ``input_shape``: direct, Winograd's variants."""
        x = torch.rand(1, input_shape.c, input_shape.h, input_shape.w).to(dtype)
        x = x.contiguous(memory_format=torch.channels_last)

        def winograd(variant):
            def run():
                self.winograd.variant = variant
                return self._winograd(x)
            return run
        paths = {tuner.DIRECT: lambda: self._direct(x)}
        for variant in self.winograd.variants(1, input_shape.h, input_shape.w, torch.get_num_threads()):
            paths[variant] = winograd(variant)
        return paths

    def _prepack(self, input_shape):
        """oneDNN's prepacked weights with the fused bias and activation, or None where this
        PyTorch build lacks the operator."""
        w, b = self.folded
        attr, scalars = ("none", []) if self.bn_apart else _ONEDNN_POSTOPS.get(self.activation.name, ("none", []))
        geometry = ([self.padding] * 2, list(self.stride), [self.dilation] * 2, self.groups)
        try:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                w.to_mkldnn(), *geometry, [1, input_shape.c, input_shape.h, input_shape.w])
        except (AttributeError, RuntimeError, NotImplementedError):
            return None
        return (packed, None if self.bn_apart else b, *geometry, attr, scalars)

    def tuning_key(self, input_shape, dtype) -> str:
        """What the tuner's choice for this layer depends on: shape, precision, epilogue and
        thread count."""
        epilogue = "bn" if self.bn_apart else "bias"
        return (f"conv3x3s1 {input_shape.c}->{self.weights.shape[0]} {input_shape.h}x{input_shape.w} "
                f"{str(dtype).removeprefix('torch.')} {epilogue} {self.activation.name} "
                f"threads={torch.get_num_threads()}")

    def winograd_bytes(self, input_shape, dtype) -> int:
        """Bytes of the transformed weights ``prepare_inference`` may make for this input (0: none)."""
        if input_shape is None or not self._winograd_applies(dtype):
            return 0
        return transformed_bytes(*self.weights.shape[:2])

    def _winograd_applies(self, dtype):
        """Whether this layer could run as Winograd (its geometry, the kernel, the switches)."""
        return (self.weights.shape[2:] == (3, 3) and self.stride == (1, 1) and self.dilation == 1
                and self.padding == 1 and self.groups == 1 and self.blur is None
                and self.weights.device.type == "cpu" and winograd_available(dtype))

    def _winograd(self, x):
        inside = self.activation.name if self.activation.name in WINOGRAD_ACTIVATIONS else "linear"
        y = self.winograd(x, *self.winograd_affine, inside)
        return y if inside == self.activation.name else self.activation.inplace(y)

    def _direct(self, x):
        w, b = self.folded
        fused = False
        if self.packed is not None and x.dtype == w.dtype and x.device.type == "cpu":
            x = torch.ops.mkldnn._convolution_pointwise(x, *self.packed, "")
            fused = self.packed[-2] != "none"
        else:
            x = self._conv(x, w, None if self.bn_apart else b)
        if self.bn_apart:  # in place on the convolution's fresh output: no new buffer
            alpha, beta = self.bn_affine
            if self.bn_act is not None and x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last):
                return epilogue.affine_act_(x, *self.bn_act, self.activation.name)
            x = torch.addcmul(beta, x, alpha, out=x)
        return x if fused else self.activation.inplace(x)

    def _forward_inference(self, x):
        if x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
            # a layer before gave (b, c, h, w) order (yolov2's reorg): one copy here keeps the
            # prepacked and Winograd paths, which take channels-last only (yolov3-tiny 26x26 384->256:
            # copy + Winograd 4.9 ms, F.conv2d on that order 9.3 ms)
            x = x.contiguous(memory_format=torch.channels_last)
        if self.path != tuner.DIRECT and x.dtype == self.winograd.dtype and x.device.type == "cpu":
            return self._winograd(x)
        return self._direct(x)

    def _bn_affine(self):
        """Per-channel ``(alpha, beta)`` with which ``x * alpha + beta`` (a fused multiply-add)
        is bit for bit what ``_batch_norm`` gives in eval mode: ATen's batch norm makes
        ``alpha = (1 / sqrt(denominator^2)) * scales`` and ``beta = biases - mean * alpha`` (fused)
        this way."""
        alpha = (1 / self.bn_denominator(self.rolling_variance).square().sqrt()) * self.scales
        beta = torch.addcmul(self.biases, self.rolling_mean, alpha, value=-1)
        return alpha.view(1, -1, 1, 1), beta.view(1, -1, 1, 1)

    folded = packed = bn_affine = winograd = winograd_affine = bn_act = None
    bn_apart = False
    path = tuner.DIRECT  # or the Winograd variant prepare_inference chose

    def _conv(self, x, weights, biases):
        return F.conv2d(x, weights, biases, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x):
        if self.folded is not None and not torch.is_grad_enabled() and not self.training:
            x = self._forward_inference(x)
        elif self.batch_normalize:
            x = self.activation(self._batch_norm(self._conv(x, self.weights, None), self.biases))
        else:
            x = self.activation(self._conv(x, self.weights, self.biases))
        return x if self.blur is None else self.blur(x)

    def blobs(self):
        bn = self._bn_blobs() if self.batch_normalize else []
        return [Blob("biases", self.biases), *bn, Blob("weights", self.weights)]


def _from_owner(name):
    def get(self):
        owner = self.__dict__.get("_owner")
        if owner is None:
            raise AttributeError(f"{name}: layer {self.share_index} is not bound yet (Darknet binds it)")
        return getattr(owner[0], name)
    return property(get)


class SharedConvolutional(Convolutional):
    """AlexeyAB's ``share_index``: a convolution with its own geometry and activation that uses
    another [convolutional]'s weights, biases and batch norm (scales, rolling mean and variance:
    ``make_convolutional_layer`` points them at ``share_layer``'s) and stores nothing in a
    weights file (``load_weights``/``save_weights`` skip a layer with a ``share_layer``).
    The network binds it to that layer after building (:meth:`bind_shared`)."""

    weights, biases = _from_owner("weights"), _from_owner("biases")
    scales, rolling_mean, rolling_variance = (_from_owner("scales"), _from_owner("rolling_mean"),
                                              _from_owner("rolling_variance"))

    def __init__(self, share_index, where, c, n, size, stride, padding, groups, batch_normalize, activation,
                 dilation=1, antialiasing=0):
        self.share_index, self.where = share_index, where
        self.expected = (n, c // groups, size, size)
        super().__init__(c, n, size, stride, padding, groups, batch_normalize, activation, dilation, antialiasing)

    def _own_parameters(self, c, n, size, groups, batch_normalize):
        pass

    def bind_shared(self, layers):
        """Use ``layers[share_index]``'s tensors; refuse a layer whose sizes differ (Darknet
        checks size, nweights, channels and filters) or that has no batch norm to share."""
        owner = layers[self.share_index]
        file, line = self.where
        if not isinstance(owner, Convolutional):
            raise CfgError(f"layer {self.share_index} is not a [convolutional]", file=file, line=line,
                           section="convolutional", option="share_index")
        got = tuple(owner.weights.shape)
        if got != self.expected or (self.batch_normalize and not owner.batch_normalize):
            raise CfgError(f"layer {self.share_index} has weights {got}"
                           f"{'' if owner.batch_normalize else ' and no batch norm'}; this layer needs "
                           f"{self.expected}{' with batch norm' if self.batch_normalize else ''}",
                           file=file, line=line, section="convolutional", option="share_index")
        self.__dict__["_owner"] = (owner,)  # a tuple: not registered as a submodule

    def reset_parameters(self):
        pass  # the owner's

    def blobs(self):
        return []


@register("convolutional", "conv")
def build_convolutional(s, ctx):
    inp = ctx.prev
    n = s.int("filters", 1, minimum=1)
    size = s.int("size", 1, minimum=1)
    # parse_convolutional: stride_x/stride_y (AlexeyAB) each fall back to stride
    stride_x, stride_y = s.int("stride_x", -1), s.int("stride_y", -1)
    stride = s.int("stride", 1, minimum=1)
    stride_x, stride_y = (stride_x if stride_x >= 1 else stride), (stride_y if stride_y >= 1 else stride)
    dilation = s.int("dilation", 1, minimum=1) if size > 1 else 1
    s.ignore("dilation")
    padding = s.int("padding", 0, minimum=0)
    if s.int("pad", 0):
        padding = size // 2
    groups = s.int("groups", 1, minimum=1)
    if inp.c % groups or n % groups:
        raise s.error(f"input channels {inp.c} and filters {n} must both divide by groups={groups}", "groups")
    bn = bool(s.int("batch_normalize", 0))
    act = read_activation(s, "logistic", channelwise=True)
    antialiasing = s.int("antialiasing", 0, minimum=0)
    refuse_unsupported(s, "binary", "xnor", "flipped", "cbn", "bin_output", "sway", "rotate", "stretch",
                       "stretch_sway", "grad_centr", "coordconv", "assisted_excitation", "reverse")
    share = ctx.resolve(s, "share_index", s.int("share_index")) if s.has("share_index") else None
    # a training-time penalty between filters; GPU stream hints; angle only serves sway/rotate
    s.ignore("dot", "stream", "wait_stream", "angle")
    out_h = out_size(s, "size", inp.h, size, 1 if antialiasing else stride_y, 2 * padding)
    out_w = out_size(s, "size", inp.w, size, 1 if antialiasing else stride_x, 2 * padding)
    refuse_resizing_blur(s, antialiasing, stride_x, stride_y, out_h, out_w)
    if dilation > 1 and 2 * padding != size - 1:
        # Darknet sizes the output as if undilated, im2col_cpu_ext fills it dilated: they agree
        # only when the padding is (size - 1) / 2.
        raise s.error(f"dilation={dilation} needs pad=1 or padding=(size-1)/2 with an odd size "
                      f"(size={size}, padding={padding}): Darknet's output size and its im2col disagree",
                      "dilation")
    if max(inp.h, inp.w) + 2 * padding * dilation > INT_RANGE[1]:  # PyTorch crashes (SIGFPE) beyond
        raise s.error(f"dilation={dilation} with padding={padding}: the dilated padding of im2col_cpu_ext "
                      f"({max(inp.h, inp.w)} + 2 x {padding * dilation}) overflows Darknet's C int", "dilation")
    k = size * size * inp.c // groups
    flops = 2.0 * n * k * out_h * out_w
    if antialiasing:  # a 3x3 blur at stride 1: the size stays
        flops += 2.0 * n * 9 * out_h * out_w
    out = Shape(n, out_h, out_w)
    fork = ctx.net.fork
    strides = f"/{stride_x:2d}" if stride_x == stride_y else f"/{stride_x}x{stride_y}"
    args = (inp.c, n, size, (stride_y, stride_x), padding, groups, bn, act, dilation, antialiasing)
    if share is None:
        make = lambda: set_fork(Convolutional(*args), fork)  # noqa: E731
    else:
        where = (s.file, s.options["share_index"].line)
        make = lambda: set_fork(SharedConvolutional(share, where, *args), fork)  # noqa: E731
    return LayerSpec(
        "convolutional", (ctx.prev_index,), out, make,
        n_params=0 if share is not None else n * (k + 1 + 3 * bn), flops=flops,
        label="conv", detail=f"{n:5d} {size:2d} x{size:2d} {strides}")


class Connected(BatchNormMixin, nn.Module):
    def __init__(self, inputs, outputs, batch_normalize, activation):
        super().__init__()
        self.batch_normalize = batch_normalize
        self.biases = nn.Parameter(torch.empty(outputs))
        self.weights = nn.Parameter(torch.empty(outputs, inputs))
        if batch_normalize:
            self._init_bn(outputs)
        self.activation = Activation(activation)

    def reset_parameters(self):
        _darknet_init(self, self.weights.shape[1])

    def forward(self, x):
        if self.batch_normalize:
            x = self._batch_norm(F.linear(x.flatten(1), self.weights), self.biases)
        else:
            x = F.linear(x.flatten(1), self.weights, self.biases)
        return self.activation(x).view(x.shape[0], -1, 1, 1)

    def blobs(self):
        bn = self._bn_blobs() if self.batch_normalize else []
        return [Blob("biases", self.biases), Blob("weights", self.weights, transposable=True), *bn]


@register("connected", "conn")
def build_connected(s, ctx):
    inputs = ctx.prev.numel
    outputs = s.int("output", 1, minimum=1)
    bn = bool(s.int("batch_normalize", 0))
    act = read_activation(s, "logistic")
    fork = ctx.net.fork
    return LayerSpec(
        "connected", (ctx.prev_index,), Shape(outputs, 1, 1),
        lambda: set_fork(Connected(inputs, outputs, bn, act), fork),
        n_params=outputs * (inputs + 1 + 3 * bn), flops=2.0 * inputs * outputs,
        label="conn", detail=f"{inputs:5d} -> {outputs}")


class Local(nn.Module):
    """Locally connected: one filter bank per output location, im2col order (c, ky, kx)."""

    def __init__(self, c, n, size, stride, pad, out, activation):
        super().__init__()
        self.size, self.stride, self.pad, self.out = size, stride, pad, out
        locations, k = out.h * out.w, c * size * size
        self.weights = nn.Parameter(torch.empty(locations, n, k))
        self.biases = nn.Parameter(torch.empty(n, out.h, out.w))
        self.activation = Activation(activation)

    def reset_parameters(self):
        _darknet_init(self, self.weights.shape[2])

    def forward(self, x):
        cols = F.unfold(x, self.size, padding=self.pad, stride=self.stride)  # (B, k, L)
        y = torch.einsum("lnk,bkl->bnl", self.weights, cols).view(x.shape[0], *self.biases.shape)
        return self.activation(y + self.biases)

    def blobs(self):
        return [Blob("biases", self.biases), Blob("weights", self.weights)]


@register("local")
def build_local(s, ctx):
    inp = ctx.prev
    n = s.int("filters", 1, minimum=1)
    size = s.int("size", 1, minimum=1)
    stride = s.int("stride", 1, minimum=1)
    pad = s.int("pad", 0, minimum=0)
    act = read_activation(s, "logistic")
    # local_out_height treats pad as a flag, im2col as an amount: they must agree.
    dims = []
    for key_size in (inp.h, inp.w):
        flagged = (key_size - (1 if pad else size)) // stride + 1
        if out_size(s, "size", key_size, size, stride, 2 * pad) != flagged:
            raise s.error(f"pad={pad} with size={size}: Darknet's output size and its im2col disagree", "pad")
        dims.append(flagged)
    out = Shape(n, *dims)
    locations, k = out.h * out.w, inp.c * size * size
    return LayerSpec(
        "local", (ctx.prev_index,), out,
        lambda: Local(inp.c, n, size, stride, pad, out, act),
        n_params=out.numel + locations * n * k, flops=2.0 * locations * n * k,
        label="local", detail=f"{n:5d} {size:2d} x{size:2d} /{stride:2d}")


class BatchNorm(BatchNormMixin, nn.Module):
    """Standalone [batchnorm]. pjreddie's files hold its scales, mean and variance; AlexeyAB's
    (``save_batchnorm_weights``) hold its biases first."""

    def __init__(self, c):
        super().__init__()
        self._init_bn(c)
        self.biases = nn.Parameter(torch.empty(c))

    def reset_parameters(self):
        _darknet_init(self, 1)

    def forward(self, x):
        return self._batch_norm(x, self.biases)

    def blobs(self):
        biases = [Blob("biases", self.biases)] if self.fork == "alexeyab" else []
        return [*biases, *self._bn_blobs()]


@register("batchnorm")
def build_batchnorm(s, ctx):
    inp = ctx.prev
    fork = ctx.net.fork
    return LayerSpec("batchnorm", (ctx.prev_index,), inp, lambda: set_fork(BatchNorm(inp.c), fork),
                     n_params=4 * inp.c, label="batchnorm")
