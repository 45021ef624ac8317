"""Detection heads: [yolo] (v3, with AlexeyAB's options), [region] (v2) and [detection] (v1).

In eval mode each returns what Darknet stores in ``l.output``; in training mode the raw input
reshaped the same way, so that losses can work on logits.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..registry import LayerSpec, register

log = logging.getLogger(__name__)


MAX_DEFAULT_ANCHORS = 4096  # identical default anchors beyond this are a hostile num=, not a cfg


@dataclass(frozen=True)
class HeadSettings:
    """What training and detection read of any head: the truths it reads (``max``), the data
    options of the last head (``jitter``, ``random``, AlexeyAB's ``resize``) and the NMS that
    Darknet's detector takes from the last layer (``nms_kind``, ``beta_nms``; classic
    otherwise)."""

    max_boxes: int = 90
    jitter: float = 0.2
    random: float = 0.0
    resize: float = 1.0
    nms_kind: str = "default"
    beta_nms: float = 0.6


@dataclass(frozen=True)
class YoloSettings(HeadSettings):
    """pjreddie's parse_yolo options, and the AlexeyAB values a pjreddie head computes with."""

    alexeyab: ClassVar[bool] = False  # AlexeyAB's forward_yolo_layer (deltas, options)
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    scale_x_y: float = 1.0
    new_coords: int = 0


@dataclass(frozen=True)
class AlexeyabYoloSettings(YoloSettings):
    """AlexeyAB's parse_yolo: a [yolo] that sets any of its options."""

    alexeyab: ClassVar[bool] = True
    max_boxes: int = 200
    iou_loss: str = "mse"
    iou_normalizer: float = 0.75
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    max_delta: float = math.inf  # FLT_MAX: no clipping
    classes_multipliers: list | None = None  # counters_per_class weights
    iou_thresh_kind: str = "iou"
    iou_thresh: float = 1.0
    label_smooth_eps: float = 0.0
    objectness_smooth: int = 0
    show_details: int = 1
    focal_loss: int = 0


@dataclass(frozen=True)
class GaussianYoloSettings(AlexeyabYoloSettings):
    """parse_gaussian_yolo: AlexeyAB's [yolo] options but ``new_coords`` and ``focal_loss``
    (left at 0), plus the uncertainties' normalizer and which point of the box x, y name."""

    uc_normalizer: float = 1.0
    yolo_point: str = "center"


@dataclass(frozen=True)
class RegionSettings(HeadSettings):
    """parse_region's options; ``alexeyab``: the head runs AlexeyAB's way (fork=alexeyab)."""

    max_boxes: int = 30
    log: int = 0
    sqrt: int = 0
    rescore: int = 0
    thresh: float = 0.5
    classfix: int = 0
    absolute: int = 0
    coord_scale: float = 1.0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    mask_scale: float = 1.0
    class_scale: float = 1.0
    bias_match: int = 0
    alexeyab: bool = False


@dataclass(frozen=True)
class DetectionSettings(HeadSettings):
    """parse_detection's options (YOLOv1)."""

    n: int = 1
    coords: int = 1
    rescore: int = 0
    sqrt: int = 0
    coord_scale: float = 1.0
    forced: int = 0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    reorg: int = 0


def read_anchors(s, count):
    """``anchors`` must hold exactly ``count`` numbers (Darknet would read past its buffer)."""
    if not s.has("anchors"):
        s.ignore("anchors")
        if count > 2 * MAX_DEFAULT_ANCHORS:
            raise s.error(f"num={count // 2} anchors without anchors= (all would be Darknet's default "
                          f".5, .5); at most {MAX_DEFAULT_ANCHORS} without anchors=", "num")
        return [0.5] * count  # Darknet's default biases: calloc'd then set to .5
    anchors = s.floats("anchors")
    if len(anchors) != count:
        raise s.error(f"expected {count} numbers (2 per anchor), got {len(anchors)}", "anchors")
    return anchors


def check_channels(s, ctx, per_anchor, n):
    if ctx.prev.c != per_anchor * n:
        raise s.error(f"the layer before has {ctx.prev.c} channels, this head needs "
                      f"{n} anchors x {per_anchor} = {per_anchor * n}", "classes")


def scale_xy(v, scale_x_y):
    """AlexeyAB's ``scal_add_cpu(scale_x_y, -0.5*(scale_x_y - 1))`` on the x, y offsets (float32
    factors, as the C passes them); nothing when the option is absent."""
    if scale_x_y == 1:
        return v
    alpha = torch.tensor(scale_x_y, dtype=torch.float32)  # l.scale_x_y is a float
    beta = torch.tensor(-0.5 * (alpha.item() - 1), dtype=torch.float32)
    return v * alpha.to(v.dtype) + beta.to(v.dtype)


class AnchorHead(nn.Module):
    """A head over ``n`` masked anchors of ``box_entries + 1 + classes`` channels each: the raw
    view while training (the deltas read it), ``activate``'s ``l.output`` otherwise."""
    box_entries = 4

    def __init__(self, n, classes, anchors, mask, settings: YoloSettings):
        super().__init__()
        self.n, self.classes = n, classes
        self.anchors = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(len(anchors) // 2)]
        self.mask = mask
        self.settings = settings

    def forward(self, x):
        b, _, h, w = x.shape
        x = x.view(b, self.n, self.box_entries + 1 + self.classes, h, w)
        return x if self.training else self.activate(x)


class Yolo(AnchorHead):
    """[yolo]: pjreddie's (YoloSettings) or AlexeyAB's (AlexeyabYoloSettings)."""

    def activate(self, x):
        """``l.output`` from the raw (batch, n, 5 + classes, h, w) input."""
        s = self.settings
        if s.new_coords:  # the conv before already applied the logistic (YOLOv4-csp, YOLOv7)
            return torch.cat([scale_xy(x[:, :, :2], s.scale_x_y), x[:, :, 2:]], 2)
        xy = scale_xy(torch.sigmoid(x[:, :, :2]), s.scale_x_y)
        return torch.cat([xy, x[:, :, 2:4], torch.sigmoid(x[:, :, 4:])], 2)


IOU_KINDS = ("iou", "giou", "diou", "ciou")
NMS_KINDS = ("default", "greedynms", "diounms")
# AlexeyAB reads these only to print them or for tracking, which is not computed here
ALEXEYAB_IGNORED = ("track_history_size", "sim_thresh", "dets_for_track", "dets_for_show",
                    "track_ciou_norm")
# keys AlexeyAB's shipped cfgs put in these sections that its parser never reads (it only warns)
NOT_READ_BY_DARKNET = {"yolo": ("beta1", "uc_normalizer"), "Gaussian_yolo": ("beta1",)}


def read_choice(s, key, default, choices):
    """A string option of a fixed set. AlexeyAB maps an unknown value to a default without a word;
    here it is an error."""
    value = s.str(key, default)
    if value not in choices:
        raise s.error(f"expected one of {', '.join(choices)}, got '{value}'", key)
    return value


def classes_multipliers(s, classes, max_delta):
    """``get_classes_multipliers``: max(count) / count per class (counts below 1 read as 1), capped
    at ``max_delta``; None without ``counters_per_class``."""
    if not s.has("counters_per_class"):
        s.ignore("counters_per_class")
        return None
    counts = s.ints("counters_per_class")
    if len(counts) != classes:
        raise s.error(f"{len(counts)} values for classes={classes}", "counters_per_class")
    counts = [max(c, 1) for c in counts]
    top = max(counts)
    return [min(float(torch.tensor(top / c, dtype=torch.float32)), max_delta) for c in counts]


def alexeyab_settings(s, classes, gaussian=False):
    """The options AlexeyAB's parse_yolo / parse_gaussian_yolo read beyond pjreddie's, with its
    defaults, or None when a [yolo] sets none of them: such a head stays pjreddie's (inference
    and training); one that sets any trains as AlexeyAB's forward_yolo_layer."""
    keys = ("scale_x_y", "new_coords", "iou_loss", "iou_normalizer", "obj_normalizer", "cls_normalizer",
            "delta_normalizer", "max_delta", "iou_thresh_kind", "iou_thresh", "label_smooth_eps",
            "objectness_smooth", "beta_nms", "nms_kind", "resize", "focal_loss", "counters_per_class",
            "show_details")
    alexeyab = gaussian or any(s.has(k) for k in keys + ALEXEYAB_IGNORED)
    s.ignore(*ALEXEYAB_IGNORED)
    for key in NOT_READ_BY_DARKNET["Gaussian_yolo" if gaussian else "yolo"]:
        if s.has(key):
            log.warning("%s", s.error("is not read by Darknet's parser either; ignored", key))
            s.ignore(key)
    if s.has("embedding_layer"):
        raise s.error("tracking embeddings are not supported", "embedding_layer")
    max_delta = s.float("max_delta", math.inf)  # FLT_MAX: no clipping
    settings = dict(
        scale_x_y=s.float("scale_x_y", 1.0),
        iou_loss=read_choice(s, "iou_loss", "mse", ("mse",) + IOU_KINDS),
        iou_normalizer=s.float("iou_normalizer", 0.75), obj_normalizer=s.float("obj_normalizer", 1.0),
        cls_normalizer=s.float("cls_normalizer", 1.0), delta_normalizer=s.float("delta_normalizer", 1.0),
        max_delta=max_delta, classes_multipliers=classes_multipliers(s, classes, max_delta),
        iou_thresh_kind=read_choice(s, "iou_thresh_kind", "iou", IOU_KINDS),
        iou_thresh=s.float("iou_thresh", 1.0), label_smooth_eps=s.float("label_smooth_eps", 0.0),
        objectness_smooth=s.int("objectness_smooth", 0), beta_nms=s.float("beta_nms", 0.6),
        nms_kind=read_choice(s, "nms_kind", "default", NMS_KINDS + (("cornersnms",) if gaussian else ())),
        resize=s.float("resize", 1.0), show_details=s.int("show_details", 1))
    if gaussian:
        settings.update(uc_normalizer=s.float("uc_normalizer", 1.0),
                        yolo_point=read_choice(s, "yolo_point", "center", ("center", "left_top", "right_bottom")))
    else:
        settings.update(new_coords=s.int("new_coords", 0), focal_loss=s.int("focal_loss", 0))
    return settings if alexeyab else None


def read_yolo(s, ctx, entries, gaussian=False):
    """What [yolo] and [Gaussian_yolo] share: ``(classes, anchors, mask, settings)``; ``entries``
    is the number of box + objectness values per anchor before the classes. ``settings`` is
    YoloSettings, AlexeyabYoloSettings or (``gaussian``) GaussianYoloSettings."""
    classes = s.int("classes", 20)
    total = s.int("num", 1)
    if classes < 1 or total < 1:
        raise s.error("classes and num must be >= 1")
    mask = s.ints("mask") if s.has("mask") else None
    for m in mask or ():
        if not 0 <= m < total:
            raise s.error(f"mask entry {m} is not an anchor index 0..{total - 1}", "mask")
    anchors = read_anchors(s, 2 * total)
    # channels before the default mask 0..num-1: they bound its length by the memory budget
    check_channels(s, ctx, entries + classes, total if mask is None else len(mask))
    if mask is None:
        mask = list(range(total))
    extra = alexeyab_settings(s, classes, gaussian)
    kind = GaussianYoloSettings if gaussian else YoloSettings if extra is None else AlexeyabYoloSettings
    settings = kind(max_boxes=s.int("max", 90 if extra is None else 200), jitter=s.float("jitter", 0.2),
                    ignore_thresh=s.float("ignore_thresh", 0.5), truth_thresh=s.float("truth_thresh", 1.0),
                    random=s.float("random", 0.0), **(extra or {}))
    if s.has("map"):
        raise s.error("class maps are not supported", "map")
    return classes, anchors, mask, settings


@register("yolo")
def build_yolo(s, ctx):
    classes, anchors, mask, settings = read_yolo(s, ctx, 5)
    n = len(mask)
    return LayerSpec("yolo", (ctx.prev_index,), ctx.prev,
                     lambda: Yolo(n, classes, anchors, mask, settings), label="yolo", is_head=True)


class Region(nn.Module):
    """[region] (YOLOv2). pjreddie's forward_region_layer: logistic on x, y, objectness (unless
    ``background``) and, without softmax, the classes. AlexeyAB's (``alexeyab``, fork=alexeyab):
    logistic on objectness, softmax over the classes when set, raw classes otherwise; its x, y
    logistic happens in get_region_box, applied here too so both forks' outputs read alike."""

    def __init__(self, n, classes, coords, anchors, softmax, background, settings: RegionSettings):
        super().__init__()
        self.n, self.classes, self.coords = n, classes, coords
        self.anchors = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(n)]
        self.softmax, self.background = softmax, background
        self.settings = settings

    def forward(self, x):
        b, _, h, w = x.shape
        x = x.view(b, self.n, self.coords + 1 + self.classes, h, w)
        if self.training:
            return x
        if self.settings.alexeyab:  # coords is 4 (build_region)
            classes = torch.softmax(x[:, :, 5:], 2) if self.softmax else x[:, :, 5:]
            return torch.cat([torch.sigmoid(x[:, :, :2]), x[:, :, 2:4], torch.sigmoid(x[:, :, 4:5]), classes], 2)
        c = self.coords
        parts = [torch.sigmoid(x[:, :, :2]), x[:, :, 2:c]]
        parts.append(x[:, :, c:c + 1] if self.background else torch.sigmoid(x[:, :, c:c + 1]))
        if self.softmax:  # softmax over classes (and the background slot when there is one)
            start = c + (0 if self.background else 1)
            if self.background:
                parts.pop()
            parts.append(torch.softmax(x[:, :, start:], 2))
        else:
            parts.append(torch.sigmoid(x[:, :, c + 1:]))
        return torch.cat(parts, 2)


@register("region")
def build_region(s, ctx):
    coords, classes, n = s.int("coords", 4), s.int("classes", 20), s.int("num", 1)
    if coords < 4 or classes < 1 or n < 1:
        raise s.error("coords must be >= 4, classes and num >= 1")
    check_channels(s, ctx, coords + 1 + classes, n)
    anchors = read_anchors(s, 2 * n)
    alexeyab = ctx.net.fork == "alexeyab"
    if alexeyab and coords != 4:
        raise s.error("AlexeyAB's [region] reads 4 coordinates per box (its forward and get_region_boxes "
                      "step by classes + 5); fork=alexeyab needs coords=4", "coords")
    if alexeyab and s.has("background"):
        log.warning("%s", s.error("is not read by AlexeyAB's parser; ignored (fork=alexeyab)", "background"))
        s.ignore("background")
    softmax, background = bool(s.int("softmax", 0)), not alexeyab and bool(s.int("background", 0))
    if s.has("tree") or s.has("map"):
        raise s.error("YOLO9000 trees and class maps are not supported")
    settings = RegionSettings(
        log=s.int("log", 0), sqrt=s.int("sqrt", 0), max_boxes=s.int("max", 30),
        jitter=s.float("jitter", 0.2), rescore=s.int("rescore", 0), thresh=s.float("thresh", 0.5),
        classfix=s.int("classfix", 0), absolute=s.int("absolute", 0), random=s.int("random", 0),
        coord_scale=s.float("coord_scale", 1.0), object_scale=s.float("object_scale", 1.0),
        noobject_scale=s.float("noobject_scale", 1.0), mask_scale=s.float("mask_scale", 1.0),
        class_scale=s.float("class_scale", 1.0), bias_match=s.int("bias_match", 0), alexeyab=alexeyab)
    return LayerSpec("region", (ctx.prev_index,), ctx.prev,
                     lambda: Region(n, classes, coords, anchors, softmax, background, settings),
                     label="region", is_head=True)


class Detection(nn.Module):
    """YOLOv1: flat output [side*side*classes][side*side*n confidences][side*side*n*coords]."""

    def __init__(self, side, classes, softmax, settings: DetectionSettings):
        super().__init__()
        self.side, self.classes, self.softmax = side, classes, softmax
        self.settings = settings

    def forward(self, x):
        x = x.flatten(1)
        if self.softmax and not self.training:
            cells = self.side * self.side * self.classes
            probs = torch.softmax(x[:, :cells].view(x.shape[0], -1, self.classes), -1)
            x = torch.cat([probs.flatten(1), x[:, cells:]], 1)
        return x


@register("detection")
def build_detection(s, ctx):
    coords, classes, rescore = s.int("coords", 1), s.int("classes", 1), s.int("rescore", 0)
    n, side = s.int("num", 1), s.int("side", 7)
    if min(coords, classes, n, side) < 1:
        raise s.error("coords, classes, num and side must be >= 1")
    expected = side * side * ((1 + coords) * n + classes)
    if ctx.prev.numel != expected:
        raise s.error(f"the layer before yields {ctx.prev.numel} values, side*side*((1+coords)*num+classes)"
                      f" = {expected}", "side")
    softmax = bool(s.int("softmax", 0))
    settings = DetectionSettings(
        n=n, coords=coords, rescore=rescore, sqrt=s.int("sqrt", 0), max_boxes=s.int("max", 90),
        coord_scale=s.float("coord_scale", 1.0), forced=s.int("forced", 0),
        object_scale=s.float("object_scale", 1.0), noobject_scale=s.float("noobject_scale", 1.0),
        class_scale=s.float("class_scale", 1.0), jitter=s.float("jitter", 0.2),
        random=s.int("random", 0), reorg=s.int("reorg", 0))
    return LayerSpec("detection", (ctx.prev_index,), ctx.prev,
                     lambda: Detection(side, classes, softmax, settings), label="detection", is_head=True)
