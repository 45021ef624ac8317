"""Darknet(nn.Module): a cfg planned through the registry, then built and run generically."""
from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from . import layers  # noqa: F401  (registers the builders)
from .cfg import Section, parse_cfg, set_options
from .errors import CfgError
from .netcfg import NetConfig
from .registry import BuildContext, LayerSpec, Shape, builder_for
from .weights import Header, read_weights, write_weights

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 30  # parameters + one image's activations; DARKNET_PY_MAX_BYTES overrides
PRECISIONS = ("exact", "fast")
MAX_FLOPS = 1e13  # per image: a cfg that would compute for hours on one image is refused


@dataclass(frozen=True)
class LayerFlags:
    """Options Darknet reads in every section (``parse_network_cfg``)."""

    stopbackward: int = 0
    onlyforward: int = 0
    dontsave: int = 0
    dontload: int = 0
    dontloadscales: int = 0
    learning_rate_scale: float = 1.0
    smooth: float = 0.0
    truth: int = 0

    @classmethod
    def from_section(cls, s: Section) -> "LayerFlags":
        if s.has("numload") and s.int("numload", 0):
            raise s.error("is not supported by darknet_py", "numload")
        s.ignore("numload")
        return cls(stopbackward=s.int("stopbackward", 0), onlyforward=s.int("onlyforward", 0),
                   dontsave=s.int("dontsave", 0), dontload=s.int("dontload", 0),
                   dontloadscales=s.int("dontloadscales", 0),
                   learning_rate_scale=s.float("learning_rate", 1.0), smooth=s.float("smooth", 0.0),
                   truth=s.int("truth", 0))


def plan_network(sections: list[Section], width=None, height=None, max_bytes=None):
    """[net] and every layer's spec, with shapes inferred; nothing is allocated here. The
    memory budget is checked layer by layer, so a hostile cfg is refused at the section where
    it goes over, before later sections make lists as long as its numbers."""
    if not sections:
        raise CfgError("no sections; a Darknet cfg starts with [net]")
    max_bytes = budget(max_bytes)
    net_section = sections[0]
    net = NetConfig.from_section(net_section, sections[1:])
    if width is not None or height is not None:
        net = _resized(net, width, height)
    net_section.check_unused()
    input_shape = Shape(net.channels, net.height, net.width)
    need = Need(input_shape.numel)
    if need.bytes > max_bytes:
        raise net_section.error(f"the input alone, {need}, {_over_budget(max_bytes)}")
    specs, flags, shapes = [], [], []
    for index, s in enumerate(sections[1:]):
        ctx = BuildContext(index=index, shapes=shapes, input_shape=input_shape, net=net)
        spec = builder_for(s)(s, ctx)
        flags.append(LayerFlags.from_section(s))
        s.check_unused()
        if min(spec.out.c, spec.out.h, spec.out.w) < 1:
            raise s.error(f"output shape {spec.out} is empty")
        need.add(spec)
        if need.bytes > max_bytes:
            raise s.error(f"layers 0..{index} need {need}, {_over_budget(max_bytes)}")
        if need.flops > MAX_FLOPS:
            raise s.error(f"layers 0..{index} need {need.flops / 1e9:.0f} BFLOPs per image, over the "
                          f"limit of {MAX_FLOPS / 1e9:.0f} (yolov3 at 608 x 608 needs 141)")
        spec.where = f"{s.file}:{s.line}"
        specs.append(spec)
        shapes.append(spec.out)
    if not specs:
        raise net_section.error("the cfg has no layers after [net]")
    return net, specs, flags


def budget(max_bytes=None) -> int:
    """The memory budget in bytes: ``max_bytes``, else ``DARKNET_PY_MAX_BYTES``, else 4 GiB."""
    if max_bytes is not None:
        return int(max_bytes)
    text = os.environ.get("DARKNET_PY_MAX_BYTES", "")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return int(text)
    except ValueError:
        raise CfgError(f"DARKNET_PY_MAX_BYTES={text!r} is not a number of bytes") from None


def _over_budget(max_bytes: int) -> str:
    return (f"over the budget of {max_bytes / 2**20:.0f} MiB (raise it with max_bytes= or "
            "DARKNET_PY_MAX_BYTES)")


@dataclass
class Need:
    """float32 values a network holds: parameters (with buffers), the input image, every layer's
    output for one image (an upper bound: outputs nobody reads later are freed) and the largest
    transient workspace of one layer; and the compute of one image."""

    activations: int
    params: int = 0
    workspace: int = 0
    flops: float = 0.0

    def add(self, spec: LayerSpec) -> None:
        self.params += spec.n_params
        self.activations += spec.out.numel
        self.workspace = max(self.workspace, spec.workspace)
        self.flops += spec.flops

    @property
    def bytes(self) -> int:
        return 4 * (self.params + self.activations + self.workspace)

    def __str__(self):
        return (f"{self.bytes / 2**20:.0f} MiB ({self.params} parameters, {self.activations} "
                f"activation values per image, {self.workspace} of workspace)")


def _resized(net, width, height):
    return replace(net, width=width or net.width, height=height or net.height)


def check_budget(net: "Darknet", images: int, copies: int, size=None) -> None:
    """Refuse to run ``images`` at a time when every parameter and activation is held
    ``copies`` times (training: value, gradient and momentum or a saved intermediate), at
    ``size`` (width, height; activations scale with the area) or the cfg's own."""
    area = 1.0 if size is None else max(1.0, size[0] * size[1] / (net.net.width * net.net.height))
    need = net.need()
    activations = int(need.activations * area) * images
    total = 4 * copies * (need.params + activations)
    if total > net.max_bytes:
        raise CfgError(f"{images} images per forward pass (batch / subdivisions) at {size or net.input_size} need {total / 2**20:.0f} MiB "
                       f"({copies} x ({need.params} parameters + {activations} activation values)), "
                       f"{_over_budget(net.max_bytes)}", file=str(net.cfg_file))


class Darknet(nn.Module):
    """A network read from a Darknet cfg.

    ``net(x)`` takes ``(batch, channels, height, width)`` and returns a list: one tensor per
    [yolo]/[region]/[detection] head, or the last layer's output for a classifier. Outputs that no
    later layer reads are freed as soon as their last reader has run.
    """

    def __init__(self, cfg, *, width=None, height=None, max_bytes=None, init=True, overrides=()):
        super().__init__()
        self.cfg_file = Path(cfg)
        sections = parse_cfg(self.cfg_file)
        set_options(sections[0], overrides)
        self.max_bytes = budget(max_bytes)
        self.net, self.specs, self.flags = plan_network(sections, width, height, self.max_bytes)
        self.layers = nn.ModuleList(spec.make() for spec in self.specs)
        for layer in self.layers:
            if hasattr(layer, "bind_shared"):  # AlexeyAB's share_index: another layer's parameters
                layer.bind_shared(self.layers)
        self.sources = [spec.sources for spec in self.specs]
        self._flat_shapes = [(spec.out.c, spec.out.h, spec.out.w) for spec in self.specs]
        self.heads = [i for i, spec in enumerate(self.specs) if spec.is_head]
        # get_network_output: the last layer that is not a [cost] (layer 0 at the latest)
        last = max((i for i, spec in enumerate(self.specs) if spec.kind != "cost"), default=0)
        self.outputs = self.heads or [last]
        self.net_input_shape = Shape(self.net.channels, self.net.height, self.net.width)
        self.header = Header()
        if init:
            self.init_weights()

    def init_weights(self) -> None:
        """Darknet's random initialisation (skipped when a weights file overwrites it all)."""
        for layer in self.layers:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) images are letterboxed to, from [net] or the load-time override."""
        return self.net.width, self.net.height

    @property
    def fork(self) -> str:
        """Whose arithmetic this network reproduces: [net] ``fork``, ``auto`` resolved (netcfg.FORKS)."""
        return self.net.fork

    @property
    def seen(self) -> int:
        return self.header.seen

    @seen.setter
    def seen(self, value: int):
        self.header.seen = value

    def describe(self, i: int) -> str:
        spec = self.specs[i]
        return f"[{spec.kind}] at {spec.where}"

    precision = "exact"
    fast_dtype = torch.float32
    _prepared = False

    def set_precision(self, precision: str) -> "Darknet":
        """``exact``: float32 with Darknet's batch-norm arithmetic. ``fast``: batch norm folded
        into the convolutions, bfloat16 on CPUs with AVX-512-BF16/AMX, float16 on CUDA (float32
        elsewhere). Inference copies of the weights (channels-last, prepacked on the CPU) are
        made at the next eval-mode forward pass after this, a weights load, ``eval()`` or
        ``to()``; saving always writes the original parameters."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.invalidate_inference_weights()
        return self

    def invalidate_inference_weights(self) -> None:
        for layer in self.layers:
            if hasattr(layer, "prepare_inference"):
                layer.folded = layer.packed = layer.winograd = None
        self._prepared = False

    def need(self) -> Need:
        """What the plan holds for one image (parameters, activations, workspace)."""
        need = Need(self.net_input_shape.numel)
        for spec in self.specs:
            need.add(spec)
        return need

    def _prepare_inference(self) -> None:
        self.fast_dtype = self._fast_dtype() if self.precision == "fast" else torch.float32
        on_cpu = next(self.parameters(), torch.empty(0)).device.type == "cpu"
        if self.precision == "fast" or on_cpu:
            inputs = [self.net_input_shape if src[0] < 0 else self.specs[src[0]].out for src in self.sources]
            preparing = [(layer, shape) for layer, shape in zip(self.layers, inputs) if hasattr(layer, "prepare_inference")]
            transformed = sum(layer.winograd_bytes(shape, self.fast_dtype) for layer, shape in preparing)
            winograd = self.need().bytes + transformed <= self.max_bytes
            if not winograd:
                warnings.warn(f"{self.cfg_file}: Winograd's transformed weights ({transformed / 2**20:.0f} MiB) "
                              f"would go {_over_budget(self.max_bytes)}; using direct convolution",
                              RuntimeWarning, stacklevel=3)
            for layer, shape in preparing:
                layer.prepare_inference(self.fast_dtype, self.precision == "fast", shape, winograd=winograd)
        self._prepared = True

    def train(self, mode: bool = True) -> "Darknet":
        super().train(mode)
        self.invalidate_inference_weights()
        return self

    def _apply(self, fn, *args, **kwargs):
        result = super()._apply(fn, *args, **kwargs)  # .to(), .cuda(), .half(): stale copies
        if hasattr(self, "layers"):
            self.invalidate_inference_weights()
        return result

    def _fast_dtype(self):
        device = next(self.parameters(), torch.empty(0)).device
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and torch.backends.mkldnn.is_available() \
                and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu":
            _say_fast_is_float32()
        return torch.float32

    def forward(self, x):
        outs = self.run(x, self.outputs)
        return [outs[i].float().contiguous() for i in self.outputs]

    def run(self, x, keep):
        """Run the layers up to the last index in ``keep``; return ``{index: output}`` for those
        indices (in the inference dtype and layout)."""
        if not torch.is_grad_enabled() and not self.training:
            if not self._prepared:
                self._prepare_inference()
            x = x.to(self.fast_dtype)
            if x.dim() == 4 and x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fastest layout
        keep = set(keep)
        last_use = {}
        for i, src in enumerate(self.sources):
            for j in src:
                last_use[j] = i
        cache, kept = {-1: x}, {}
        stop = max(keep, default=-1) + 1
        for i, (layer, src) in enumerate(zip(self.layers[:stop], self.sources[:stop])):
            y = layer(*(cache[j] for j in src))
            for j in src:
                if last_use[j] == i:
                    cache.pop(j, None)
            if i in keep:
                kept[i] = y
            if last_use.get(i, -1) > i:  # later layers read a head's output as Darknet's (c, h, w)
                cache[i] = y if y.dim() == 4 else y.reshape(y.shape[0], *self._flat_shapes[i])
        return kept

    def load_weights(self, path, cutoff=None) -> Header:
        header = read_weights(self, path, cutoff)
        self.invalidate_inference_weights()
        return header

    def save_weights(self, path, cutoff=None, header=None) -> None:
        """Write the layers before ``cutoff`` (all by default) with ``header`` (default: the
        loaded one, so load + save gives the same bytes)."""
        write_weights(self, path, cutoff, header)


@functools.cache
def _say_fast_is_float32() -> None:
    """Once per process: on this CPU fast mode has no cheaper arithmetic than exact's."""
    from .native import cpu_model
    log.warning("precision='fast': this CPU (%s) has no bfloat16 arithmetic (AVX-512-BF16 or AMX), and "
                "darknet_py has no other lower-precision route for it; fast mode runs float32 with batch "
                "norm folded into the convolutions, near exact mode's speed", cpu_model())


def load(cfg, weights=None, *, cutoff=None, width=None, height=None, max_bytes=None,
         precision="exact", device=None) -> Darknet:
    """Build the network of a Darknet cfg and, if given, load a .weights file into it.

    Returns it in eval mode on ``device`` (default: CUDA when present, else the CPU).
    """
    net = Darknet(cfg, width=width, height=height, max_bytes=max_bytes, init=False)
    if weights is None or cutoff is not None or any(f.dontload or f.dontloadscales for f in net.flags):
        net.init_weights()  # some parameters will not come from the file
    if weights is not None:
        net.load_weights(weights, cutoff)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return net.set_precision(precision).to(device).eval()
