"""The ``[net]`` section as a typed config, with Darknet's names and defaults (``parse_net_options``)."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from .cfg import Section

log = logging.getLogger(__name__)

# Darknet's policies, plus ``cosine`` (this project's extension: Bag of Freebies' cosine decay
# after the burn_in warm-up; Darknet itself would fall back to constant on it).
POLICIES = ("constant", "step", "exp", "poly", "steps", "sigmoid", "random", "sgdr", "cosine")

# Which fork's arithmetic to reproduce where the two differ (this project's [net] option ``fork``;
# Darknet itself would list it as an unused field). pjreddie: batch norm divides by
# ``sqrt(var) + 1e-6``; a one-layer [shortcut] from a layer of another width and height adds
# at a stride (``shortcut_cpu``); detection letterboxes the image. alexeyab: ``sqrt(var + 1e-5)``
# (AlexeyAB's CUDA and cuDNN builds, which trained the published yolov4 weights; its CPU-only
# build adds 1e-6 instead, a relative difference of about 5e-6 / var); the shortcut adds the
# first outputs element by element (``shortcut_multilayer_cpu``); detection resizes the image
# without letterbox unless ``letter_box=1``; a weights header's ``seen`` is 64-bit from version
# 0.2 on without pjreddie's ``< 1000`` check. AlexeyAB-only sections behave as AlexeyAB's
# either way. ``auto`` (the default) picks alexeyab when the cfg uses anything only AlexeyAB's
# parser reads (``alexeyab_feature``), pjreddie otherwise.
FORKS = ("pjreddie", "alexeyab")
FORK_CHOICES = ("auto",) + FORKS

# What only AlexeyAB's parse_network_cfg reads (SECTIONS.md, from both forks' parser.c).
ALEXEYAB_SECTIONS = frozenset((
    "scale_channels", "sam", "Gaussian_yolo", "conv_lstm", "history", "local_avg", "local_avgpool",
    "reorg3d", "contrastive", "empty", "silence", "implicit"))
_SECTION_ALIASES = {"conv": "convolutional", "max": "maxpool"}
ALEXEYAB_KEYS = {
    "convolutional": ("stride_x", "stride_y", "dilation", "antialiasing", "assisted_excitation",
                      "share_index", "cbn", "bin_output", "sway", "rotate", "stretch", "stretch_sway",
                      "angle", "grad_centr", "reverse", "coordconv", "stream", "wait_stream"),
    "maxpool": ("stride_x", "stride_y", "maxpool_depth", "out_channels", "antialiasing",
                "maxpool_zero_nonmax"),
    "route": ("groups", "group_id", "stream", "wait_stream"),
    "shortcut": ("weights_type", "weights_normalization"),
    "dropout": ("dropblock", "dropblock_size_rel", "dropblock_size_abs"),
    "yolo": ("scale_x_y", "new_coords", "iou_loss", "iou_thresh_kind", "iou_thresh", "iou_normalizer",
             "obj_normalizer", "cls_normalizer", "delta_normalizer", "max_delta", "label_smooth_eps",
             "objectness_smooth", "counters_per_class", "beta_nms", "nms_kind", "resize", "focal_loss",
             "show_details", "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show",
             "track_ciou_norm", "embedding_layer"),
}
ALEXEYAB_LAYER_KEYS = ("clip", "dont_update", "burnin_update", "train_only_bn")  # any layer section
ALEXEYAB_ACTIVATIONS = frozenset((
    "swish", "mish", "hard_mish", "relu6", "gelu", "revleaky", "normalize_channels",
    "normalize_channels_softmax", "normalize_channels_softmax_maxval"))

# [net] options AlexeyAB's parse_net_options reads beyond pjreddie's, with its defaults (mostly
# training switches: augmentation, EMA, memory). They are kept, typed, in NetConfig.
ALEXEYAB_NET_OPTIONS = (
    "track", "augment_speed", "try_fix_nan", "weights_reject_freq", "equidistant_point",
    "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "ema_alpha", "use_cuda_graph",
    "loss_scale", "dynamic_minibatch", "optimized_memory", "workspace_size_limit_MB", "flip", "blur",
    "gaussian_noise", "mixup", "cutmix", "mosaic", "letter_box", "mosaic_bound", "contrastive",
    "contrastive_jit_flip", "contrastive_color", "unsupervised", "label_smooth_eps", "resize_step",
    "attention", "adversarial_lr", "max_chart_loss", "show_receptive_field", "max_epochs",
)
# ... and those of them (with the learning-rate options) that pjreddie's parser does not know;
# max_epochs is in a shipped cfg but read by neither parser.
ALEXEYAB_NET_KEYS = tuple(k for k in ALEXEYAB_NET_OPTIONS if k != "max_epochs") + (
    "learning_rate_min", "sgdr_cycle", "sgdr_mult", "seq_scales", "sequential_subdivisions")


@dataclass(frozen=True)
class NetConfig:
    width: int
    height: int
    channels: int
    batch: int = 1
    subdivisions: int = 1
    time_steps: int = 1
    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    adam: bool = False
    B1: float = 0.9
    B2: float = 0.999
    eps: float = 1e-7
    max_crop: int = 0
    min_crop: int = 0
    max_ratio: float = 2.0
    min_ratio: float = 1.0
    center: int = 0
    clip: float = 0.0
    angle: float = 0.0
    aspect: float = 1.0
    saturation: float = 1.0
    exposure: float = 1.0
    hue: float = 0.0
    random: int = 0
    notruth: int = 0
    policy: str = "constant"
    burn_in: int = 0
    power: float = 4.0
    step: int = 1
    scale: float = 1.0
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    gamma: float = 1.0
    max_batches: int = 0
    learning_rate_min: float = 0.00001
    sgdr_cycle: int = 0
    sgdr_mult: int = 2
    seq_scales: tuple[float, ...] = ()
    fork: str = "pjreddie"   # resolved: never "auto"
    fork_reason: str = ""    # why: "set in [net]" or what made ``auto`` choose (resolve_fork)
    # AlexeyAB (ALEXEYAB_NET_OPTIONS)
    track: int = 0
    augment_speed: int = 2
    sequential_subdivisions: int = 1   # defaults to subdivisions, at most subdivisions
    try_fix_nan: int = 0
    weights_reject_freq: int = 0
    equidistant_point: int = 0
    badlabels_rejection_percentage: float = 0.0
    num_sigmas_reject_badlabels: float = 0.0
    ema_alpha: float = 0.0
    use_cuda_graph: int = 0
    loss_scale: float = 1.0
    dynamic_minibatch: int = 0
    optimized_memory: int = 0
    workspace_size_limit_MB: float = 1024.0
    flip: int = 1
    blur: int = 0
    gaussian_noise: int = 0
    mixup: int = 0      # as written; AlexeyAB then sets 2 for cutmix, 3 for mosaic, 4 for both
    cutmix: int = 0
    mosaic: int = 0
    letter_box: int = 0
    mosaic_bound: int = 0
    contrastive: int = 0
    contrastive_jit_flip: int = 0
    contrastive_color: int = 0
    unsupervised: int = 0
    label_smooth_eps: float = 0.0
    resize_step: float = 32.0
    attention: int = 0
    adversarial_lr: float = 0.0
    max_chart_loss: float = 20.0
    show_receptive_field: int = 0
    max_epochs: int = 0   # in Gaussian_yolov3_BDD.cfg; neither fork's parser reads it

    @classmethod
    def from_section(cls, s: Section, layers: Sequence[Section] = ()) -> "NetConfig":
        """The [net] section ``s``; ``layers`` (the sections after it) decide ``fork=auto``."""
        if s.kind not in ("net", "network"):
            raise s.error("the first section must be [net] or [network]")
        width, height, channels = s.int("width", 0), s.int("height", 0), s.int("channels", 0)
        inputs = s.int("inputs", width * height * channels)
        if min(width, height, channels) <= 0:
            raise s.error(f"width, height and channels must be positive, got {width} x {height} x "
                          f"{channels} (inputs={inputs}); networks without an image input are not supported")
        kw = dict(
            width=width, height=height, channels=channels,
            batch=s.int("batch", 1), subdivisions=s.int("subdivisions", 1),
            time_steps=s.int("time_steps", 1),
            learning_rate=s.float("learning_rate", 0.001), momentum=s.float("momentum", 0.9),
            decay=s.float("decay", 0.0001), adam=bool(s.int("adam", 0)),
            max_crop=s.int("max_crop", width * 2), min_crop=s.int("min_crop", width),
            center=s.int("center", 0), clip=s.float("clip", 0.0), angle=s.float("angle", 0.0),
            aspect=s.float("aspect", 1.0), saturation=s.float("saturation", 1.0),
            exposure=s.float("exposure", 1.0), hue=s.float("hue", 0.0), random=s.int("random", 0),
            notruth=s.int("notruth", 0), burn_in=s.int("burn_in", 0), power=s.float("power", 4.0),
            max_batches=s.int("max_batches", 0),
            learning_rate_min=s.float("learning_rate_min", 0.00001),
        )
        kw.update(_alexeyab_options(s, cls))
        kw["sequential_subdivisions"] = min(s.int("sequential_subdivisions", kw["subdivisions"], minimum=1),
                                            kw["subdivisions"])
        kw["fork"], kw["fork_reason"] = resolve_fork(s, layers)
        kw["sgdr_cycle"] = s.int("sgdr_cycle", kw["max_batches"])
        kw["sgdr_mult"] = s.int("sgdr_mult", 2)
        kw["max_ratio"] = s.float("max_ratio", kw["max_crop"] / width)
        kw["min_ratio"] = s.float("min_ratio", kw["min_crop"] / width)
        if kw["adam"]:
            kw.update(B1=s.float("B1", 0.9), B2=s.float("B2", 0.999), eps=s.float("eps", 1e-7))
        if kw["batch"] < 1 or kw["subdivisions"] < 1 or kw["batch"] % kw["subdivisions"]:
            raise s.error(f"batch={kw['batch']} must be a positive multiple of subdivisions="
                          f"{kw['subdivisions']}", "batch")
        policy = s.str("policy", "constant")
        if policy not in POLICIES:
            raise s.error(f"unknown learning-rate policy '{policy}' (known: {', '.join(POLICIES)})", "policy")
        kw["policy"] = policy
        if policy == "step":
            kw.update(step=s.int("step", 1), scale=s.float("scale", 1.0))
        elif policy == "steps":
            if not (s.has("steps") and s.has("scales")):
                raise s.error("policy=steps needs both steps= and scales=", "policy")
            steps, scales = s.ints("steps"), s.floats("scales")
            if len(steps) != len(scales):
                raise s.error(f"{len(steps)} steps but {len(scales)} scales", "scales")
            kw.update(steps=tuple(steps), scales=tuple(scales))
            if s.has("seq_scales"):
                seq_scales = s.floats("seq_scales")
                if len(seq_scales) != len(steps):
                    raise s.error(f"{len(steps)} steps but {len(seq_scales)} seq_scales", "seq_scales")
                kw["seq_scales"] = tuple(seq_scales)
        elif policy in ("exp", "sigmoid"):
            kw["gamma"] = s.float("gamma", 1.0)
            if policy == "sigmoid":
                kw["step"] = s.int("step", 1)
        # Darknet reads these only for their own policy and lists the rest as unused; they stay
        # harmless leftovers when a run switches policy (``--set policy=poly``).
        s.ignore("step", "scale", "steps", "scales", "seq_scales", "gamma")
        return cls(**kw)


def resolve_fork(net: Section, layers: Sequence[Section] = ()) -> tuple[str, str]:
    """[net] ``fork``, with ``auto`` (the default) resolved from what the cfg uses, and the
    reason; logged."""
    fork = net.str("fork", "auto")
    if fork not in FORK_CHOICES:
        raise net.error(f"unknown fork '{fork}' (known: {', '.join(FORK_CHOICES)})", "fork")
    if fork != "auto":
        reason = "set in [net]"
    else:
        feature = alexeyab_feature([net, *layers])
        fork = "alexeyab" if feature else "pjreddie"
        reason = "auto: " + (f"{feature}, which only AlexeyAB's Darknet reads" if feature
                             else "nothing AlexeyAB-only")
    log.info("%s: fork=%s (%s)", net.file, fork, reason)
    return fork, reason


def alexeyab_feature(sections: Sequence[Section]) -> str | None:
    """The first thing in ``sections`` that only AlexeyAB's parser reads (a section, an option,
    an activation, the sgdr policy, a [shortcut] of several layers), named with its place; None
    when pjreddie's parser knows everything there."""
    for s in sections:
        kind = _SECTION_ALIASES.get(s.kind, s.kind)
        where = f"{s.file}:{s.line}"
        if kind in ALEXEYAB_SECTIONS:
            return f"[{s.kind}] at {where}"
        if kind in ("net", "network"):
            keys = ALEXEYAB_NET_KEYS
        else:
            keys = ALEXEYAB_KEYS.get(kind, ()) + ALEXEYAB_LAYER_KEYS
        for key, option in s.options.items():
            value = re.split(r"[#;]", option.value, maxsplit=1)[0]
            if (key in keys or (key == "activation" and value in ALEXEYAB_ACTIVATIONS)
                    or (key == "policy" and kind in ("net", "network") and value == "sgdr")
                    or (key == "from" and kind == "shortcut" and "," in value.rstrip(","))):
                return f"{key}={value} in [{s.kind}] at {s.file}:{option.line}"
    return None


def _alexeyab_options(s: Section, cls) -> dict:
    """ALEXEYAB_NET_OPTIONS read with the type and default of their NetConfig field."""
    defaults = {f.name: f.default for f in fields(cls)}
    read = {int: s.int, float: s.float}
    return {name: read[type(defaults[name])](name, defaults[name]) for name in ALEXEYAB_NET_OPTIONS}
